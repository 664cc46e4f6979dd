"""Which window of audio the bundle's self-test stores (edge/model/selftest.py).

:func:`choose_window` stores, among the candidates training gives, a window on
which XNNPACK and the builtin kernels of the training machine agree within
:data:`STABLE_STEPS` (every such window passed on every runtime and machine
measured, where 2% to 3% of arbitrary ones fail on the builtin kernels:
bench/kernel_spread.py) and on which the smallest level error of
:data:`LEVEL_ERRORS_DB` fails the comparison (edge/model/agreement.py), so the
test can still tell a front end that scales its input wrongly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.model.agreement import Floats, Output, outputs
from edge.model.bundle import Manifest
from edge.model.classifier import Classifier

STABLE_STEPS = 1.0
"""Largest difference between XNNPACK and the builtin kernels, per output, on the window training stores."""
LEVEL_ERRORS_DB = (1.0, 2.0, 3.0)
"""Level errors tried on a candidate window, smallest first: the window that a smaller one fails is kept."""
CANDIDATE_WINDOWS = 240
"""At most this many windows are tried (spread evenly over the candidates' windows), so choosing stays a few s."""


@dataclass(frozen=True)
class WindowChoice:
    """The window :func:`choose_window` picked and why."""

    samples: npt.NDArray[np.int16]
    """Exactly one window of int16 PCM."""
    spread_steps: float
    """Largest difference between XNNPACK and the builtin kernels on it, in output steps."""
    fails_at_db: float | None
    """The smallest level error of :data:`LEVEL_ERRORS_DB` (one way or the other) that fails the comparison on
    it on both kernel families: what a front end that scales its input wrongly does; None when none does."""
    top_score: float
    """The model's highest label score on it."""
    tried: int
    """Windows compared."""

    @property
    def stable(self) -> bool:
        return self.spread_steps <= STABLE_STEPS + 1e-3

    def describe(self) -> str:
        """One line for the training log."""
        level = "no level error" if self.fails_at_db is None else f"a level {self.fails_at_db:g} dB off"
        return (
            f"self-test window: kernels agree within {self.spread_steps:g} steps (want <= {STABLE_STEPS:g}), "
            f"{level} fails it (tried up to {LEVEL_ERRORS_DB[-1]:g}), top score {self.top_score:.2f}; "
            f"{self.tried} windows tried"
        )


def choose_window(classifier: Classifier, samples: npt.ArrayLike | Sequence[npt.ArrayLike]) -> WindowChoice:
    """The window of ``samples`` (one clip or several) to store: of those on which XNNPACK and the builtin
    kernels agree within :data:`STABLE_STEPS` (when none do, of all), the one that the smallest level error
    fails, then the most confident, then the one with the least spread.  ValueError when no clip holds a
    window."""
    need = classifier.manifest.window_samples
    clips = _clips(samples)
    windows = [pcm(c[i : i + need]) for c in clips for i in _starts(len(c), need, classifier.manifest)]
    if not windows:
        longest = max((len(c) for c in clips), default=0)
        raise ValueError(f"self-test audio: need at least {need} samples (one window), got {longest}")
    windows = [windows[i] for i in np.linspace(0, len(windows) - 1, min(len(windows), CANDIDATE_WINDOWS)).astype(int)]
    builtin = Classifier(classifier.bundle, kernels="builtin")
    choices = [measure_window(classifier, builtin, w) for w in windows]
    worst = LEVEL_ERRORS_DB[-1] + 1.0
    best = min(choices, key=lambda c: (not c.stable, c.fails_at_db or worst, -c.top_score, c.spread_steps))
    return dataclasses.replace(best, tried=len(choices))


def measure_window(xnnpack: Classifier, builtin: Classifier, window: npt.NDArray[np.int16]) -> WindowChoice:
    """How one window (int16 PCM) fares: its spread between the kernel families, the smallest level error
    that fails the comparison on it, and its top label score."""
    samples = window.astype(np.float32) / np.float32(32768.0)
    got = outputs(xnnpack, samples)
    spread = max(float(np.max(o.steps(b.scores))) for o, b in zip(got, outputs(builtin, samples), strict=True))
    fails_at = next(
        (db for db in LEVEL_ERRORS_DB if _fails(xnnpack, got, samples, db) and _fails(builtin, got, samples, db)), None
    )
    top = float(np.max(got[0].scores[: len(xnnpack.manifest.labels)]))
    return WindowChoice(window, spread, fails_at, top, tried=1)


def pcm(x: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.int16]:
    """-1..1 samples as int16 PCM, as the self-test stores them (rounded in ``x``'s own precision)."""
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def _fails(classifier: Classifier, stored: list[Output], samples: Floats, db: float) -> bool:
    """Whether ``samples`` with a level ``db`` off (either way) fails the comparison with ``stored``."""
    for sign in (-1, 1):
        off = outputs(classifier, samples * np.float32(10.0 ** (sign * db / 20.0)))
        if any(not o.compare(w.scores).passed for o, w in zip(stored, off, strict=True)):
            return True
    return False


def _starts(n: int, need: int, manifest: Manifest) -> range:
    """Window starts in a clip of ``n`` samples, one per model hop, the last window included."""
    hop = max(1, manifest.features.hop_samples * manifest.hop_frames)
    return range((n - need) % hop, n - need + 1, hop) if n >= need else range(0)


def _clips(samples: npt.ArrayLike | Sequence[npt.ArrayLike]) -> list[npt.NDArray[np.float64]]:
    """One clip or a list of clips, as mono float64 arrays."""
    if isinstance(samples, (list, tuple)) and samples and np.ndim(samples[0]) > 0:
        return [np.asarray(c, dtype=np.float64).reshape(-1) for c in samples]
    return [np.asarray(samples, dtype=np.float64).reshape(-1)]
