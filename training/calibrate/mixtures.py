"""Longer background for thresholds and false-alarm figures, made from the files at hand.

A few minutes of calibration audio with no false event only shows a rate below
about 3/hours (Poisson, 95%), far from one per hour.  Mixtures stretch it without
leaking training material: segments of 5-15 s where one file of a part plays
under another (speech over noise or music, two voices), at levels from -45 to
-15 dBFS.  They are made only from the part they stand for (calibrate or report),
so the held-out figures stay held out.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]
SEGMENT_S = (5.0, 15.0)
LEVEL_DBFS = (-45.0, -15.0)
SECOND_DB = (-10.0, 5.0)
"""Level of the second file relative to the first."""
SECOND_PROBABILITY = 0.7


def looped(x: Floats, n: int, rng: np.random.Generator) -> Floats:
    """``n`` samples of ``x`` from a random start, looping when it is shorter."""
    start = int(rng.integers(len(x)))
    reps = -(-(start + n) // len(x))
    out: Floats = np.tile(x, reps)[start : start + n]
    return out


def rms(x: Floats) -> float:
    """Root mean square (float64 sum), never 0."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


@dataclass(frozen=True)
class Segment:
    """One stretch of a mixture: which parts play in it (indices into the ``parts`` given), at what level."""

    start: int
    """First sample."""
    end: int
    """One past the last sample."""
    first: int
    second: int | None
    """The part under the first one, or None when it plays alone."""
    level_dbfs: float


@dataclass(frozen=True)
class Mixture:
    """Mixtures back to back and the segments they are made of, in order."""

    samples: Floats
    segments: tuple[Segment, ...]

    @cached_property
    def _starts(self) -> list[int]:
        return [s.start for s in self.segments]

    def at(self, sample: int) -> Segment | None:
        """The segment that holds ``sample`` (None past the end)."""
        i = bisect.bisect_right(self._starts, sample) - 1
        return self.segments[i] if i >= 0 and sample < self.segments[i].end else None


def mixtures(parts: Sequence[Floats], seconds: float, rate: int, seed: int = 0) -> Floats:
    """``seconds`` of mixtures of ``parts`` (float32 at ``rate``), back to back; empty without parts."""
    return mix(parts, seconds, rate, seed).samples


def mix(parts: Sequence[Floats], seconds: float, rate: int, seed: int = 0) -> Mixture:
    """:func:`mixtures`, with what plays in each segment (a longer one starts with the shorter's segments)."""
    usable = [i for i, p in enumerate(parts) if len(p) and rms(p) > 1e-6]
    if not usable or seconds <= 0:
        return Mixture(np.zeros(0, dtype=np.float32), ())
    rng = np.random.default_rng(seed)
    out, segments, total = [], [], 0
    while total < seconds * rate:
        n = int(rng.uniform(*SEGMENT_S) * rate)
        first = usable[int(rng.integers(len(usable)))]
        seg = looped(parts[first], n, rng).astype(np.float64)
        seg /= rms(seg.astype(np.float32))
        second = None
        if rng.random() < SECOND_PROBABILITY:
            second = usable[int(rng.integers(len(usable)))]
            other = looped(parts[second], n, rng).astype(np.float64)
            seg += other / rms(other.astype(np.float32)) * 10 ** (rng.uniform(*SECOND_DB) / 20)
        level = float(rng.uniform(*LEVEL_DBFS))
        seg *= 10 ** (level / 20) / rms(seg.astype(np.float32))
        peak = float(np.max(np.abs(seg)))
        if peak > 0.99:
            seg *= 0.99 / peak
        out.append(seg.astype(np.float32))
        segments.append(Segment(total, total + n, first, second, round(level, 1)))
        total += n
    return Mixture(np.concatenate(out), tuple(segments))
