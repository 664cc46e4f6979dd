"""Mixtures that stretch a background part for thresholds and held-out false-alarm figures."""

from __future__ import annotations

import numpy as np

from training.calibrate.mixtures import LEVEL_DBFS, mixtures

RATE = 16000


def _tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.1 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_length_levels_and_determinism() -> None:
    parts = [_tone(500, 1.0), _tone(2000, 3.0), np.zeros(RATE, np.float32)]
    x = mixtures(parts, 120.0, RATE, seed=3)
    assert x.dtype == np.float32 and 120 * RATE <= len(x) < 136 * RATE
    np.testing.assert_array_equal(x, mixtures(parts, 120.0, RATE, seed=3))
    assert not np.array_equal(x, mixtures(parts, 120.0, RATE, seed=4))
    assert np.max(np.abs(x)) <= 0.99
    level = 10 * np.log10(np.mean(np.square(x[: 5 * RATE], dtype=np.float64)))
    assert LEVEL_DBFS[0] - 1 <= level <= LEVEL_DBFS[1] + 1


def test_only_the_given_parts_are_heard() -> None:
    x = mixtures([_tone(500, 0.5), _tone(2000, 0.7)], 60.0, RATE, seed=0)
    spectrum = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    energy = spectrum**2
    near = (np.abs(freqs - 500) < 25) | (np.abs(freqs - 2000) < 25)  # loops and segment edges leak a little
    assert energy[near].sum() > 0.95 * energy.sum()


def test_more_minutes_add_to_the_same_mixtures() -> None:
    """A longer calibrate part (``calibration.min_calibrate_hours``) keeps what a shorter one heard, and adds."""
    parts = [_tone(500, 1.0), _tone(2000, 3.0)]
    short, long = mixtures(parts, 60.0, RATE), mixtures(parts, 240.0, RATE)
    assert len(long) >= 240 * RATE
    np.testing.assert_array_equal(long[: len(short)], short)


def test_nothing_to_mix() -> None:
    assert len(mixtures([], 10.0, RATE)) == 0
    assert len(mixtures([np.zeros(100, np.float32)], 10.0, RATE)) == 0
    assert len(mixtures([_tone(500, 1.0)], 0.0, RATE)) == 0
