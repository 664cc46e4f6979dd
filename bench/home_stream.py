"""A home-like stream: labelled sounds placed in a long bed of speech, noise and music from a background CSV's
split, the material of bench/home_hour.py's hour and of the benchmarks built on it (bench/calibrate_hours.py,
bench/open_set.py, bench/teach_record.py).

The bed, from one split of a background CSV (``report``: held out from training and thresholds): speech
in runs of 3-8 files 0.2-1.0 s apart, each at an active level of -30 to -20 dBFS, 2-20 s pauses, a
noise or music file at -40 to -28 dBFS after every 3-5 runs, seeded pink room noise at -62 dBFS.
Material that runs out is used again in a new order with new gains (:func:`build_bed` says how much).
The sounds: clips of one ESC-50 fold spread evenly over the labels, trimmed of their digital silence, at
random times at least 3 s apart, each at an SNR drawn from 0-20 dB: its active level (RMS of its 20 ms
frames within 20 dB of its loudest) over the RMS of the bed alone from 5 s before to 5 s after it.  A sound
whose drawn SNR would leave its active level below ``floor_dbfs`` (-45 dBFS, a quiet sound in a real room)
is raised to the floor: a model is not judged on sounds a few dB above the room noise in a pause.  No file
or sound peaks above -1 dBFS; the sum is clipped at 0 dBFS like a microphone.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import lfilter

from bench import streams
from bench.event_scoring import Span
from bench.streams import Floats, Item
from training.calibrate import noisy

_LOGGER = logging.getLogger("bench.home_stream")
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
