"""Background audio: recordings in which none of the labels occurs.

Each source (``data.background``) is a folder of audio or a CSV manifest with
a file name and, optionally, a split column.  Files go to one of two parts:

- ``train``: random negative windows in every batch and material mixed under
  labelled windows (training/data/augment.py);
- ``calibrate``: never trained on; thresholds are chosen on it;
- ``report``: a share of the calibrate groups (``report_fraction``, by a stable
  hash of the group: speaker-disjoint for the starter corpus), never trained on
  and never used to choose thresholds: the false alarms per hour that the report
  and the model card give are measured there;
- ``evidence``: a share of the train groups (``audioset.evidence.unseen_fraction``, by a salted stable
  hash of the group), kept from the network so that the AudioSet evidence is fitted on background the
  network never learned (training/rule.py): empty unless the recipe asks for it.

Frames come from the same feature cache as labelled clips (training/data/cache.py).
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from edge.audio.sources import AUDIO_SUFFIXES
from training.data import cache
from training.data.cache import Frames
from training.data.data import Clip, DataError
from training.recipe.config import BackgroundSource
from training.recipe.load import LoadedConfig

_LOGGER = logging.getLogger(__name__)

LABEL = "_background"
"""The label of background files (and the extra output of ``model.output: softmax_background``)."""
PARTS = ("train", "calibrate", "report", "evidence")
_EVIDENCE_SALT = "evidence:"
"""Prefixed to a train group's name for its hash, so the evidence share is drawn independently of the report's."""


def _share(name: str) -> float:
    """A stable hash of ``name`` in [0, 1): where a group falls when a share of the groups is drawn."""
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def held_out(group: str, fraction: float) -> bool:
    """True when a calibrate group belongs to the report part (a stable hash of its name)."""
    return _share(group) < fraction


def kept_for_evidence(group: str, fraction: float) -> bool:
    """True when a train group is kept from the network for the evidence fit (a salted stable hash of its name)."""
    return fraction > 0 and _share(_EVIDENCE_SALT + group) < fraction


@dataclass(frozen=True)
class Part:
    """The usable files of one part, their memory-mapped frames and cache files."""

    paths: list[Path] = field(default_factory=list)
    frames: list[Frames] = field(default_factory=list)
    cache_files: list[str] = field(default_factory=list)

    def seconds(self, frame_s: float) -> float:
        """Total duration, ``frame_s`` seconds per frame."""
        return float(sum(f.shape[0] for f in self.frames)) * frame_s


@dataclass(frozen=True)
class Background:
    """The training and calibration parts, and the files that could not be read."""

    train: Part = field(default_factory=Part)
    calibrate: Part = field(default_factory=Part)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    noise: Part = field(default_factory=Part)
    """``augment.noise_dir``: mixed under labelled windows only, never a negative."""
    report: Part = field(default_factory=Part)
    """Held-out calibrate groups: false alarms per hour on audio the thresholds never saw."""
    evidence: Part = field(default_factory=Part)
    """Train groups the network never trains on, for the AudioSet evidence fit (empty unless asked for)."""

    def summary(self, frame_s: float) -> str:
        t, c, r, e = self.train, self.calibrate, self.report, self.evidence
        kept = f", kept for the evidence {len(e.paths)} files ({e.seconds(frame_s) / 60:.1f} min)" if e.paths else ""
        return (
            f"background train {len(t.paths)} files ({t.seconds(frame_s) / 60:.1f} min), "
            f"calibrate {len(c.paths)} files ({c.seconds(frame_s) / 60:.1f} min), "
            f"report {len(r.paths)} files ({r.seconds(frame_s) / 60:.1f} min){kept}"
        )


def list_files(source: BackgroundSource, path: Path, evidence_fraction: float = 0.0) -> dict[str, list[Path]]:
    """The files of one source by part ('train', 'calibrate', 'report', and 'evidence': ``evidence_fraction`` of
    the train groups); files of other splits are left out, and so are the files its ``exclude`` globs match or
    its ``exclude_from`` list names."""
    listed = read_exclude_list(Path(source.exclude_from)) if source.exclude_from else frozenset()
    if path.suffix.lower() == ".csv":
        return _from_manifest(source, path, listed, evidence_fraction)
    if path.is_dir():
        return _from_folder(source, path, listed, evidence_fraction)
    raise DataError(f"{path}: data.background source is neither a folder nor a .csv manifest")


def read_exclude_list(path: Path) -> frozenset[Path]:
    """The files an ``exclude_from`` list names: a path a line, relative to the list's folder or absolute;
    blank lines and lines starting with '#' say nothing."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the exclude_from list: {exc}") from None
    lines = (line.strip() for line in text.splitlines())
    return frozenset((path.parent / Path(x).expanduser()).resolve() for x in lines if x and not x.startswith("#"))


def excluded(source: BackgroundSource, relative: str) -> bool:
    """True when a file (its path relative to the source's root, '/'-separated) matches an ``exclude`` glob."""
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in source.exclude)


def _log_excluded(source: BackgroundSource, names: list[str], by_list: int = 0) -> None:
    if names:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        _LOGGER.info("background %s: left out %d file(s) by exclude: %s%s", source.path, len(names),
                     ", ".join(names[:3]), more)  # fmt: skip
    if source.exclude_from:
        _LOGGER.info("background %s: left out %d file(s) listed in %s", source.path, by_list, source.exclude_from)
    unused = [p for p in source.exclude if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unused:
        _LOGGER.warning("background %s: exclude pattern(s) matched no file: %s", source.path, ", ".join(unused))


def _part_of(source: BackgroundSource, split: str | None) -> str | None:
    if split is None:
        return source.split
    return {source.train_split: "train", source.calibrate_split: "calibrate"}.get(split)


def _from_folder(
    source: BackgroundSource, root: Path, listed: frozenset[Path], evidence_fraction: float
) -> dict[str, list[Path]]:
    """Every audio file under ``root``; a top-level subfolder named like a split decides its part."""
    out: dict[str, list[Path]] = {p: [] for p in PARTS}
    groups: list[str] = []  # the group of each train file, in order
    left_out: list[str] = []
    by_list = 0
    for f in sorted(root.rglob("*")):
        if f.suffix.lower() not in AUDIO_SUFFIXES or not f.is_file():
            continue
        if excluded(source, f.relative_to(root).as_posix()):
            left_out.append(f.relative_to(root).as_posix())
            continue
        if listed and f.resolve() in listed:
            by_list += 1
            continue
        rel = f.relative_to(root).parts
        named = rel[0] if len(rel) > 1 and rel[0] in (source.train_split, source.calibrate_split) else None
        part = _part_of(source, named)
        if part == "calibrate" and held_out(str(f.relative_to(root)), source.report_fraction):
            part = "report"
        elif part == "train" and kept_for_evidence(str(f.relative_to(root)), evidence_fraction):
            part = "evidence"
        if part == "train":
            groups.append(str(f.relative_to(root)))
        if part is not None:
            out[part].append(f)
    _log_excluded(source, left_out, by_list)
    _keep_one_group(out, groups, evidence_fraction, root)
    if not any(out.values()):
        raise DataError(f"{root}: no audio files in data.background source ({', '.join(AUDIO_SUFFIXES)})")
    return out


def _from_manifest(
    source: BackgroundSource, manifest: Path, listed: frozenset[Path], evidence_fraction: float
) -> dict[str, list[Path]]:
    try:
        with manifest.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{manifest}: cannot read background manifest: {exc}") from None
    columns = set(rows[0]) if rows else set()
    if source.filename_column not in columns:
        raise DataError(f"{manifest}: no column {source.filename_column!r} (columns: {', '.join(sorted(columns))})")
    root = (manifest.parent / source.audio_root).resolve()
    has_split = source.split_column in columns
    has_group = source.group_column in columns
    out: dict[str, list[Path]] = {p: [] for p in PARTS}
    groups: list[str] = []  # the group of each train file, in order
    left_out: list[str] = []
    by_list = 0
    for row in rows:
        if excluded(source, row[source.filename_column].strip()):
            left_out.append(row[source.filename_column].strip())
            continue
        if listed and (root / row[source.filename_column].strip()).resolve() in listed:
            by_list += 1
            continue
        part = _part_of(source, (row[source.split_column] or "").strip() if has_split else None)
        group = (row[source.group_column] or "").strip() if has_group else ""
        if part == "calibrate" and held_out(group or row[source.filename_column], source.report_fraction):
            part = "report"
        elif part == "train" and kept_for_evidence(group or row[source.filename_column], evidence_fraction):
            part = "evidence"
        if part == "train":
            groups.append(group or row[source.filename_column])
        if part is not None:
            out[part].append(root / row[source.filename_column].strip())
    _log_excluded(source, left_out, by_list)
    _keep_one_group(out, groups, evidence_fraction, manifest)
    missing = [p for paths in out.values() for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{missing[0]}: background file listed in {manifest.name} does not exist{more}")
    return out


def _keep_one_group(out: dict[str, list[Path]], groups: list[str], fraction: float, where: Path) -> None:
    """A share asked for but no train group drawn (a small source): the group with the smallest salted hash is kept,
    so the fit has background, as long as another group stays for the network; one line says so.  ``groups``: the
    group of each of ``out["train"]``, in order."""
    names = set(groups)
    if fraction <= 0 or out["evidence"] or len(names) < 2:
        return
    name = min(sorted(names), key=lambda g: _share(_EVIDENCE_SALT + g))
    out["evidence"] = [f for f, g in zip(out["train"], groups, strict=True) if g == name]
    out["train"] = [f for f, g in zip(out["train"], groups, strict=True) if g != name]
    _LOGGER.warning(
        "background %s: a share of %g kept no train group for the fit; kept one (%s, %d file(s)) of %d",
        where, fraction, name, len(out["evidence"]), len(names),
    )  # fmt: skip


def with_parts(b: Background, extra: dict[str, Part]) -> Background:
    """``b`` with more files in its parts ('train', 'calibrate', 'report'): a dataset's own "other" clips."""

    def plus(part: Part, name: str) -> Part:
        more = extra.get(name)
        if more is None:
            return part
        return Part(part.paths + more.paths, part.frames + more.frames, part.cache_files + more.cache_files)

    return Background(plus(b.train, "train"), plus(b.calibrate, "calibrate"), b.skipped, b.noise,
                      plus(b.report, "report"), b.evidence)  # fmt: skip


def to_json(b: Background) -> dict[str, object]:
    """The parts' files and cache files, for ``prepared.json``."""
    parts = {"train": b.train, "calibrate": b.calibrate, "noise": b.noise, "report": b.report, "evidence": b.evidence}
    doc: dict[str, object] = {
        part: {"paths": [str(x) for x in p.paths], "cache_files": p.cache_files} for part, p in parts.items()
    }
    return doc | {"skipped": [{"path": str(f), "reason": r} for f, r in b.skipped]}


def from_json(doc: dict[str, object] | None) -> Background:
    """Inverse of :func:`to_json`; frames memory-mapped from the cache."""
    import numpy as np

    if not doc:
        return Background()

    def part(d: dict[str, list[str]]) -> Part:
        frames = [np.load(f, mmap_mode="r") for f in d["cache_files"]]
        return Part([Path(x) for x in d["paths"]], frames, list(d["cache_files"]))

    skipped = [(Path(x["path"]), x["reason"]) for x in doc["skipped"]]  # type: ignore[attr-defined]
    empty: dict[str, list[str]] = {"paths": [], "cache_files": []}
    names = ("train", "calibrate", "noise", "report", "evidence")
    parts = [part(doc.get(name, empty)) for name in names]  # type: ignore[arg-type]
    return Background(parts[0], parts[1], skipped, parts[2], parts[3], parts[4])


def load(loaded: LoadedConfig) -> Background:
    """Every background source of the config (all parts) and ``augment.noise_dir``, through the feature cache."""
    cfg = loaded.config
    files: dict[str, list[Path]] = {p: [] for p in (*PARTS, "noise")}
    fits = cfg.audioset.evidence.enabled or bool(cfg.audioset.confirm.fit_thresholds)
    unseen = cfg.audioset.evidence.unseen_fraction if fits else 0.0
    for source in cfg.data.background:
        for part, paths in list_files(source, loaded.path(source.path), unseen).items():
            files[part].extend(paths)
    if cfg.augment.noise_dir:
        noise = BackgroundSource(path=cfg.augment.noise_dir, train_split="", calibrate_split="")
        files["noise"] = list_files(noise, loaded.path(cfg.augment.noise_dir))["train"]
    if unseen > 0 and not files["evidence"]:  # said before any feature is computed
        raise DataError(f"audioset.evidence.unseen_fraction {unseen:g} kept no background train group from the network")
    overlap = sorted(set(files["train"]) & set(files["calibrate"]))
    if overlap:
        raise DataError(f"{overlap[0]}: background file is in both the train and the calibrate part")
    parts, skipped = {}, []
    for part, paths in files.items():
        got = cache.extract([Clip(path=p, label=LABEL) for p in paths], cfg.features, loaded.path(cfg.data.cache_dir),
                            cfg.data.workers) if paths else cache.Extracted([], [], [])  # fmt: skip
        names = [str(f.filename) for f in got.frames]  # type: ignore[attr-defined]
        parts[part] = Part([c.path for c in got.clips], got.frames, names)
        skipped.extend(got.skipped)
    return Background(parts["train"], parts["calibrate"], skipped, parts["noise"], parts["report"], parts["evidence"])
