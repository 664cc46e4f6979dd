"""The AudioSet head as evidence, not a gate: per event label, a learned combination of its score and the best
score of its AudioSet classes (the ``evidence`` of a bundle's ``audioset`` section, edge/model/audioset.py).

``p = sigmoid(w_score * logit(s) + w_evidence * logit(e) + bias)`` with both scores clipped to half an int8 step
from 0 and 1; a label without classes has ``w_evidence`` 0 (calibrated on its own score); a label not listed
keeps its score; where the label head is sure (``s >= keep_at``) the label keeps at least ``s``.  Training fits
the weights (training/calibrate/evidence.py) and computes the same thing (tests/training/test_evidence.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
_SCORE = {"lo": 0.0, "hi": 1.0, "unit": "score"}


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """The AudioSet head as evidence: per event label, a learned combination of its score and its classes'."""

    classes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Event label -> its AudioSet class indices (the evidence is the highest of their scores)."""
    weights: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Event label -> ``(w_score, w_evidence, bias)`` of ``sigmoid(w_score * logit(s) + w_evidence * logit(e) +
    bias)``; ``w_evidence`` is 0 for a label without classes.  A label not listed keeps its score."""
    keep_at: float = field(default=1.0, metadata=_SCORE)
    """A label head score at least this is kept whatever AudioSet says (1.0: only a perfect score)."""


EPS = np.float32(1 / 512)
"""Scores are clipped to [EPS, 1 - EPS] before the logit: half an int8 step of a sigmoid output (scale 1/256)."""


def logit(p: F32) -> F32:
    q = np.clip(p, EPS, 1 - EPS)
    return np.asarray(np.log(q / (1 - q)), dtype=np.float32)


class Combination:
    """:class:`Evidence` over one model's event labels, as index arrays made once."""

    def __init__(self, evidence: Evidence, event_labels: Sequence[str]) -> None:
        listed = [x for x in event_labels if x in evidence.weights]
        self._at = np.array([event_labels.index(x) for x in listed], dtype=np.intp)
        w = np.array([evidence.weights[x] for x in listed], dtype=np.float32).reshape(-1, 3)
        self._w_score, self._w_evidence, self._bias = w[:, 0], w[:, 1], w[:, 2]
        # labels without classes read class 0 with weight 0: one gather for all
        per = [evidence.classes.get(x) or (0,) for x in listed]
        self._classes = np.array([c for classes in per for c in classes], dtype=np.intp)
        self._starts = np.cumsum([0] + [len(c) for c in per[:-1]], dtype=np.intp)
        self._keep_at = np.float32(evidence.keep_at)

    def __call__(self, event_scores: F32, audioset: F32) -> F32:
        if self._at.size == 0:
            return event_scores
        s = event_scores[self._at]
        e = np.maximum.reduceat(audioset[self._classes], self._starts)
        z = self._w_score * logit(s) + self._w_evidence * logit(e) + self._bias
        p = (1 / (1 + np.exp(-z))).astype(np.float32)
        p = np.where(s >= self._keep_at, np.maximum(p, s), p)
        out = event_scores.copy()
        out[self._at] = p
        return out
