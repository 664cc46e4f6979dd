"""The audio bench/teach.py measures on, by split, and the device's fit and event logic replayed over it.

- **Examples** (what a user teaches from): ESC-50 clips of the plan's example folds (1-3; 1-2 when tuning).
- **Withheld sounds**: the clips of another fold (4; 3 when tuning) and, on the report split, labelled_other's
  recordings of the same labels (a 5 s excerpt of each), mixed into a home bed (bench/home_stream.py's) built
  from ``background_more``'s part of the split: recall, and false events per hour of the whole stream.
- **Background**: both background corpora's part of the split back to back (0.5 s of -70 dBFS noise
  between files): false events per hour of background audio.
- **Negatives** of every fit, training-side only: the bundle's background set (1,500 windows of the two
  corpora's ``train`` files, drawn as ``auricle-train embed`` drew it) and a reservoir of ordinary hops of
  the same ``train`` files, as a device keeps one of its room (edge/daemon/learning.py).

``report`` is held out of every choice; ``calibrate`` (ESC-50 folds 1-3 and the calibrate groups outside
``report``) is where the heads' hyper-parameters were chosen (bench/README.md).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench import home_stream, streams
from bench import teach_record as tr
from bench.event_scoring import Detection, Span
from edge.detect.events import EventDetector
from edge.detect.teaching import BUDGET_PER_HOUR
from edge.learn.heads import L2, SPREAD_FLOOR, Head, ThresholdRule, fit_labels
from edge.learn.personal import Personal
from training.model.embedding import background_files, background_kinds

F32 = npt.NDArray[np.float32]
MORE_CSV = streams.SHARED / "data" / "background_more" / "background_more.csv"
OTHER_CSV = streams.SHARED / "data" / "labelled_other" / "labelled_other.csv"
EXCERPT_S, EXCERPT_AT_S = 5.0, 10.0
GAP_S = 0.5
TRAIN_BED_FILES = 600
"""Speech files (of the train parts' 2,674) the reservoir's home is made of, with every music and noise file."""


@dataclass(frozen=True)
class Plan:
    """Which material one run measures on."""

    split: str
    """Background split of the beds and the background stream: report (held out) or calibrate."""
    example_folds: tuple[int, ...]
    sound_fold: int
    labels: tuple[str, ...]
    ks: tuple[int, ...]
    draws: int
    """Draws of the K examples per label (nested: the K=1 example is among the K=3 ones)."""
    home_minutes: float
    per_label: int | None = None
    """Withheld fold clips per label in the few-shot home stream (None: all)."""
    files: int | None = None
    """Files per corpus of the background stream and the bed (None: all)."""
    other: bool = True
    """Also labelled_other's recordings of the labels as withheld sounds."""
    bundle_windows: int = 3000
    reservoir_rows: int = 2000
    reservoir_minutes: float = 30.0
    """The reservoir's home is built this many minutes at a time."""
    train_files: int | None = None
    """Train files the bundle set and reservoir are drawn from (None: all)."""
    seed: int = 25
    feedback_minutes: float = 10.0
    """Minutes of each half of a feedback stream."""
    feedback_clips: int | None = None
    """Withheld clips of the confused sound and of its label in a feedback stream (None: the fold's all)."""
    repeats: int = 4
    """Placements of each withheld clip of the confused sound per half (at other places and levels)."""


def esc50_rows() -> list[dict[str, str]]:
    with streams.ESC50_CSV.open(newline="") as fh:
        return list(csv.DictReader(fh))


def example_items(plan: Plan, labels: Sequence[str]) -> list[tuple[str, str, Path]]:
    """(name, label, path) of every clip of ``labels`` in the plan's example folds."""
    audio = streams.ESC50_CSV.parent / "audio"
    rows = [r for r in esc50_rows() if r["category"] in labels and int(r["fold"]) in plan.example_folds]
    return [(r["filename"], r["category"], audio / r["filename"]) for r in rows]


def withheld(plan: Plan, labels: Sequence[str], rate: int, per_label: int | None = None) -> list[streams.Item]:
    """The withheld instances of ``labels``: the fold's clips (trimmed of digital silence; the first
    ``per_label`` of each label) and labelled_other's."""
    audio, rows = streams.ESC50_CSV.parent / "audio", []
    for label in labels:
        rows += [r for r in esc50_rows() if r["category"] == label and int(r["fold"]) == plan.sound_fold][:per_label]
    items = [
        (r["filename"], r["category"], home_stream.trim(streams.read_mono(audio / r["filename"], rate))) for r in rows
    ]
    if plan.other and OTHER_CSV.is_file():
        with OTHER_CSV.open(newline="") as fh:
            for row in (r for r in csv.DictReader(fh) if r["label"] in labels):
                x = streams.read_mono(OTHER_CSV.parent / row["filename"], rate)
                start = min(round(EXCERPT_AT_S * rate), max(0, len(x) - round(EXCERPT_S * rate)))
                items.append((row["filename"], row["label"], x[start : start + round(EXCERPT_S * rate)]))
    return [item for item in items if len(item[2])]


def bed(plan: Plan, rate: int) -> tuple[list[streams.Item], list[streams.Item]]:
    """(speech, noise and music) of background_more's part of the split: a home bed's material."""
    with MORE_CSV.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if streams.in_split(r, plan.split)]
    speech = [r for r in rows if r["kind"] == "speech"][: plan.files]
    other = [r for r in rows if r["kind"] != "speech"][: None if plan.files is None else max(1, plan.files // 10)]
    read = [
        (r["filename"], r["kind"], streams.read_mono(MORE_CSV.parent / r["filename"], rate)) for r in speech + other
    ]
    return [i for i in read if i[1] == "speech"], [i for i in read if i[1] != "speech"]


def home(plan: Plan, sounds: Sequence[streams.Item], rate: int, minutes: float, seed: int) -> tuple[F32, list[Span]]:
    """``sounds`` in a home bed of the split (bench/home_stream.py: speech runs, pauses, music, room noise)."""
    speech, other = bed(plan, rate)
    order = np.random.default_rng([seed, 4]).permutation(len(sounds))
    made = home_stream.build_home(speech, other, [sounds[i] for i in order], minutes, rate, seed)
    return made.samples, made.spans


def background(plan: Plan, rate: int) -> tuple[F32, list[Span]]:
    """Both corpora's part of the split back to back, GAP_S of -70 dBFS noise between files."""
    items = [
        *streams.background_items(streams.BACKGROUND_CSV, plan.split, rate, plan.files),
        *streams.background_items(MORE_CSV, plan.split, rate, plan.files),
    ]
    return streams.build_stream(items, GAP_S, rate, plan.seed)


def audio_hours(hops: tr.Hops) -> float:
    """Hours of the spans' audio (the background stream's files, gaps left out)."""
    return sum(s.end_s - s.start_s for s in hops.spans) / 3600


def negatives(base: tr.Base, plan: Plan) -> tuple[F32, F32]:
    """(bundle set, reservoir) under ``base``, both of the two background corpora's ``train`` parts: the set as
    ``auricle-train embed`` drew it, the reservoir as a device fills it listening to a home made of them."""
    paths = background_files([streams.BACKGROUND_CSV, MORE_CSV], "train")
    few = paths if plan.train_files is None else paths[:: max(1, len(paths) // plan.train_files)]
    rate = base.manifest.features.sample_rate
    items = []
    for path in (streams.BACKGROUND_CSV, MORE_CSV):
        with path.open(newline="") as fh:
            items += [(path.parent / r["filename"], r["kind"]) for r in csv.DictReader(fh) if r["split"] == "train"]
    step = max(1, len(items) // (plan.train_files or TRAIN_BED_FILES))
    others = [i for i in items if i[1] != "speech"][: None if plan.train_files is None else 2]
    chosen = [(p, kind) for p, kind in items[::step] if kind == "speech"] + others
    key = f"train-home|{len(items)}|{step}|{plan.train_files}"

    def material() -> tuple[list[streams.Item], list[streams.Item]]:
        read = [(str(p), kind, streams.read_mono(p, rate)) for p, kind in chosen]
        read = [r for r in read if np.abs(r[2]).max(initial=0) > home_stream.SILENCE]
        return [r for r in read if r[1] == "speech"], [r for r in read if r[1] != "speech"]

    found = tr.reservoir(base, material, plan.reservoir_rows, key, chunk_min=plan.reservoir_minutes)
    kinds = background_kinds([streams.BACKGROUND_CSV, MORE_CSV], "train")
    return tr.bundle_set(base, few, plan.bundle_windows, kinds=kinds), found


# --- the device's fit and event logic ---------------------------------------------------------------


def fit_like_device(
    yes: Mapping[str, F32],
    no: Mapping[str, F32],
    common: F32,
    model_labels: Collection[str] = (),
    *,
    l2: float = L2,
    spread_floor: float = SPREAD_FLOOR,
    rule: ThresholdRule | None = None,
) -> list[Head]:
    """The heads ``edge.detect.teaching.fit_all`` fits from these example windows ("yes" and "not" per label)
    against ``common`` (bundle set, then reservoir): each label's negatives are ``common`` and the other
    labels' "yes" windows; its "not" windows are hard negatives, and a model label's "not" windows also fit a
    correction."""
    kw = {"budget_per_hour": BUDGET_PER_HOUR, "l2": l2, "spread_floor": spread_floor, "rule": rule}
    return fit_labels(yes, no, common, model_labels, **kw)[0]


def fit_cached(
    base: tr.Base,
    yes: Mapping[str, F32],
    no: Mapping[str, F32],
    common: F32,
    model_labels: Collection[str] = (),
    *,
    l2: float = L2,
    spread_floor: float = SPREAD_FLOOR,
) -> list[Head]:
    """:func:`fit_like_device` at the device's threshold rule, kept in the cache by what it was fitted on."""
    digest = hashlib.sha256(f"{l2}|{spread_floor}|{ThresholdRule()}|{sorted(model_labels)}".encode())
    for part in (yes, no):
        for label in sorted(part):
            digest.update(label.encode() + np.ascontiguousarray(part[label]).tobytes())
    digest.update(b"|" + np.ascontiguousarray(common).tobytes())
    path = tr.CACHE / tr.tag_of(base) / "heads" / f"{digest.hexdigest()[:16]}.json"
    if path.is_file():
        return [Head(**h | {"weights": tuple(h["weights"])}) for h in json.loads(path.read_text())]
    heads = fit_like_device(yes, no, common, model_labels, l2=l2, spread_floor=spread_floor)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(h) for h in heads]))
    return heads


def replay(hops: tr.Hops, personal: Personal | None, detector: EventDetector) -> list[tuple[Detection, float]]:
    """(event start, its end offset) of the device's heads and event detector over a recording: each hop's
    scores through ``Personal.apply`` (the model's scores, then the heads; None: no heads), then the detector."""
    starts: dict[str, Detection] = {}
    found = []
    for t, scores, row in zip(hops.t, hops.scores, hops.embeddings(), strict=True):
        for e in detector.update(personal.apply(scores, row) if personal else scores, float(t)):
            if e.kind == "start":
                starts[e.id] = Detection(e.label, e.start_offset_s, e.offset_s)
            else:
                found.append((starts.pop(e.id), float(e.end_offset_s or e.offset_s)))
    for e in detector.flush(float(hops.t[-1]) if len(hops.t) else 0.0):
        if e.kind == "end" and e.id in starts:
            found.append((starts.pop(e.id), float(e.end_offset_s or e.offset_s)))
    return sorted(found, key=lambda f: f[0].start_s)
