"""An hour in a home: labelled sounds in a long home-like bed, ours beside YAMNet as Frigate runs it.

    .venv/bin/python -m bench.home_hour [--model BUNDLE] [--config FILE] [--fold N] [--split report]
        [--minutes 60] [--sounds 90] [--labels home|all|LABEL ...] [--snr-db 0 20] [--floor-dbfs -45]
        [--seed 0] [--threshold 0.8 0.5 [...]] [--wav-out FILE] [--json-out FILE]

The stream is bench/home_stream.py's: a bed from one split of background.csv (``report``: held out from training and
thresholds), and clips of the bundle's held-out ESC-50 fold at 0-20 dB SNR, never below -45 dBFS of active
level.  Ours and YAMNet run as in bench/events.py on the same samples, scored by
bench/event_scoring.py: a sound is heard when an event of its label starts 0.5 s before to 1 s after
it; every other event start is false, per hour of the whole stream.  Every figure twice: over the home
labels (event_scoring.HOME_LABELS; only their event starts count) and over all labels.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import soundfile as sf

from bench import event_scoring as scoring
from bench import streams
from bench.event_scoring import HOME_LABELS, Detection
from bench.home_stream import (
    CONTEXT_S,
    FLOOR_DBFS,
    ROOM_DBFS,
    SNR_DB,
    SPLITS,
    Home,
    bed_material,
    build_home,
    draw_sounds,
)
from bench.streams import Floats
from edge.daemon.config import load_config
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from training.model import yamnet

_LOGGER = logging.getLogger("bench.home_hour")


def score(home: Home, found: Sequence[Detection], labels: Sequence[str], named: Sequence[str]) -> dict[str, Any]:
    """Recall (of ``labels`` and of the ``named`` ones), false events (all but right-label starts near a sound)."""
    false = [d for d in found if not any(s.label == d.label and scoring.in_window(s, d.start_s) for s in home.spans)]

    def where(d: Detection) -> str:
        if any(scoring.in_window(s, d.start_s) for s in home.spans):
            return "near a sound"
        kinds = {p.label for p in home.pieces if scoring.in_window(p, d.start_s)}
        return "speech" if "speech" in kinds else min(kinds) if kinds else "pauses"

    def source(d: Detection) -> str:
        """What the start fired on: the placed sound, else the bed's noise or music file, else its speech file."""
        near = [s.name for s in home.spans if scoring.in_window(s, d.start_s)]
        playing = sorted(home.pieces, key=lambda p: p.label == "speech")  # noise and music first
        return (near + [p.name for p in playing if scoring.in_window(p, d.start_s)] + ["pauses"])[0]

    fa = scoring.false_alarms(home.spans, false, len(home.samples) / home.rate)
    sources = Counter((d.label, source(d)) for d in false)
    return {
        "events": len(found),
        "recall": scoring.recall(home.spans, found, labels),
        "recall_yamnet_labels": scoring.recall(home.spans, found, named)["total"],
        "false": {
            "total": fa["total"],
            "per_label": fa["per_label"],
            "where": dict(Counter(map(where, false))),
            "distinct": len(sources),
            "sources": [{"label": x, "source": f, "events": n} for (x, f), n in sources.most_common()],
        },
    }


def score_views(
    home: Home, found: Sequence[Detection], labels: Sequence[str], named: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The score over the home labels (their sounds, and only their event starts) and over all labels."""
    heard = scoring.of_labels(found, HOME_LABELS)
    return {
        "home": score(home, heard, scoring.home(labels), scoring.home(named)),
        "all": score(home, found, labels, named),
    }


class _Recorded:
    """YAMNet called once per chunk on the first pass; later passes (other thresholds) replay its scores."""

    def __init__(self, model: yamnet.Yamnet) -> None:
        self.model, self.k, self.scores = model, 0, list[tuple[Floats, Floats]]()

    def infer(self, patch: Floats) -> tuple[Floats, Floats]:
        if self.k == len(self.scores):
            self.scores.append(self.model.infer(patch))
        self.k += 1
        return self.scores[self.k - 1]


def detect(
    home: Home, classifier: Classifier, args: argparse.Namespace, ours: list[Detection] | None = None
) -> tuple[dict[str, list[Detection]], list[str]]:
    """Event starts of ours (``ours`` when the caller has them) and of YAMNet at each threshold on the stream;
    the labels YAMNet can name."""
    peers = streams.SHARED / "peers"
    tflite, class_map = peers / "yamnet_spectra_in.tflite", peers / "yamnet_class_map.csv"
    peer = _Recorded(yamnet.Yamnet(yamnet.YamnetParams(model_path=tflite, class_map_path=class_map)))
    mapping, m, clock = (
        yamnet.read_mapping(args.mapping, peer.model.class_names),
        classifier.manifest,
        time.monotonic(),
    )
    if ours is None:
        ours = streams.our_detections(classifier, home.samples, load_config(args.config))
        _LOGGER.info("ours: %d event starts in %.0f s", len(ours), time.monotonic() - clock)
    found = {f"ours {m.name} {m.version}": ours}
    for threshold in args.threshold:
        clock, peer.k = time.monotonic(), 0
        starts = streams.yamnet_detections(cast(yamnet.Yamnet, peer), home.samples, mapping, threshold)
        _LOGGER.info("YAMNet at %s: %d event starts in %.0f s", threshold, len(starts), time.monotonic() - clock)
        found[f"YAMNet int8 at {threshold}"] = starts
    return found, list(mapping)


def build_report(
    home: Home, found: dict[str, list[Detection]], named: Sequence[str], args: argparse.Namespace, fold: int
) -> dict[str, Any]:
    """The stream, both views of every detector and the sounds (what --json-out gets, less the model)."""
    labels = sorted({s.label for s in home.spans})
    levels = [round(float(v), 1) for v in np.percentile([s["active_dbfs"] for s in home.sounds], [0, 5, 50, 95, 100])]
    stream = {"minutes": round(len(home.samples) / home.rate / 60, 2), "split": args.split, "seed": args.seed}
    stream |= {"bed": home.bed, "fold": fold, "labels": labels, "snr_db": list(args.snr_db)}
    floor = args.floor_dbfs if np.isfinite(args.floor_dbfs) else None  # JSON has no -inf
    stream |= {"floor_dbfs": floor, "raised": sum(s["raised"] for s in home.sounds)}
    stream |= {"sound_active_dbfs_min_p5_p50_p95_max": levels, "capped": sum(s["capped"] for s in home.sounds)}
    return {
        "config": str(args.config) if args.config else "defaults",
        "stream": stream,
        "home_labels": list(HOME_LABELS),
        "yamnet_unnamed_labels": sorted(set(labels) - set(named)),
        "detectors": {name: score_views(home, starts, labels, named) for name, starts in found.items()},
        "sounds": home.sounds,
    }


def measure(home: Home, classifier: Classifier, args: argparse.Namespace, fold: int) -> dict[str, Any]:
    """Both detectors on the stream, scored; the whole report (what --json-out gets)."""
    found, named = detect(home, classifier, args)
    m = classifier.manifest
    return {"model": {"path": str(args.model), "name": m.name, "version": m.version}} | build_report(
        home, found, named, args, fold
    )


_WIDTHS = (16, 16, 9, 18, 24)


def _recall(s: dict[str, Any]) -> str:
    return "-" if s["recall"] is None else f"{s['recall']:.0%} ({s['recalled']}/{s['clips']})"


def _row(name: str, view: str, r: dict[str, Any]) -> str:
    """One detector over one view: recall, recall of YAMNet's labels, false/h, wrong near a sound, onset."""
    t, y, per_hour = r["recall"]["total"], r["recall_yamnet_labels"], r["false"]["total"]["per_hour"]
    cells = [_recall(t), _recall(y), f"{per_hour:,.1f}", str(r["false"]["where"].get("near a sound", 0))]
    cells.append(f"{t['latency_p50_s']} / {t['latency_p95_s']}")
    return f"{name:24}{view:>6}" + "".join(c.rjust(w) for c, w in zip(cells, _WIDTHS, strict=True))


def table(report: dict[str, Any]) -> str:
    """Two rows per detector (home labels, all labels), then the stream and where the false events start."""
    head = ["detector", "labels", "recall", "YAMNet-named", "false/h", "wrong near sound", "onset->event p50/p95 s"]
    lines = [f"{head[0]:24}{head[1]:>6}" + "".join(h.rjust(w) for h, w in zip(head[2:], _WIDTHS, strict=True))]
    for name, views in report["detectors"].items():
        lines += [_row(name, "home", views["home"]), _row("", "all", views["all"])]
    return "\n".join(lines + _stream_lines(report) + _false_lines(report))


def _floor(stream: dict[str, Any]) -> str:
    floor = stream["floor_dbfs"]
    return "no level floor" if floor is None else f"{stream['raised']} raised to the {floor:g} dBFS floor"


def _stream_lines(report: dict[str, Any]) -> list[str]:
    st, bed = report["stream"], report["stream"]["bed"]
    sp, ot, n = bed["speech"], bed["other"], len(report["sounds"])
    home = scoring.home(st["labels"])
    return [
        f"stream: {st['minutes']} min, background split {st['split']}, seed {st['seed']}: speech {sp['placed_min']} "
        f"min ({sp['placements']} placements of {sp['files']} files, each used up to {sp['max_uses']}x), noise/music "
        f"{ot['placed_min']} min ({ot['placements']} of {ot['files']} files, up to {ot['max_uses']}x), the rest "
        f"pauses; pink room noise at {ROOM_DBFS:.0f} dBFS throughout",
        f"bed material {sp['placed_min'] + ot['placed_min']:.1f} min from {sp['unique_min'] + ot['unique_min']:.1f} "
        f"unique min: reuse x{bed['reuse']}",
        f"sounds: {n} from ESC-50 fold {st['fold']}, {len(st['labels'])} labels, SNR {st['snr_db'][0]:g}-"
        f"{st['snr_db'][1]:g} dB (active level over bed RMS +-{CONTEXT_S:g} s), {_floor(st)}, active dBFS "
        "min/p5/p50/p95/max "
        f"{' / '.join(map(str, st['sound_active_dbfs_min_p5_p50_p95_max']))}, {st['capped']} capped at -1 dBFS peak, "
        f"{bed['clipped_samples']} samples clipped at 0 dBFS",
        f"labels: {', '.join(st['labels'])}; YAMNet cannot name {', '.join(report['yamnet_unnamed_labels']) or '-'} "
        "(misses in the recall column, left out of YAMNet-named)",
        f"home rows: the sounds of the {len(home)} home labels among these (of {len(report['home_labels'])}), and "
        "only home labels' event starts; all rows: every sound, every label's event starts",
    ]


def _false_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, views in report["detectors"].items():
        r, home = views["all"], views["home"]["false"]["total"]["events"]
        top = sorted(r["false"]["per_label"].items(), key=lambda kv: -kv[1]["events"])[:6]
        where = ", ".join(f"{k} {v}" for k, v in sorted(r["false"]["where"].items(), key=lambda kv: -kv[1]))
        most = ", ".join(f"{label} {v['per_hour']:g}/h" for label, v in top) or "-"
        lines.append(
            f"{name}: {r['false']['total']['events']} false starts, {home} of home labels ({where or 'none'}); "
            f"most: {most}"
        )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=streams.ROOT / "models" / "esc50.auricle")
    parser.add_argument("--config", type=Path, default=None, help="daemon config file (default: built-in defaults)")
    parser.add_argument("--fold", type=int, default=None, help="ESC-50 fold (default: the bundle's test fold)")
    parser.add_argument("--esc50", type=Path, default=streams.ESC50_CSV, help="esc50.csv, with audio/ beside it")
    parser.add_argument("--background", type=Path, default=streams.BACKGROUND_CSV, help="CSV with kind and split")
    parser.add_argument("--split", choices=SPLITS, default="report", help="background split of the bed")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sounds", type=int, default=90)
    parser.add_argument(
        "--labels", nargs="+", default=["home"], help="sounds of: home (event_scoring.HOME_LABELS), all, or labels"
    )
    parser.add_argument("--snr-db", type=float, nargs=2, default=list(SNR_DB), help="SNR range of the sounds")
    parser.add_argument(
        "--floor-dbfs",
        type=float,
        default=FLOOR_DBFS,
        help="no sound's active level below this; a quieter draw is raised to it (--floor-dbfs=-inf: none)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.8, 0.5], help="YAMNet score(s) that fire")
    parser.add_argument("--mapping", type=Path, default=streams.MAPPING_CSV, help="ESC-50 label -> AudioSet classes")
    parser.add_argument("--wav-out", type=Path, default=None, help="write the stream (float WAV) to listen to")
    parser.add_argument("--json-out", type=Path, default=streams.ROOT / "runs" / "bench" / "home_hour.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bundle = read_bundle(args.model)
    classifier, rate = Classifier(bundle, threads=1), bundle.manifest.features.sample_rate
    fold = args.fold if args.fold is not None else streams.held_out_fold(bundle.manifest)
    wanted = {"home": HOME_LABELS, "all": classifier.labels}.get(args.labels[0], args.labels)
    speech, other = bed_material(args.background, args.split, rate)
    labels = [label for label in wanted if label in classifier.labels]
    sounds = draw_sounds(args.esc50, fold, labels, args.sounds, rate, np.random.default_rng([args.seed, 3]))
    home = build_home(speech, other, sounds, args.minutes, rate, args.seed, tuple(args.snr_db), args.floor_dbfs)
    raised = sum(s["raised"] for s in home.sounds)
    _LOGGER.info(
        "stream: %.1f min, %d sounds (%d raised to the floor), peak %.2f",
        args.minutes,
        len(sounds),
        raised,
        np.abs(home.samples).max(),
    )
    if args.wav_out:
        sf.write(args.wav_out, home.samples, rate, subtype="FLOAT")
        _LOGGER.info("wrote %s", args.wav_out)
    report = measure(home, classifier, args, fold)
    streams.publish(table(report), report, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
