"""An hour in a home: labelled sounds in a long home-like bed, ours beside YAMNet as Frigate runs it.

    .venv/bin/python -m bench.home_hour [--model BUNDLE] [--config FILE] [--fold N] [--split report]
        [--minutes 60] [--sounds 90] [--labels home|all|LABEL ...] [--snr-db 0 20] [--floor-dbfs -45]
        [--seed 0] [--threshold 0.8 0.5 [...]] [--wav-out FILE] [--json-out FILE]

The bed, from one split of background.csv (``report``: held out from training and thresholds): speech
in runs of 3-8 files 0.2-1.0 s apart, each at an active level of -30 to -20 dBFS, 2-20 s pauses, a
noise or music file at -40 to -28 dBFS after every 3-5 runs, seeded pink room noise at -62 dBFS.
Material that runs out is used again in a new order with new gains (the notes say how much).
The sounds: clips of the bundle's held-out ESC-50 fold spread evenly over the labels, trimmed of
their digital silence, at random times at least 3 s apart, each at an SNR drawn from 0-20 dB: its
active level (RMS of its 20 ms frames within 20 dB of its loudest) over the RMS of the bed alone from
5 s before to 5 s after it.  A sound whose drawn SNR would leave its active level below ``--floor-dbfs``
(-45 dBFS, a quiet sound in a real room) is raised to the floor: a model is not judged on sounds a few
dB above the room noise in a pause.  No file or sound peaks above -1 dBFS; the sum is clipped at 0 dBFS
like a microphone.  Ours and YAMNet run as in bench/events.py on the same samples, scored by
bench/event_scoring.py: a sound is heard when an event of its label starts 0.5 s before to 1 s after
it; every other event start is false, per hour of the whole stream.  Every figure twice: over the home
labels (event_scoring.HOME_LABELS; only their event starts count) and over all labels.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from bench import event_scoring as scoring
from bench import streams
from bench.event_scoring import HOME_LABELS, Detection, Span
from bench.streams import Floats, Item
from edge.daemon.config import load_config
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from training.calibrate import noisy
from training.model import yamnet

_LOGGER = logging.getLogger("bench.home_hour")
ROOM_DBFS, SPEECH_DBFS, OTHER_DBFS, SNR_DB, FLOOR_DBFS = -62.0, (-30.0, -20.0), (-40.0, -28.0), (0.0, 20.0), -45.0
RUN_FILES, WORD_GAP_S, PAUSE_S, OTHER_EVERY = (3, 8), (0.2, 1.0), (2.0, 20.0), (3, 5)
CONTEXT_S, MIN_GAP_S, PEAK, SILENCE = 5.0, 3.0, 10 ** (-1 / 20), 1e-4
SPLITS = ("report", "calibrate", "calibrate+report")


def dbfs(x: Floats) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def active_dbfs(x: Floats, rate: int) -> float:
    """RMS dBFS of the 20 ms frames within 20 dB of the loudest: how loud it is while it sounds (the level
    training's noisy calibration copies are mixed at, training/calibrate/noisy.py)."""
    return float(20 * np.log10(noisy.active_rms(x, rate)))


def trim(x: Floats) -> Floats:
    """From the first to the last sample above -80 dBFS: ESC-50 pads its clips with digital silence."""
    loud = np.flatnonzero(np.abs(x) > SILENCE)
    return x[loud[0] : loud[-1] + 1] if len(loud) else x[:0]


def room_noise(n: int, rng: np.random.Generator) -> Floats:
    """Seeded pink noise (a -3 dB/octave filter on white noise) at ROOM_DBFS."""
    b, a = [0.049922035, -0.095993537, 0.050612699, -0.004408786], [1, -2.494956002, 2.017265875, -0.5221894]
    x = np.asarray(lfilter(b, a, rng.standard_normal(n + 4096))[4096:], dtype=np.float64)
    return np.asarray(x * (10 ** (ROOM_DBFS / 20) / np.sqrt(np.mean(np.square(x)))), dtype=np.float32)


def bed_material(path: Path, split: str, rate: int) -> tuple[list[Item], list[Item]]:
    """(name, kind, samples) of the speech files and of the noise/music files of a background CSV's split."""
    splits = ("calibrate", "report") if split == "calibrate+report" else (split,)
    with path.open(newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if any(streams.in_split(row, s) for s in splits)]
    items = [(row["filename"], row["kind"], streams.read_mono(path.parent / row["filename"], rate)) for row in rows]
    items = [item for item in items if np.abs(item[2]).max(initial=0) > SILENCE]
    if not any(kind == "speech" for _, kind, _ in items):
        raise SystemExit(f"no speech in {path} (split {split!r})")
    return [i for i in items if i[1] == "speech"], [i for i in items if i[1] != "speech"]


def draw_sounds(
    path: Path, fold: int, labels: Sequence[str], n: int, rate: int, rng: np.random.Generator
) -> list[Item]:
    """``n`` clips of one ESC-50 fold spread evenly over ``labels``, in random order, trimmed."""
    with path.open(newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if int(row["fold"]) == fold and row["category"] in labels]
    names = sorted({row["category"] for row in rows})
    if not names:
        raise SystemExit(f"no clips of fold {fold} with those labels in {path}")
    extra, chosen = {str(label) for label in rng.choice(names, n % len(names), replace=False)}, []
    for label in names:
        clips, want = [row for row in rows if row["category"] == label], n // len(names) + (label in extra)
        if want > len(clips):
            _LOGGER.warning("%s: %d clips in fold %d, %d wanted", label, len(clips), fold, want)
        chosen += [clips[i] for i in rng.permutation(len(clips))[:want]]
    audio = path.parent / "audio"
    rows = [chosen[i] for i in rng.permutation(len(chosen))]
    items = [(r["filename"], r["category"], trim(streams.read_mono(audio / r["filename"], rate))) for r in rows]
    return [item for item in items if len(item[2])]


def _cycle(items: list[Item], rng: np.random.Generator) -> Iterator[Item]:
    """The items in a random order; when all are used, again in a new order."""
    while True:
        yield from (items[i] for i in rng.permutation(len(items)))


def build_bed(
    speech: list[Item], other: list[Item], n: int, rate: int, rng: np.random.Generator
) -> tuple[Floats, list[Span], dict[str, Any]]:
    """The bed alone, its pieces (name, kind as label, start, end) and what it is made of."""
    bed, pieces, pools = room_noise(n, rng), list[Span](), {"speech": _cycle(speech, rng), "other": _cycle(other, rng)}

    def put(kind: str, level: tuple[float, float], pos: int) -> int:
        if pos >= n:
            return pos
        name, file_kind, x = next(pools[kind])
        gain = min(10 ** ((rng.uniform(*level) - active_dbfs(x, rate)) / 20), PEAK / float(np.abs(x).max()))
        x = x[: n - pos]
        bed[pos : pos + len(x)] += gain * x
        pieces.append(Span(name, file_kind, pos / rate, (pos + len(x)) / rate))
        return pos + len(x)

    def pause(pos: int, span: tuple[float, float]) -> int:
        return pos + round(rng.uniform(*span) * rate)

    pos, runs, other_after = pause(0, PAUSE_S), 0, rng.integers(OTHER_EVERY[0], OTHER_EVERY[1] + 1)
    while pos < n:
        for i in range(rng.integers(RUN_FILES[0], RUN_FILES[1] + 1)):
            pos = put("speech", SPEECH_DBFS, pause(pos, WORD_GAP_S) if i else pos)
        pos, runs = pause(pos, PAUSE_S), runs + 1
        if runs == other_after and other:
            pos = pause(put("other", OTHER_DBFS, pos), PAUSE_S)
            runs, other_after = 0, rng.integers(OTHER_EVERY[0], OTHER_EVERY[1] + 1)
    longest: dict[str, float] = {}  # the most of each file placed at once: the unique material
    for p in pieces:
        longest[p.name] = max(longest.get(p.name, 0.0), p.end_s - p.start_s)
    info, total = dict[str, Any](), np.zeros(2)
    for kind, items in (("speech", speech), ("other", other)):
        uses = Counter(p.name for p in pieces if (p.label == "speech") == (kind == "speech"))
        placed = sum(p.end_s - p.start_s for p in pieces if p.name in uses)
        unique = sum(longest[name] for name in uses)
        info[kind] = {"files": len(items), "placements": uses.total(), "max_uses": max(uses.values(), default=0)}
        info[kind] |= {"placed_min": round(placed / 60, 2), "unique_min": round(unique / 60, 2)}
        total += [placed, unique]
    return bed, pieces, info | {"reuse": round(total[0] / total[1], 2) if total[1] else None}


def place_sounds(
    bed: Floats,
    sounds: Sequence[Item],
    rate: int,
    rng: np.random.Generator,
    snr_db: tuple[float, float] = SNR_DB,
    floor_dbfs: float = FLOOR_DBFS,
) -> tuple[Floats, list[Span], list[dict[str, Any]]]:
    """The bed with the sounds at random times at least MIN_GAP_S apart, each at an SNR drawn from ``snr_db``
    and never below ``floor_dbfs`` of active level (-inf: no floor)."""
    gap, lengths = round(MIN_GAP_S * rate), [len(x) for _, _, x in sounds]
    slack = len(bed) - sum(lengths) - (len(sounds) + 1) * gap
    if slack < 0:
        raise SystemExit(f"{len(sounds)} sounds do not fit {len(bed) / rate / 60:.1f} min {MIN_GAP_S} s apart")
    cuts = np.sort(rng.integers(0, slack + 1, len(sounds)))
    starts = gap * np.arange(1, len(sounds) + 1) + np.cumsum([0, *lengths[:-1]]) + cuts
    mix, spans, placed, context = bed.copy(), [], [], round(CONTEXT_S * rate)
    for (name, label, x), start, drawn in zip(sounds, starts, rng.uniform(*snr_db, len(sounds)), strict=True):
        end, level = int(start) + len(x), active_dbfs(x, rate)
        bed_db = dbfs(bed[max(0, start - context) : end + context])
        target = max(bed_db + drawn, floor_dbfs)
        gain_db = min(target - level, 20 * float(np.log10(PEAK / np.abs(x).max())))
        mix[start:end] += 10 ** (gain_db / 20) * x
        spans.append(Span(name, label, start / rate, end / rate))
        at = {"name": name, "label": label, "start_s": round(start / rate, 3), "end_s": round(end / rate, 3)}
        placed.append(at | _levels(bed_db, level + gain_db, drawn, target))
    return mix, spans, placed


def _levels(bed_db: float, active_db: float, drawn_snr_db: float, target_db: float) -> dict[str, Any]:
    """How loud a placed sound came out: its SNR, the one drawn, raised to the floor or capped at the peak."""
    return {
        "snr_db": round(active_db - bed_db, 2),
        "drawn_snr_db": round(drawn_snr_db, 2),
        "raised": bool(target_db > bed_db + drawn_snr_db),
        "capped": bool(active_db < target_db - 0.01),
        "bed_dbfs": round(bed_db, 2),
        "active_dbfs": round(active_db, 2),
    }


@dataclass(frozen=True)
class Home:
    samples: Floats
    rate: int
    spans: list[Span]  # the sounds
    pieces: list[Span]  # the bed's files, kind as label
    sounds: list[dict[str, Any]]
    bed: dict[str, Any]


def build_home(
    speech: list[Item],
    other: list[Item],
    sounds: Sequence[Item],
    minutes: float,
    rate: int,
    seed: int,
    snr_db: tuple[float, float] = SNR_DB,
    floor_dbfs: float = FLOOR_DBFS,
) -> Home:
    """The whole stream; the bed depends on the seed and the material only, never on the sounds."""
    bed, pieces, info = build_bed(speech, other, round(minutes * 60 * rate), rate, np.random.default_rng([seed, 1]))
    mix, spans, placed = place_sounds(bed, sounds, rate, np.random.default_rng([seed, 2]), snr_db, floor_dbfs)
    info["clipped_samples"] = int(np.count_nonzero(np.abs(mix) > 1))  # where a sound meets a loud word: clip it
    return Home(np.clip(mix, -1, 1), rate, spans, pieces, placed, info)


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
    home: Home, classifier: Classifier, args: argparse.Namespace
) -> tuple[dict[str, list[Detection]], list[str]]:
    """Event starts of ours and of YAMNet at each threshold on the stream; the labels YAMNet can name."""
    peers = streams.SHARED / "peers"
    tflite, class_map = peers / "yamnet_spectra_in.tflite", peers / "yamnet_class_map.csv"
    peer = _Recorded(yamnet.Yamnet(yamnet.YamnetParams(model_path=tflite, class_map_path=class_map)))
    mapping, m, clock = (
        yamnet.read_mapping(args.mapping, peer.model.class_names),
        classifier.manifest,
        time.monotonic(),
    )
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
