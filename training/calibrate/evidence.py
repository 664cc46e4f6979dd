"""The AudioSet head as evidence: per label, a logistic combination of the label head's score and the best
score of the label's AudioSet classes, fitted on training-side audio only (edge/model/audioset.py applies it).

What it is fitted on, through the daemon's own pipeline (every hop, the bundle's hop):

- positives of a label: the *sounding* hops of its validation clips (edge.learn.heads.sounding: the window's
  level within 20 dB of the clip's loudest window: the silence a 5 s clip is padded with is no example);
- negatives: every hop of the other labels' validation clips, and of the backgrounds' ``train`` part.

The validation clips are training folds the network never fitted (early stopping only); the test folds and
the backgrounds' ``calibrate``/``report`` parts are never read here.  Positives and negatives weigh the same
in all (a label has about 100 sounding hops against thousands of others), and an L2 penalty keeps a label
with few examples near its own score.  A weight on evidence that comes out negative (AudioSet's classes
against the label) is dropped and the label refitted on its own score: evidence only ever counts for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.daemon.config import Config
from edge.daemon.replay import stream_events
from edge.learn import logistic
from edge.learn.heads import sounding
from edge.model.classifier import Classifier
from edge.model.evidence import Evidence, logit

_LOGGER = logging.getLogger(__name__)
Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Recording:
    """Per hop of one stream: the event labels' scores (no rule), the 521 AudioSet scores, the window's level
    and its end's offset in the stream."""

    scores: Floats
    audioset: Floats
    level_db: Floats
    t: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Hops:
    """Every hop the fit sees: scores, AudioSet scores, the label of its clip (-1: background) and whether it
    sounds (always True for background)."""

    scores: Floats
    audioset: Floats
    label: npt.NDArray[np.int64]
    sounding: npt.NDArray[np.bool_]


def record(clf: Classifier, samples: Floats) -> Recording:
    """Both outputs at every hop of the daemon's pipeline over ``samples``, with each window's RMS level."""
    m = clf.manifest
    n, rate = len(m.event_labels), m.features.sample_rate
    span = m.window_frames * m.features.hop_samples
    rows: list[tuple[Floats, Floats, float, float]] = []

    def keep(offset: float, scores: Floats) -> None:
        end = round(offset * rate)
        window = samples[max(0, end - span) : end + 1]
        level = 10 * np.log10(float(np.mean(np.square(window, dtype=np.float64))) + 1e-20)
        audioset = clf.audioset_scores()
        assert audioset is not None, "a model with an AudioSet output"
        rows.append((scores[:n].copy(), audioset.copy(), level, offset))

    stream_events(clf, samples, Config(), on_scores=keep)
    if not rows:
        empty = np.zeros((0, n), dtype=np.float32)
        none = np.zeros(0, dtype=np.float32)
        return Recording(empty, np.zeros((0, 521), dtype=np.float32), none, none.astype(np.float64))
    return Recording(
        np.stack([r[0] for r in rows]),
        np.stack([r[1] for r in rows]),
        np.array([r[2] for r in rows], np.float32),
        np.array([r[3] for r in rows], np.float64),
    )


def collect(clf: Classifier, clips: Sequence[tuple[Floats, int]], background: Sequence[Floats]) -> Hops:
    """The hops of labelled clips ``(samples, label index)`` and of background streams."""
    parts: list[tuple[Recording, int, npt.NDArray[np.bool_]]] = []
    for samples, label in clips:
        rec = record(clf, samples)
        parts.append((rec, label, sounding(rec.level_db)))
    for samples in background:
        rec = record(clf, samples)
        parts.append((rec, -1, np.ones(len(rec.level_db), dtype=bool)))
    return Hops(
        np.concatenate([p[0].scores for p in parts]),
        np.concatenate([p[0].audioset for p in parts]),
        np.concatenate([np.full(len(p[0].level_db), p[1], dtype=np.int64) for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def fit(hops: Hops, labels: Sequence[str], classes: Mapping[str, Sequence[int]], l2: float, keep_at: float) -> Evidence:
    """The :class:`Evidence` of every label with positives: its score and (when it has classes) its evidence."""
    weights: dict[str, tuple[float, ...]] = {}
    used = {x: tuple(c) for x, c in classes.items() if x in labels and c}
    s_logit = logit(hops.scores)
    for i, label in enumerate(labels):
        keep = (hops.label != i) | hops.sounding
        y = (hops.label[keep] == i).astype(np.float64)
        if y.sum() == 0:
            _LOGGER.warning("evidence: no sounding hops of %s in the validation clips: its score stands", label)
            continue
        balance = np.ones(len(y))
        own = s_logit[keep, i][:, None]
        alone = logistic.fit(own, y, balance, l2)
        beta = np.array([alone[0], 0.0, alone[1]])
        if label in used:
            evidence = logit(hops.audioset[keep][:, list(used[label])].max(axis=1))[:, None]
            both = logistic.fit(np.hstack([own, evidence]), y, balance, l2)
            if both[1] > 0 and both[0] > 0:
                beta = both
        if beta[0] <= 0:
            _LOGGER.warning("evidence: %s's own score does not separate its hops: its score stands", label)
            continue
        weights[label] = tuple(round(float(v), 5) for v in beta)
    kept = {x: c for x, c in used.items() if x in weights and weights[x][1] != 0.0}
    return Evidence(classes=kept, weights=weights, keep_at=keep_at)


def confirmed_share(
    hops: Hops, labels: Sequence[str], classes: Mapping[str, Sequence[int]], at: float
) -> dict[str, float]:
    """Per label with classes: the share of its sounding validation hops where the best of its classes reaches
    ``at`` (how often the old confirmation would have let the label through)."""
    share = {}
    for i, label in enumerate(labels):
        mine = (hops.label == i) & hops.sounding
        if label in classes and classes[label] and mine.any():
            best = hops.audioset[mine][:, list(classes[label])].max(axis=1)
            share[label] = round(float((best >= at).mean()), 3)
    return share


def save(hops: Hops, path: Path) -> None:
    """Keep the collected hops (the slow part) for a refit with other settings."""
    np.savez(path, scores=hops.scores, audioset=hops.audioset, label=hops.label, sounding=hops.sounding)


def load(path: Path) -> Hops:
    with np.load(path) as z:
        return Hops(z["scores"], z["audioset"], z["label"], z["sounding"])


def background_streams(paths: Sequence[Path], rate: int, seconds: float, seed: int = 0) -> list[Floats]:
    """Up to ``seconds`` of background audio, whole files in a seeded order, as streams."""
    from training.data.data import read_audio

    rng = np.random.default_rng(seed)
    found, total = [], 0.0
    for i in rng.permutation(len(paths)):
        samples = read_audio(paths[i], rate)
        found.append(samples)
        total += len(samples) / rate
        if total >= seconds:
            break
    return found
