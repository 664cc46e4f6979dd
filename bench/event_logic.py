"""Which event logic turns a model's scores into the fewest false alarms for the most recall?

For each candidate event setting (smoothing, hops, k, release, hold) the thresholds are chosen
again from the false-alarm budget on the background's calibrate part (+ mixtures)
and the validation clips, exactly as training does, and then measured where
nothing was tuned: false events per hour on the report part (+ its own mixtures)
and event recall on the test fold.  Score streams come from the daemon's pipeline
once (``edge.daemon.replay``); only the event logic changes between rows.

    .venv/bin/python -m bench.event_logic --run runs/esc50 [--config configs/esc50.yaml]
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.daemon.config import Config
from edge.daemon.replay import hop_scores
from edge.detect.events import EventDetector, EventParams
from edge.model.classifier import Classifier
from training.calibrate import replay
from training.calibrate.search import CalibrationParams, calibrate
from training.calibrate.streams import BackgroundStream, PositiveClip
from training.data import prepare
from training.data.data import read_audio
from training.evaluate import evaluate
from training.model import export
from training.recipe.load import load

_LOGGER = logging.getLogger(__name__)

CANDIDATES = [
    EventParams(),
    EventParams(release=1.0),  # no hysteresis: what the daemon did before 5.3.0
    EventParams(smoothing_hops=8),
    EventParams(smoothing_hops=10),
    EventParams(smoothing="k_of_n", smoothing_hops=5, k=3),
    EventParams(smoothing="k_of_n", smoothing_hops=8, k=5),
    EventParams(smoothing="k_of_n", smoothing_hops=10, k=7),
]


@dataclass
class Streams:
    """Per-hop scores of every stream a row needs, computed once."""

    calibrate: list[BackgroundStream]
    report: list[BackgroundStream]
    val: list[PositiveClip]
    test: list[PositiveClip]
    hop_s: float


def _clips(clf: Classifier, prepared: Any, idx: list[int]) -> list[PositiveClip]:
    p = clf.manifest.features
    out = []
    for c in idx:
        clip = prepared.clips[c]
        start, end = replay.sound_span(prepared.frames[c], p.window_samples, p.hop_samples, p.sample_rate, p.db_floor)
        scores = hop_scores(clf, [read_audio(clip.path, p.sample_rate)], Config())[1]
        out.append(PositiveClip(scores, prepared.targets[c], start, end))
    return out


def score_streams(run: Path, cfg: Any, mixture_minutes: float) -> tuple[Classifier, Streams]:
    """Every score stream, through the run's int8 model inside the daemon's pipeline."""
    prepared = prepare.load(run)
    clf = evaluate.classifier(cfg, prepared.labels, (run / export.INT8_FILE).read_bytes(), "int8")
    bg = prepared.background
    cal = replay.background_streams(clf, bg.calibrate.paths, Config(), 60 * mixture_minutes)
    rate = clf.manifest.features.sample_rate
    report = [
        BackgroundStream(hop_scores(clf, [x], Config())[1], len(x) / rate)
        for _, x in replay.part_streams(replay.read_part(bg.report.paths, rate), rate, 60 * mixture_minutes)
    ]
    m = clf.manifest
    hop_s = m.hop_frames * m.features.hop_samples / rate
    val = _clips(clf, prepared, list(prepared.split.val))
    test = _clips(clf, prepared, list(prepared.split.test))
    return clf, Streams(cal, report, val, test, hop_s)


def _starts(
    scores: np.ndarray, labels: tuple[str, ...], thr: dict[str, float], params: EventParams, hop_s: float
) -> list[tuple[str, float]]:
    """(label, start offset) of every event start the daemon's detector raises on a score stream."""
    det = EventDetector(labels, thr, params)
    found = []
    for h, row in enumerate(scores):
        found += [(e.label, e.start_offset_s) for e in det.update(row, h * hop_s) if e.kind == "start"]
    return found


def measure(clf: Classifier, s: Streams, params: EventParams, budget: float) -> dict[str, Any]:
    """Thresholds from the budget under ``params``, then held-out false alarms and test-fold recall."""
    labels = clf.labels
    cal = calibrate(labels, s.calibrate, s.val, hop_s=s.hop_s, events=params,
                    params=CalibrationParams(budget_per_hour=budget))  # fmt: skip
    thr = cal.thresholds()
    false = sum(len(_starts(b.scores, labels, thr, params, s.hop_s)) for b in s.report)
    hours = sum(b.duration_s for b in s.report) / 3600
    hits, wrong = 0, 0
    for clip in s.test:
        starts = _starts(clip.scores, labels, thr, params, s.hop_s)
        right = labels[clip.label]
        hits += any(x == right and clip.start_s - 0.5 <= t <= clip.end_s + 1.0 for x, t in starts)
        wrong += sum(x != right for x, _ in starts)
    return {
        "params": asdict(params),
        "validation_recall": round(cal.to_dict()["calibration"]["recall"] or 0.0, 3),
        "heldout_false_per_hour": round(false / hours, 1),
        "heldout_false_events": false,
        "heldout_hours": round(hours, 3),
        "test_recall": round(hits / len(s.test), 3),
        "test_wrong_per_clip": round(wrong / len(s.test), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a training run directory (prepared.json, int8)")
    parser.add_argument("--config", type=Path, default=Path("configs/esc50.yaml"), help="its training config")
    parser.add_argument("--budget", type=float, default=1.0, help="false events per hour over all labels")
    parser.add_argument("--mixture-minutes", type=float, default=30.0)
    parser.add_argument("--json-out", type=Path, default=Path("runs/bench/event_logic.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load(args.config).config
    clf, s = score_streams(args.run, cfg, args.mixture_minutes)
    rows = [measure(clf, s, p, args.budget) for p in CANDIDATES]
    print(f"{'event logic':<28} {'val recall':>10} {'test recall':>11} {'wrong/clip':>10} {'held-out FA/h':>14}")
    for r in rows:
        p = r["params"]
        name = f"mean of {p['smoothing_hops']}" if p["smoothing"] == "mean" else f"{p['k']} of {p['smoothing_hops']}"
        name += f", release {p['release']:g}"
        recall = f"{r['validation_recall']:>10.3f} {r['test_recall']:>11.3f} {r['test_wrong_per_clip']:>10.3f}"
        held = f"{r['heldout_false_per_hour']:>8.1f} ({r['heldout_false_events']} in {r['heldout_hours']} h)"
        print(f"{name:<28} {recall} {held}")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
