"""Labelled clips in: a CSV manifest or a folder-per-class tree; audio to mono 16 kHz; splits.

Audio of any format libsndfile reads, any rate and channel count, is mixed to
mono and resampled with a polyphase filter to the front end's rate.
"""

from __future__ import annotations

import csv
import difflib
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge.audio.sources import AUDIO_SUFFIXES
from training.recipe.config import DataConfig, ExtraSource

_LOGGER = logging.getLogger(__name__)


class DataError(ValueError):
    """The dataset cannot be used; the message names the file or class and why."""


@dataclass(frozen=True, kw_only=True)
class Clip:
    """One labelled audio file."""

    path: Path
    label: str
    fold: int | None = None
    group: str | None = None
    """Source recording: clips of one group never straddle a split."""
    codec: Literal["", "opus"] = ""
    """Read through this lossy codec first (a training copy: coded audio must not mean background)."""


def load_clips(cfg: DataConfig, manifest: Path | None, audio_root: Path) -> list[Clip]:
    """Clips from a manifest (when given) or a folder tree, checked to exist."""
    clips = read_manifest(cfg, manifest, audio_root) if manifest else read_tree(audio_root)
    missing = [c.path for c in clips if not c.path.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{missing[0]}: audio file listed in the dataset does not exist{more}")
    return clips


def read_manifest(cfg: DataConfig, manifest: Path, audio_root: Path) -> list[Clip]:
    """ESC-50 style CSV: file name, label and optionally fold columns (names configurable)."""
    try:
        with manifest.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{manifest}: cannot read manifest: {exc}") from None
    columns = set(rows[0]) if rows else set()
    for column in (cfg.filename_column, cfg.label_column):
        if column not in columns:
            raise DataError(f"{manifest}: no column {column!r} (columns: {', '.join(sorted(columns)) or 'none'})")
    use_folds = bool(cfg.fold_column) and cfg.fold_column in columns
    if cfg.group_column and cfg.group_column not in columns:
        raise DataError(f"{manifest}: no column {cfg.group_column!r} (data.group_column)")
    return [_row_clip(row, i + 2, cfg, manifest, audio_root, use_folds) for i, row in enumerate(rows)]


def _row_clip(row: dict[str, str], line: int, cfg: DataConfig, manifest: Path, root: Path, folds: bool) -> Clip:
    name, label = (row.get(cfg.filename_column) or "").strip(), (row.get(cfg.label_column) or "").strip()
    if not name or not label:
        raise DataError(f"{manifest}: line {line}: empty {cfg.filename_column!r} or {cfg.label_column!r}")
    fold = None
    if folds:
        try:
            fold = int(row[cfg.fold_column])
        except (TypeError, ValueError):
            raise DataError(f"{manifest}: line {line}: fold {row.get(cfg.fold_column)!r} is not an integer") from None
    group = row[cfg.group_column].strip() if cfg.group_column else None
    return Clip(path=root / name, label=label, fold=fold, group=group)


_PREFIXED = re.compile(r"^(?P<label>[A-Za-z][A-Za-z0-9_-]*?)[_-]\d+$")
"""A flat folder's file stem: ``<label>_<number>`` (``gunshot_012``, ``glass_breaking-7``)."""


def read_tree(root: Path) -> list[Clip]:
    """The two shapes a dataset comes in without a CSV: ``root/<label>/*.wav|flac|ogg...`` (one folder per
    class), or one flat folder of files named ``<label>_<number>.<ext>``."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    flat = [f for f in sorted(root.iterdir()) if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file()]
    clips = [
        Clip(path=f, label=d.name)
        for d in sorted(p for p in root.iterdir() if p.is_dir())
        for f in sorted(d.rglob("*"))
        if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file()
    ]
    if flat and clips:
        raise DataError(f"{root}: audio both in class folders and at the top ({flat[0].name}): use one shape")
    if flat:
        return [Clip(path=f, label=_prefix_label(f)) for f in flat]
    if not clips:
        raise DataError(
            f"{root}: no audio files in class folders or named <label>_<number> ({', '.join(AUDIO_SUFFIXES)})"
        )
    return clips


def _prefix_label(path: Path) -> str:
    found = _PREFIXED.match(path.stem)
    if found is None:
        raise DataError(f"{path}: a flat folder's files must be named <label>_<number>{path.suffix}")
    return found["label"]


def read_extra(source: ExtraSource, manifest: Path, labels: Sequence[str]) -> list[Clip]:
    """``data.extra``: one clip per listed recording, each label one of the dataset's."""
    cfg = DataConfig(filename_column=source.filename_column, label_column=source.label_column, fold_column="")
    clips = read_manifest(cfg, manifest, manifest.parent)
    for clip in clips:
        if clip.label not in labels:
            close = difflib.get_close_matches(clip.label, labels, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(f"{manifest}: {clip.path.name}: label {clip.label!r} is not one of the dataset's{hint}")
        if not clip.path.is_file():
            raise DataError(f"{clip.path}: audio file listed in {manifest.name} does not exist")
    return clips


def check_counts(clips: list[Clip], min_clips: int) -> list[str]:
    """Sorted labels; :class:`DataError` when a class has fewer than ``min_clips`` clips."""
    counts = Counter(c.label for c in clips)
    small = sorted((n, label) for label, n in counts.items() if n < min_clips)
    if small:
        n, label = small[0]
        raise DataError(f"class {label!r} has {n} usable clip(s), fewer than data.min_clips_per_class={min_clips}")
    return sorted(counts)


def check_other_labels(others: tuple[str, ...], labels: list[str]) -> frozenset[str]:
    """``data.other_labels``: each one of the dataset's labels (a typo is an error naming the nearest), and at least
    one label left to listen for."""
    for name in others:
        if name not in labels:
            close = difflib.get_close_matches(name, labels, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (labels: {', '.join(labels)})"
            raise DataError(f"data.other_labels: {name!r} is not one of the dataset's labels{hint}")
    if set(labels) <= set(others):
        raise DataError("data.other_labels: every label of the dataset is an 'other' label: none is left to listen for")
    return frozenset(others)


OPUS_LEVEL = 0.97
"""libsndfile's Opus compression level for codec copies: about 13 kbps on ESC-50, as ../shared's coded background."""


def through_codec(samples: npt.NDArray[np.float32], sample_rate: int, codec: str) -> npt.NDArray[np.float32]:
    """``samples`` encoded and decoded again (``codec`` 'opus'; '' returns them as they are)."""
    if not codec:
        return samples
    import io

    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, samples, sample_rate, format="OGG", subtype="OPUS", compression_level=OPUS_LEVEL)
    buf.seek(0)
    decoded, _ = soundfile.read(buf, dtype="float32")
    out = np.zeros_like(samples)
    out[: min(len(samples), len(decoded))] = decoded[: len(samples)]
    return out


def read_audio(path: Path, sample_rate: int) -> npt.NDArray[np.float32]:
    """Mono float32 samples at ``sample_rate`` (channel mean, polyphase resampling)."""
    import soundfile
    from scipy.signal import resample_poly

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: unreadable audio: {exc}") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: no samples")
    mono = data.mean(axis=1)
    if rate != sample_rate:
        g = math.gcd(int(rate), sample_rate)
        mono = resample_poly(mono, sample_rate // g, int(rate) // g)
    if not np.all(np.isfinite(mono)):
        raise DataError(f"{path}: non-finite samples")
    return np.asarray(mono, dtype=np.float32)


@dataclass(frozen=True, kw_only=True)
class Split:
    """Indices into a clip list."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]


def stratified(
    indices: list[int], labels: list[str], fraction: float, seed: int, groups: list[str] | None = None
) -> tuple[list[int], list[int]]:
    """Split ``indices`` into (rest, picked): ``fraction`` of each label, seeded, whole groups."""
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for label in sorted({labels[i] for i in indices}):
        members = [i for i in indices if labels[i] == label]
        n = round(len(members) * fraction)
        if fraction > 0 and n == 0 and len(members) >= 2:
            n = 1  # every class should be represented in a held-out set
        picked.extend(_take(members, n, groups, rng))
    chosen = set(picked)
    return sorted(i for i in indices if i not in chosen), sorted(picked)


def _take(members: list[int], n: int, groups: list[str] | None, rng: np.random.Generator) -> list[int]:
    """About ``n`` of ``members``, taking whole groups in a shuffled order."""
    keys = [groups[i] if groups else str(i) for i in members]
    order = sorted(set(keys))
    rng.shuffle(order)
    taken: list[int] = []
    for key in order:
        if len(taken) >= n:
            break
        taken.extend(i for i, k in zip(members, keys, strict=True) if k == key)
    return taken


def make_split(clips: list[Clip], cfg: DataConfig, test_folds: tuple[int, ...] | None = None) -> Split:
    """By fold when the clips have folds, else stratified; validation is stratified from training."""
    labels = [c.label for c in clips]
    groups = [c.group or f"#{i}" for i, c in enumerate(clips)] if any(c.group for c in clips) else None
    everything = list(range(len(clips)))
    has_folds = all(c.fold is not None for c in clips)
    held = cfg.test_folds if test_folds is None else test_folds
    if has_folds and held:
        folds = {c.fold for c in clips if c.fold is not None}
        unknown = sorted(set(held) - folds)
        if unknown:
            raise DataError(f"data.test_folds: fold(s) {unknown} not in the dataset (folds: {sorted(folds)})")
        train_folds = set(cfg.train_folds) or (folds - set(held))
        test = [i for i in everything if clips[i].fold in held]
        pool = [i for i in everything if clips[i].fold in train_folds]
    else:
        pool, test = stratified(everything, labels, cfg.test_fraction, cfg.seed, groups)
    train, val = stratified(pool, labels, cfg.val_fraction, cfg.seed + 1, groups)
    return Split(train=tuple(train), val=tuple(val), test=tuple(test))


def folds_of(clips: list[Clip]) -> list[int]:
    """The distinct folds, sorted; empty when the dataset has none."""
    if not clips or any(c.fold is None for c in clips):
        return []
    return sorted({c.fold for c in clips if c.fold is not None})
