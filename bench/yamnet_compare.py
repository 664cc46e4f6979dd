"""Side by side, one thread, this machine: one inference of our int8 model vs one
inference of YAMNet int8 (the model family Frigate ships), and the CPU share per
second of audio of each at its default cadence.

    .venv/bin/python -m bench.yamnet_compare [--model BUNDLE] [--hop FRAMES] [--runs 2000] [--kernels builtin]

YAMNet: ../shared/peers/yamnet_spectra_in.tflite, a 96x64 log-mel patch (0.96 s)
per call; Frigate calls it once per 0.975 s. Ours: every `hop` frames (default:
the bundle's hop_frames). Both need a front end; it is counted once per 10 ms
frame for both (YAMNet's is the same FFT -> 64-band mel -> log as ours).
``--kernels``: both models on the same int8 kernels (config ``model.kernels``; Frigate runs XNNPACK).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from edge.features import FeatureParams, FrontEnd, to_input
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from edge.model.runtime import KERNELS, Kernels, interpreter_class

_LOGGER = logging.getLogger("bench.yamnet")
ROOT = Path(__file__).resolve().parents[1]
YAMNET = ROOT.parent / "shared" / "peers" / "yamnet_spectra_in.tflite"
DEFAULT_MODEL = ROOT / "models" / "esc50.auricle"
FRIGATE_PERIOD_S = 0.975


def percentiles(times: list[float]) -> tuple[float, float]:
    arr = np.array(times) * 1e3
    return float(np.median(arr)), float(np.percentile(arr, 95))


def time_ours(clf: Classifier, runs: int) -> tuple[list[float], list[float]]:
    m = clf.manifest
    rng = np.random.default_rng(0)
    window = rng.uniform(-90, 10, (m.window_frames, m.features.n_bands)).astype(np.float32)
    tensor = to_input(window, m.features, m.input)
    invoke, full = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        clf.invoke(tensor)
        invoke.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        clf.scores(window)
        full.append(time.perf_counter() - t0)
    return invoke, full


def time_yamnet(runs: int, kernels: Kernels = "xnnpack") -> list[float]:
    cls, _ = interpreter_class(kernels)
    interp = cls(model_path=str(YAMNET), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    patch = np.random.default_rng(1).uniform(-7, 2, tuple(inp["shape"])).astype(np.float32)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interp.set_tensor(inp["index"], patch)
        interp.invoke()
        interp.get_tensor(interp.get_output_details()[0]["index"])
        times.append(time.perf_counter() - t0)
    return times


def frontend_ms_per_frame(params: FeatureParams, frames: int = 2000) -> float:
    fe = FrontEnd(params)
    x = (0.1 * np.random.default_rng(2).standard_normal(frames * params.hop_samples)).astype(np.float32)
    fe.process_streaming(x[: params.window_samples])
    t0 = time.perf_counter()
    for i in range(params.window_samples, len(x), params.hop_samples):
        fe.process_streaming(x[i : i + params.hop_samples])
    return (time.perf_counter() - t0) * 1e3 / (len(x) // params.hop_samples - 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--hop", type=int, default=None, help="inference hop in frames (default: the bundle's)")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--kernels", choices=KERNELS, default="xnnpack", help="int8 kernels of both models")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    clf = Classifier(read_bundle(args.model), threads=1, kernels=args.kernels)
    m = clf.manifest
    hop = args.hop or m.hop_frames
    for _ in range(50):  # warm-up both
        time_ours(clf, 1), time_yamnet(1, args.kernels)
    invoke, full = time_ours(clf, args.runs)
    yam = time_yamnet(args.runs, args.kernels)
    (o_med, o_p95), (f_med, f_p95), (y_med, y_p95) = percentiles(invoke), percentiles(full), percentiles(yam)
    frame_s = m.features.hop_samples / m.features.sample_rate
    fe_ms = frontend_ms_per_frame(m.features)
    ours_per_s = (1 / frame_s) * fe_ms + f_med / (hop * frame_s)
    yam_per_s = (1 / frame_s) * fe_ms + y_med / FRIGATE_PERIOD_S
    _LOGGER.info("one inference, 1 thread, %s kernels (%d runs)  median    p95", args.kernels, args.runs)
    _LOGGER.info("  ours %s %s invoke      %6.3f ms %6.3f ms", m.name, list(m.input.shape), o_med, o_p95)
    _LOGGER.info("  ours window->tensor->invoke->scores %6.3f ms %6.3f ms  (target p95 <= 5 ms)", f_med, f_p95)
    _LOGGER.info("  YAMNet int8 [1, 96, 64] invoke      %6.3f ms %6.3f ms", y_med, y_p95)
    _LOGGER.info("  ratio YAMNet/ours (invoke medians): %.2fx  (goal >= 5x)", y_med / o_med)
    _LOGGER.info("CPU per second of audio (front end %.1f us/frame counted for both):", fe_ms * 1e3)
    _LOGGER.info(
        "  ours every %d frames (%.0f ms): %6.2f ms/s = %.2f%% of a core",
        hop,
        hop * frame_s * 1e3,
        ours_per_s,
        ours_per_s / 10,
    )
    _LOGGER.info(
        "  YAMNet every %.3f s (Frigate):  %6.2f ms/s = %.2f%% of a core", FRIGATE_PERIOD_S, yam_per_s, yam_per_s / 10
    )


if __name__ == "__main__":
    main()
