"""Event-level benchmark: what a home user lives with, ours beside YAMNet as Frigate runs it.

    .venv/bin/python -m bench.events [--model BUNDLE] [--config FILE] [--fold N] [--gap-s 3]
        [--background DIR_OR_CSV] [--split calibrate] [--threshold 0.8] [--limit N] [--json-out FILE]

Ours runs through the daemon's own pipeline and event logic (``edge.daemon.replay``: the
bundle's hop and thresholds, the default config or ``--config``).

- Recall: the clips of the bundle's held-out ESC-50 fold in ONE stream, ``--gap-s`` of
  -70 dBFS white noise before, between and after them; scored by bench/event_scoring.py
  (right label starting 0.5 s before to 1 s after the clip; wrong-label starts there;
  clip start to the start being announced).
- False alarms: background audio in one stream the same way; every event start counts,
  per hour of background audio (the gaps are not counted in the hours).
- YAMNet int8: one call per 0.975 s of non-overlapping audio, a label fires when the
  best of its AudioSet classes (configs/esc50_audioset.csv) passes ``--threshold``;
  consecutive firing calls are one event, starting (and announced) at the end of its
  first call.  Labels with no AudioSet class are left out of its figures.
- Every total twice: over all labels, and over the home labels (bench/event_scoring.py's
  HOME_LABELS, the ones a home user listens for): recall, latency and wrong-label starts
  over the clips of home labels counting only home-label starts, false events of home
  labels only.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import event_scoring as scoring
from bench.event_scoring import HOME_LABELS, Detection, Span
from bench.streams import (
    BACKGROUND_CSV,
    ESC50_CSV,
    MAPPING_CSV,
    ROOT,
    SHARED,
    Detectors,
    Item,
    background_items,
    build_stream,
    fold_items,
    held_out_fold,
    publish,
)
from edge.daemon.config import load_config
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from training.model import yamnet

_LOGGER = logging.getLogger(__name__)


# --- the two measurements --------------------------------------------------------------


def recall_scores(
    spans: Sequence[Span],
    found: Mapping[str, Sequence[Detection]],
    labels: Mapping[str, Sequence[str]],
    named: Sequence[str],
) -> dict[str, Any]:
    """Per side: recall over its labels and over the home ones (home-label starts only); ours also over the
    labels YAMNet can name (``named``), all and home."""
    out: dict[str, Any] = {}
    for side, side_labels in labels.items():
        out[side] = scoring.recall(spans, found[side], side_labels)
        out[side]["home"] = scoring.recall(
            spans, scoring.of_labels(found[side], HOME_LABELS), scoring.home(side_labels)
        )
    out["ours"]["total_yamnet_labels"] = scoring.recall(spans, found["ours"], named)["total"]
    home_ours = scoring.of_labels(found["ours"], HOME_LABELS)
    out["ours"]["home"]["total_yamnet_labels"] = scoring.recall(spans, home_ours, scoring.home(named))["total"]
    return out


def false_alarm_scores(
    spans: Sequence[Span], found: Mapping[str, Sequence[Detection]], audio_s: float
) -> dict[str, Any]:
    """Per side: every event start per hour of background audio, and those of home labels only."""
    out: dict[str, Any] = {}
    for side, starts in found.items():
        out[side] = scoring.false_alarms(spans, starts, audio_s)
        out[side]["home"] = scoring.false_alarms(spans, scoring.of_labels(starts, HOME_LABELS), audio_s)
    return out


def recall_part(det: Detectors, items: Sequence[Item], gap_s: float, seed: int) -> dict[str, Any]:
    """Recall of both on the clips in one stream; ours also over the labels YAMNet can name."""
    rate = det.classifier.manifest.features.sample_rate
    stream, spans = build_stream(items, gap_s, rate, seed)
    _LOGGER.info("recall: %d clips, %.1f min stream", len(spans), len(stream) / rate / 60)
    scores = recall_scores(spans, det.run(stream), det.labels(), list(det.mapping))
    return {"clips": len(spans), "stream_s": round(len(stream) / rate, 1)} | scores


def false_alarm_part(det: Detectors, items: Sequence[Item], gap_s: float, seed: int) -> dict[str, Any]:
    """Every event start of both on background audio in one stream."""
    rate = det.classifier.manifest.features.sample_rate
    stream, spans = build_stream(items, gap_s, rate, seed)
    audio_s = sum(len(samples) for _, _, samples in items) / rate
    _LOGGER.info("false alarms: %d files, %.1f min of background audio", len(spans), audio_s / 60)
    scores = false_alarm_scores(spans, det.run(stream), audio_s)
    return {"files": len(spans), "audio_h": round(audio_s / 3600, 4)} | scores


def measure(det: Detectors, args: argparse.Namespace, fold: int) -> dict[str, Any]:
    """The whole report (what --json-out gets)."""
    rate = det.classifier.manifest.features.sample_rate
    clips = fold_items(args.esc50, fold, rate, args.limit)
    background = background_items(args.background, args.split, rate, args.limit)
    m = det.classifier.manifest
    return {
        "model": {"path": str(args.model), "name": m.name, "version": m.version},
        "config": str(args.config) if args.config else "defaults",
        "fold": fold,
        "gap_s": args.gap_s,
        "window_s": [-scoring.BEFORE_S, scoring.AFTER_S],
        "yamnet_threshold": args.threshold,
        "yamnet_unmapped_labels": sorted(set(det.classifier.labels) - set(det.mapping)),
        "home_labels": list(HOME_LABELS),
        "background": {"source": str(args.background), "split": args.split},
        "recall": recall_part(det, clips, args.gap_s, args.seed),
        "false_alarms": false_alarm_part(det, background, args.gap_s, args.seed + 1),
    }


# --- output ----------------------------------------------------------------------------


def _fmt(value: float | None, spec: str, width: int) -> str:
    return "-".rjust(width) if value is None else format(value, spec).rjust(width)


def _row(name: str, clips: int, cells: Sequence[tuple[float | None, str]]) -> str:
    widths = (7, 7, 8, 8, 9, 9)
    body = " ".join(_fmt(v, spec, w) for (v, spec), w in zip(cells, widths, strict=False))
    return f"{name:22}{clips:6d} {body}"


def table(report: dict[str, Any]) -> str:
    """Per label, in total and over the home labels: recall %, wrong-label starts per clip, false events per
    hour; ours | YAMNet."""
    rec, fa, home = report["recall"], report["false_alarms"], set(report["home_labels"])
    lines = [
        f"{'':28} {'recall %':>15} {'wrong/clip':>17} {'false events/h':>19}",
        f"{'label (* home)':22}{'clips':>6} "
        + " ".join(f"{side:>{w}}" for w in (7, 8, 9) for side in ("ours", "YAMNet")),
    ]
    labels = sorted(set(rec["ours"]["per_label"]) | set(fa["ours"]["per_label"]) | set(fa["yamnet"]["per_label"]))
    for label in labels:
        ours, yam = rec["ours"]["per_label"].get(label, {}), rec["yamnet"]["per_label"].get(label, {})
        fa_yam = None if label in report["yamnet_unmapped_labels"] else _per_hour(fa["yamnet"], label)
        name = f"{label} *" if label in home else label
        lines.append(_row(name, ours.get("clips", 0), _cells(ours, yam, _per_hour(fa["ours"], label), fa_yam)))
    return "\n".join(lines + _totals(rec, fa, "all") + _totals(rec, fa, "home") + _notes(report))


def _view(part: dict[str, Any], view: str) -> dict[str, Any]:
    """Both sides of a report part over all labels (``all``) or over the home labels (``home``)."""
    return {side: part[side] if view == "all" else part[side]["home"] for side in ("ours", "yamnet")}


def _totals(rec: dict[str, Any], fa: dict[str, Any], view: str) -> list[str]:
    """The total rows of one view: every label, then the labels YAMNet can name."""
    r, f = _view(rec, view), _view(fa, view)
    name, ours, yam = "total" if view == "all" else "home", r["ours"]["total"], r["yamnet"]["total"]
    fa_totals = f["ours"]["total"]["per_hour"], f["yamnet"]["total"]["per_hour"]
    return [
        _row(name if view == "all" else "home labels", ours["clips"], _cells(ours, {}, *fa_totals)),
        _row(f"{name}, YAMNet's labels", yam["clips"], _cells(r["ours"]["total_yamnet_labels"], yam)),
    ]


def _per_hour(side: dict[str, Any], label: str) -> float:
    return float(side["per_label"].get(label, {"per_hour": 0.0})["per_hour"])


def _cells(
    ours: dict[str, Any], yam: dict[str, Any], fa_ours: float | None = None, fa_yam: float | None = None
) -> list[tuple[float | None, str]]:
    pct = [None if s.get("recall") is None else 100 * s["recall"] for s in (ours, yam)]
    return [
        (pct[0], ".0f"),
        (pct[1], ".0f"),
        (ours.get("wrong_per_clip"), ".2f"),
        (yam.get("wrong_per_clip"), ".2f"),
        (fa_ours, ".1f"),
        (fa_yam, ".1f"),
    ]


def _latency(total: dict[str, Any]) -> str:
    return f"{total['latency_p50_s']} / {total['latency_p95_s']} s"


def _notes(report: dict[str, Any]) -> list[str]:
    rec, fa = report["recall"], report["false_alarms"]
    lines = [
        f"clip start -> event start announced, p50 / p95, {name}: ours {_latency(r['ours']['total'])} "
        f"(YAMNet's labels: {_latency(r['ours']['total_yamnet_labels'])}), YAMNet {_latency(r['yamnet']['total'])}"
        for name, r in (("all labels", _view(rec, "all")), ("home labels", _view(rec, "home")))
    ]
    home_fa = {side: fa[side]["home"]["total"]["events"] for side in ("ours", "yamnet")}
    return [
        *lines,
        f"event starts in the gaps between clips: ours {rec['ours']['events_in_gaps']}, "
        f"YAMNet {rec['yamnet']['events_in_gaps']}",
        f"false events rest on {fa['audio_h']:.3f} h of background ({fa['files']} files): "
        f"ours {fa['ours']['total']['events']} event starts ({home_fa['ours']} of home labels), "
        f"YAMNet {fa['yamnet']['total']['events']} ({home_fa['yamnet']})",
        f"home labels (* above; home rows count only their event starts): {', '.join(report['home_labels'])}",
        f"YAMNet leaves out (no AudioSet class): {', '.join(report['yamnet_unmapped_labels'])}",
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "esc50.auricle")
    parser.add_argument("--config", type=Path, default=None, help="daemon config file (default: built-in defaults)")
    parser.add_argument("--fold", type=int, default=None, help="ESC-50 fold (default: the bundle's test fold)")
    parser.add_argument("--esc50", type=Path, default=ESC50_CSV, help="esc50.csv, with audio/ beside it")
    parser.add_argument("--background", type=Path, default=BACKGROUND_CSV, help="folder of audio files, or a CSV")
    parser.add_argument(
        "--split",
        default="report",
        help="split of --background when it is a CSV: report (default: held out from training and thresholds), "
        "calibrate (what thresholds were chosen on), all-calibrate, train",
    )
    parser.add_argument("--gap-s", type=float, default=3.0, help="seconds of -70 dBFS noise between clips")
    parser.add_argument("--threshold", type=float, default=0.8, help="YAMNet score that fires (Frigate's 0.8)")
    parser.add_argument("--mapping", type=Path, default=MAPPING_CSV, help="ESC-50 label -> AudioSet classes")
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips and N background files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the gap noise")
    parser.add_argument("--json-out", type=Path, default=ROOT / "runs" / "bench" / "events.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bundle = read_bundle(args.model)
    classifier = Classifier(bundle, threads=1)
    peers = SHARED / "peers"
    peer = yamnet.Yamnet(
        yamnet.YamnetParams(
            model_path=peers / "yamnet_spectra_in.tflite", class_map_path=peers / "yamnet_class_map.csv"
        )
    )
    mapping = yamnet.read_mapping(args.mapping, peer.class_names)
    det = Detectors(classifier, load_config(args.config), peer, mapping, args.threshold)
    report = measure(det, args, args.fold if args.fold is not None else held_out_fold(bundle.manifest))
    publish(table(report), report, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
