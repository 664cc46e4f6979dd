"""Regenerate the golden front-end vectors (run by hand, never by the tests).

    .venv/bin/python tests/data/make_golden.py

Only run this when a change of numbers is intended; bump FRONTEND_VERSION.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from edge.features import FeatureParams, compute

HERE = Path(__file__).parent


def golden_signal() -> np.ndarray:
    """0.75 s at 16 kHz: a 300->4000 Hz chirp, a 1 kHz burst and quiet noise, int16."""
    rate = 16000
    t = np.arange(int(0.75 * rate)) / rate
    chirp = 0.4 * np.sin(2 * np.pi * (300 * t + (4000 - 300) / (2 * 0.75) * t**2))
    burst = 0.3 * np.sin(2 * np.pi * 1000 * t) * ((t > 0.3) & (t < 0.45))
    noise = 0.01 * np.random.default_rng(1234).standard_normal(len(t))
    return np.round((chirp + burst + noise) * 32767 * 0.8).astype(np.int16)


def main() -> None:
    samples = golden_signal()
    with wave.open(str(HERE / "golden.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(samples.tobytes())
    for name, params in GOLDEN_PARAMS.items():
        np.save(HERE / f"golden_{name}.npy", compute(samples, params))


GOLDEN_PARAMS = {
    "default": FeatureParams(),
    "bark_median": FeatureParams(scale="bark", n_bands=32, smoothing="median"),
    "erb_magnitude_gaussian": FeatureParams(scale="erb", spectrum="magnitude", smoothing="gaussian"),
}

if __name__ == "__main__":
    main()
