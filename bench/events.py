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
  best of its AudioSet classes (bench/esc50_audioset.csv) passes ``--threshold``;
  consecutive firing calls are one event, starting (and announced) at the end of its
  first call.  Labels with no AudioSet class are left out of its figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf

from bench import event_scoring as scoring
from bench.event_scoring import Detection, Span
from edge.audio.resample import Resampler
from edge.daemon.config import Config, load_config
from edge.daemon.replay import stream_events
from edge.model.bundle import Manifest, read_bundle
from edge.model.classifier import Classifier
from training import yamnet

_LOGGER = logging.getLogger("bench.events")
ROOT = Path(__file__).resolve().parents[1]


def _shared() -> Path:
    """``AURICLE_SHARED``, else ``../shared`` beside the checkout, else the workplace's fixed copy."""
    forced = os.environ.get("AURICLE_SHARED")
    if forced:
        return Path(forced)
    found = [p for p in (ROOT.parent / "shared", Path("/work/shared")) if (p / "README.md").is_file()]
    return found[0] if found else ROOT.parent / "shared"


SHARED = _shared()
ESC50_CSV = SHARED / "data" / "esc50" / "esc50.csv"
BACKGROUND_CSV = SHARED / "data" / "background" / "background.csv"
MAPPING_CSV = ROOT / "bench" / "esc50_audioset.csv"
GAP_DBFS = -70.0
AUDIO_SUFFIXES = {".wav", ".flac"}

Floats = npt.NDArray[np.float32]
Item = tuple[str, str, Floats]
"""(name, label, samples) of one clip or background file."""


# --- audio -----------------------------------------------------------------------------


def read_mono(path: Path, rate: int) -> Floats:
    """A file as mono float32 at ``rate`` (resampled like the daemon's file source)."""
    data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    mono = np.asarray(data.mean(axis=1), dtype=np.float32)
    return mono if file_rate == rate else Resampler(file_rate, rate).process(mono)


def build_stream(items: Sequence[Item], gap_s: float, rate: int, seed: int = 0) -> tuple[Floats, list[Span]]:
    """The items in one stream with a gap of -70 dBFS white noise before, between and after them."""
    rng = np.random.default_rng(seed)
    gap = round(gap_s * rate)
    parts, spans, pos = [], [], 0
    for name, label, samples in items:
        parts += [_noise(rng, gap), samples]
        spans.append(Span(name, label, (pos + gap) / rate, (pos + gap + len(samples)) / rate))
        pos += gap + len(samples)
    parts.append(_noise(rng, gap))
    return np.concatenate(parts).astype(np.float32), spans


def _noise(rng: np.random.Generator, n: int) -> Floats:
    return (10 ** (GAP_DBFS / 20) * rng.standard_normal(n)).astype(np.float32)


def fold_items(csv_path: Path, fold: int, rate: int, limit: int | None) -> list[Item]:
    """The clips of one ESC-50 fold (esc50.csv, audio/ beside it)."""
    with csv_path.open(newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if int(row["fold"]) == fold][:limit]
    if not rows:
        raise SystemExit(f"no clips of fold {fold} in {csv_path}")
    audio = csv_path.parent / "audio"
    return [(row["filename"], row["category"], read_mono(audio / row["filename"], rate)) for row in rows]


def in_split(row: dict[str, str], split: str) -> bool:
    """A CSV row's split; ``report`` (the default) is the calibrate groups that training holds out from
    threshold choice (training.background.held_out at the default REPORT_FRACTION), ``calibrate`` the rest,
    ``all-calibrate`` both."""
    from training.background import held_out
    from training.config import REPORT_FRACTION

    if split in ("report", "calibrate") and row["split"] == "calibrate":
        return held_out(row.get("group") or row["filename"], REPORT_FRACTION) == (split == "report")
    return row["split"] == split or (split == "all-calibrate" and row["split"] == "calibrate")


def background_items(source: Path, split: str, rate: int, limit: int | None) -> list[Item]:
    """Background audio: every WAV/FLAC under a folder, or a CSV's ``filename`` rows of one ``split``."""
    if source.suffix == ".csv":
        with source.open(newline="") as fh:
            paths = [source.parent / row["filename"] for row in csv.DictReader(fh) if in_split(row, split)]
    else:
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not paths:
        raise SystemExit(
            f"no background audio in {source}" + (f" (split {split!r})" if source.suffix == ".csv" else "")
        )
    return [(str(p.relative_to(source.parent)), "", read_mono(p, rate)) for p in paths[:limit]]


# --- detectors -------------------------------------------------------------------------


def our_detections(classifier: Classifier, samples: Floats, config: Config) -> list[Detection]:
    """Event starts of the daemon's pipeline and event logic on one stream."""
    events = stream_events(classifier, samples, config)
    return [Detection(e.label, e.start_offset_s, e.offset_s) for e in events if e.kind == "start"]


def read_mapping(path: Path, class_names: Sequence[str]) -> dict[str, list[int]]:
    """ESC-50 label -> YAMNet class indices (``;``-separated names); labels with none are left out."""
    index = {name: i for i, name in enumerate(class_names)}
    mapping: dict[str, list[int]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            names = [n for n in row["audioset_classes"].split(";") if n]
            unknown = [n for n in names if n not in index]
            if unknown:
                raise ValueError(f"{path}: {row['esc50_label']}: not YAMNet classes: {unknown}")
            if names:
                mapping[row["esc50_label"]] = [index[n] for n in names]
    used = [i for indices in mapping.values() for i in indices]
    if len(used) != len(set(used)):
        raise ValueError(f"{path}: an AudioSet class is mapped to two labels")
    return mapping


def yamnet_detections(
    model: yamnet.Yamnet, samples: Floats, mapping: dict[str, list[int]], threshold: float
) -> list[Detection]:
    """Frigate's way: one call per 0.975 s chunk; a run of firing chunks of one label is one event."""
    hop, rate = yamnet.FRIGATE_HOP_SAMPLES, yamnet.FEATURES.sample_rate
    labels = list(mapping)
    firing = np.zeros((len(samples) // hop + 1, len(labels)), dtype=bool)  # row 0: nothing before the stream
    for k in range(1, len(firing)):
        scores, _ = model.infer(yamnet.patches(samples[(k - 1) * hop : k * hop])[0])
        firing[k] = [scores[mapping[label]].max() >= threshold for label in labels]
    ks, js = np.nonzero(firing[1:] & ~firing[:-1])
    return [Detection(labels[j], (k + 1) * hop / rate, (k + 1) * hop / rate) for k, j in zip(ks, js, strict=True)]


@dataclass(frozen=True)
class Detectors:
    """Both sides of the comparison, run on the same stream."""

    classifier: Classifier
    config: Config
    peer: yamnet.Yamnet
    mapping: dict[str, list[int]]
    threshold: float

    def run(self, samples: Floats) -> dict[str, list[Detection]]:
        yam = yamnet_detections(self.peer, samples, self.mapping, self.threshold)
        return {"ours": our_detections(self.classifier, samples, self.config), "yamnet": yam}

    def labels(self) -> dict[str, Sequence[str]]:
        return {"ours": self.classifier.labels, "yamnet": list(self.mapping)}


# --- the two measurements --------------------------------------------------------------


def recall_part(det: Detectors, items: Sequence[Item], gap_s: float, seed: int) -> dict[str, Any]:
    """Recall of both on the clips in one stream; ours also over the labels YAMNet can name."""
    rate = det.classifier.manifest.features.sample_rate
    stream, spans = build_stream(items, gap_s, rate, seed)
    _LOGGER.info("recall: %d clips, %.1f min stream", len(spans), len(stream) / rate / 60)
    found = det.run(stream)
    out: dict[str, Any] = {"clips": len(spans), "stream_s": round(len(stream) / rate, 1)}
    for side, labels in det.labels().items():
        out[side] = scoring.recall(spans, found[side], labels)
    out["ours"]["total_yamnet_labels"] = scoring.recall(spans, found["ours"], det.mapping)["total"]
    return out


def false_alarm_part(det: Detectors, items: Sequence[Item], gap_s: float, seed: int) -> dict[str, Any]:
    """Every event start of both on background audio in one stream."""
    rate = det.classifier.manifest.features.sample_rate
    stream, spans = build_stream(items, gap_s, rate, seed)
    audio_s = sum(len(samples) for _, _, samples in items) / rate
    _LOGGER.info("false alarms: %d files, %.1f min of background audio", len(spans), audio_s / 60)
    out: dict[str, Any] = {"files": len(spans), "audio_h": round(audio_s / 3600, 4)}
    for side, found in det.run(stream).items():
        out[side] = scoring.false_alarms(spans, found, audio_s)
    return out


def held_out_fold(manifest: Manifest) -> int:
    """The bundle's held-out ESC-50 fold, from its metrics (``test: folds [4]``)."""
    test = manifest.metrics.get("test")
    found = re.fullmatch(r"folds \[(\d+)\]", str(test))
    if found is None:
        raise SystemExit(f"the bundle does not name one test fold (metrics.test = {test!r}): pass --fold")
    return int(found.group(1))


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
    """Per label and total: recall %, wrong-label starts per clip, false events per hour; ours | YAMNet."""
    rec, fa = report["recall"], report["false_alarms"]
    lines = [
        f"{'':28} {'recall %':>15} {'wrong/clip':>17} {'false events/h':>19}",
        f"{'label':22}{'clips':>6} {'ours':>7} {'YAMNet':>7} {'ours':>8} {'YAMNet':>8} {'ours':>9} {'YAMNet':>9}",
    ]
    labels = sorted(set(rec["ours"]["per_label"]) | set(fa["ours"]["per_label"]) | set(fa["yamnet"]["per_label"]))
    for label in labels:
        ours, yam = rec["ours"]["per_label"].get(label, {}), rec["yamnet"]["per_label"].get(label, {})
        fa_yam = None if label in report["yamnet_unmapped_labels"] else _per_hour(fa["yamnet"], label)
        lines.append(_row(label, ours.get("clips", 0), _cells(ours, yam, _per_hour(fa["ours"], label), fa_yam)))
    total, yam_total = rec["ours"]["total"], rec["yamnet"]["total"]
    fa_totals = fa["ours"]["total"]["per_hour"], fa["yamnet"]["total"]["per_hour"]
    lines.append(_row("total", total["clips"], _cells(total, {}, *fa_totals)))
    lines.append(
        _row("total, YAMNet's labels", yam_total["clips"], _cells(rec["ours"]["total_yamnet_labels"], yam_total))
    )
    return "\n".join(lines + _notes(report))


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


def _notes(report: dict[str, Any]) -> list[str]:
    rec, fa = report["recall"], report["false_alarms"]
    ours, same, yam = rec["ours"]["total"], rec["ours"]["total_yamnet_labels"], rec["yamnet"]["total"]
    return [
        f"clip start -> event start announced, p50 / p95: ours {ours['latency_p50_s']} / {ours['latency_p95_s']} s "
        f"(YAMNet's labels: {same['latency_p50_s']} / {same['latency_p95_s']} s), "
        f"YAMNet {yam['latency_p50_s']} / {yam['latency_p95_s']} s",
        f"event starts in the gaps between clips: ours {rec['ours']['events_in_gaps']}, "
        f"YAMNet {rec['yamnet']['events_in_gaps']}",
        f"false events rest on {fa['audio_h']:.3f} h of background ({fa['files']} files): "
        f"ours {fa['ours']['total']['events']}, YAMNet {fa['yamnet']['total']['events']} event starts",
        f"YAMNet leaves out (no AudioSet class): {', '.join(report['yamnet_unmapped_labels'])}",
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "esc50.auricle")
    parser.add_argument("--config", type=Path, default=None, help="daemon config file (default: built-in defaults)")
    parser.add_argument("--fold", type=int, default=None, help="ESC-50 fold (default: the bundle's test fold)")
    parser.add_argument("--esc50", type=Path, default=ESC50_CSV, help="esc50.csv, with audio/ beside it")
    parser.add_argument("--background", type=Path, default=BACKGROUND_CSV, help="folder of WAV/FLAC, or a CSV")
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
    mapping = read_mapping(args.mapping, peer.class_names)
    det = Detectors(classifier, load_config(args.config), peer, mapping, args.threshold)
    report = measure(det, args, args.fold if args.fold is not None else held_out_fold(bundle.manifest))
    publish(table(report), report, args.json_out)
    return 0


def publish(text: str, report: Any, json_out: Path | None) -> None:
    """Print a benchmark's table; write its figures as JSON when asked (the folder made as needed)."""
    print(text)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        _LOGGER.info("wrote %s", json_out)


if __name__ == "__main__":
    sys.exit(main())
