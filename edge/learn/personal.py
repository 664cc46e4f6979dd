"""A model's scores with the device's personal heads applied: what every hop sees once a sound was taught.

The heads (edge/learn/heads.py) read the hop's embedding.  Three kinds of effect, in this order:

- a **correction** of a model label (the user said "that wasn't it"): where it fires, the label's score is 0;
- a head for a **model label** adds detections: ``max(model score, head score)``;
- a head for a **new label** appends a score: the label is one like any other (events, MQTT, discovery, ``set``).

Head scores are mapped so that a head's own threshold lands on the label's threshold (:func:`heads.rescale`):
the bundle's for a model label, :data:`TAUGHT_THRESHOLD` for a new one.  The event detector then keeps one
threshold per label and the user moves it like any other.  The work per hop is one ``(heads, d) @ (d,)``
product: 10 heads on a 1024-value embedding are 10,240 multiply-adds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from edge.learn.heads import Head, rescale

F32 = npt.NDArray[np.float32]
TAUGHT_THRESHOLD = 0.5
"""The default threshold of a new label: its head's own threshold is mapped here."""


def new_labels(heads: Sequence[Head], labels: Sequence[str]) -> tuple[str, ...]:
    """The labels the heads add to ``labels``, in the heads' order (a correction never adds one)."""
    seen = set(labels)
    added: list[str] = []
    for head in heads:
        if head.kind == "label" and head.label not in seen and head.label not in added:
            added.append(head.label)
    return tuple(added)


class Personal:
    """The heads of one model, applied to its scores: ``labels`` are the model's score labels, then the new ones."""

    def __init__(self, heads: Sequence[Head], labels: Sequence[str], thresholds: Mapping[str, float]) -> None:
        self.heads = tuple(heads)
        self.added = new_labels(self.heads, labels)
        self.labels = tuple(labels) + self.added
        at = {x: i for i, x in enumerate(self.labels)}
        unknown = sorted({h.label for h in self.heads if h.label not in at})
        if unknown:
            raise ValueError(f"corrections of labels the model does not have: {', '.join(unknown)}")
        self._base = len(labels)
        size = len(self.heads[0].weights) if self.heads else 0
        self._weights = np.array([h.weights for h in self.heads], dtype=np.float32).reshape(len(self.heads), size)
        self._bias = np.array([h.bias for h in self.heads], dtype=np.float32)
        label_thr = [thresholds.get(h.label, TAUGHT_THRESHOLD) for h in self.heads]
        self._head_thr = np.array([h.threshold for h in self.heads], dtype=np.float32)
        self._label_thr = np.array(label_thr, dtype=np.float32)
        kinds = np.array([h.kind for h in self.heads])
        self._correct = np.flatnonzero(kinds == "correction")
        self._add = np.flatnonzero(kinds == "label")
        self._at = np.array([at[h.label] for h in self.heads], dtype=np.intp)

    @property
    def size(self) -> int:
        """Values of the embedding the heads read (0: no heads)."""
        return int(self._weights.shape[1]) if len(self.heads) else 0

    def raw(self, embedding: F32) -> F32:
        """Each head's own score ``p`` for one embedding."""
        z = self._weights @ np.asarray(embedding, dtype=np.float32) + self._bias
        return np.asarray(1 / (1 + np.exp(-np.clip(z, -40, 40))), dtype=np.float32)

    def apply(self, scores: F32, embedding: F32) -> F32:
        """The model's ``scores`` (of its score labels) with the heads applied, the new labels' scores appended."""
        out = np.zeros(len(self.labels), dtype=np.float32)
        out[: self._base] = scores
        if not len(self.heads):
            return out
        p = self.raw(embedding)
        fired = self._correct[p[self._correct] >= self._head_thr[self._correct]]
        out[self._at[fired]] = 0.0
        add = self._add
        mapped = rescale(p[add], self._head_thr[add], self._label_thr[add])
        np.maximum.at(out, self._at[add], mapped)
        return out

    def corrected(self, embedding: F32) -> tuple[str, ...]:
        """The labels a correction silences on this embedding (for the log and the benchmarks)."""
        if not len(self._correct):
            return ()
        p = self.raw(embedding)
        fired = self._correct[p[self._correct] >= self._head_thr[self._correct]]
        return tuple(self.heads[i].label for i in fired)
