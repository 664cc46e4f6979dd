"""Front-end speed: our streaming path per 10 ms hop vs librosa on the same window.

    .venv/bin/python -m bench.frontend [--seconds 20]

Targets (issue 3): >= 5x faster than librosa per hop and < 50 us per hop here.
Both run in this process on the same audio; librosa is a benchmark oracle only.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from edge.features import FeatureParams, FrontEnd

_LOGGER = logging.getLogger("bench.frontend")


def ours_per_hop(x: np.ndarray, p: FeatureParams) -> tuple[float, np.ndarray]:
    fe = FrontEnd(p)
    fe.process_streaming(x[: p.window_samples - p.hop_samples])
    times, out = [], []
    for i in range(p.window_samples - p.hop_samples, len(x) - p.hop_samples + 1, p.hop_samples):
        t0 = time.perf_counter()
        frames = fe.process_streaming(x[i : i + p.hop_samples])
        times.append(time.perf_counter() - t0)
        out.append(frames)
    return float(np.median(times)), np.concatenate(out)


def librosa_per_hop(x: np.ndarray, p: FeatureParams, n_hops: int) -> tuple[float, np.ndarray]:
    import librosa

    lead = (p.n_fft - p.window_samples) // 2
    times, out = [], []
    for k in range(n_hops):
        start = k * p.hop_samples
        t0 = time.perf_counter()
        seg = np.pad(x[start : start + p.window_samples], (lead, p.n_fft - p.window_samples - lead))
        mel = librosa.feature.melspectrogram(
            y=seg, sr=p.sample_rate, n_fft=p.n_fft, hop_length=p.hop_samples, win_length=p.window_samples,
            window="hann", center=False, n_mels=p.n_bands, fmin=p.f_min_hz, fmax=p.f_max_hz, norm="slaney",
        )  # fmt: skip
        db = np.clip(librosa.power_to_db(mel, ref=p.db_ref, amin=1e-30, top_db=None), p.db_floor, p.db_ceiling)
        times.append(time.perf_counter() - t0)
        out.append(db.T)
    return float(np.median(times)), np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = FeatureParams()
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(int(args.seconds * p.sample_rate))).astype(np.float32)
    ours, our_frames = ours_per_hop(x, p)
    n = min(len(our_frames), 500)
    ref, ref_frames = librosa_per_hop(x, p, n)
    parity = float(np.abs(our_frames[:n] - ref_frames[:n]).max())
    hop_ms = 1000 * p.hop_samples / p.sample_rate
    _LOGGER.info("front end per %.0f ms hop (median, 1 frame each, %d hops)", hop_ms, len(our_frames))
    _LOGGER.info("  auricle streaming : %7.1f us  (target < 50 us)  %s", ours * 1e6, "OK" if ours < 50e-6 else "MISSED")
    _LOGGER.info("  librosa same frame: %7.1f us", ref * 1e6)
    _LOGGER.info(
        "  ratio             : %7.1fx faster (target >= 5x)  %s", ref / ours, "OK" if ref / ours >= 5 else "MISSED"
    )
    _LOGGER.info(
        "  CPU per second of audio: %.2f ms (%.3f%% of one core)",
        ours * 1e3 * 1000 / hop_ms,
        ours * 100 * 1000 / hop_ms,
    )
    _LOGGER.info("  parity vs librosa : max |diff| = %.2e dB over %d frames", parity, n)


if __name__ == "__main__":
    main()
