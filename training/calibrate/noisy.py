"""Validation clips inside calibrate background: the positives that thresholds answer to in a room.

A clean validation clip shows whether its label fires, but seldom whether another label fires on it: in a
home the sound plays under speech, a TV or a dishwasher, and the false events left on the hours in a home are
mostly wrong labels near a real sound (models/MODEL_CARD.md).  Each copy here is the clip as recorded, with
background from the ``calibrate`` part under it (a random stretch of one file, looped when short) at an SNR
drawn from a range - the clip's active level (:func:`active_rms`, which bench/home_hour.py measures its
sounds with too) over the RMS of the background - and 3 s of that background before it and 2 s
after, so the smoothing starts from the room.  Seeded: the same run gets the same copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.calibrate.mixtures import looped, rms

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Noisy:
    """How many copies of each validation clip, at what SNR, from which seed (config ``calibration``)."""

    copies: int
    snr_db: tuple[float, float] = (0.0, 20.0)
    seed: int = 0


BEFORE_S, AFTER_S = 3.0, 2.0
FRAME_S = 0.02
ACTIVE_DB = 20.0


def active_rms(x: Floats, rate: int) -> float:
    """RMS of the 20 ms frames within 20 dB of the loudest (the sound, not its padding)."""
    n = max(1, round(FRAME_S * rate))
    frames = x[: len(x) // n * n].reshape(-1, n).astype(np.float64) if len(x) >= n else x[None, :].astype(np.float64)
    power = np.mean(np.square(frames), axis=1)
    loud = power[power >= power.max() * 10 ** (-ACTIVE_DB / 10)]
    return float(np.sqrt(np.mean(loud) + 1e-20))


def noisy_copy(
    clip: Floats, bed: Sequence[Floats], rate: int, snr_db: tuple[float, float], rng: np.random.Generator
) -> tuple[Floats, float]:
    """One copy of ``clip`` inside a stretch of ``bed`` (one file of it, looped), and where the clip starts (s)."""
    before, after = round(BEFORE_S * rate), round(AFTER_S * rate)
    n = before + len(clip) + after
    usable = [b for b in bed if len(b) and float(np.max(np.abs(b))) > 0]
    if not usable:
        raise ValueError("calibration.noisy_copies: the calibrate part has no audible file to play clips in")
    stretch = looped(usable[int(rng.integers(len(usable)))], n, rng)
    snr = float(rng.uniform(*snr_db))
    under = stretch.astype(np.float64) * (active_rms(clip, rate) / rms(stretch) * 10 ** (-snr / 20))
    under[before : before + len(clip)] += clip
    peak = float(np.max(np.abs(under)))
    if peak > 0.99:  # as a microphone would: the whole copy down, never clipped
        under *= 0.99 / peak
    return under.astype(np.float32), before / rate
