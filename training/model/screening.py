"""``auricle-train screen``: background files that sound like your labels, as a list to leave out.

Every background source of the config, every part (train, calibrate, report), through YAMNet's AudioSet head
(training/model/audioset_scores.py): a file is listed where one window gives one of a label's classes (the
mapping: ``--mapping`` or ``audioset.confirm.mapping``) at least :data:`SCREEN_THRESHOLD`.  Such a recording of a
label would train as "none of them", set thresholds, and count as false alarms.  The list is what a source's
``exclude_from`` reads (training/data/background.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data import background
from training.data.data import DataError
from training.model import yamnet
from training.model.audioset_map import checked_mapping, training_clips, yamnet_files
from training.model.audioset_scores import FileScores, score_files
from training.recipe.load import LoadedConfig

SCREEN_THRESHOLD = 0.3
"""A window giving a label's class this much makes its file sound like the label (what ../shared's
background_more was screened with)."""


@dataclass(frozen=True)
class Flagged:
    """A background file that sounds like a label: its window with the highest score on the label's classes."""

    path: Path
    part: str
    seconds: float
    label: str
    class_index: int
    score: float
    at_s: float
    """Where that window ends."""


@dataclass(frozen=True)
class Screened:
    flagged: list[Flagged]
    seconds: dict[str, float]
    """Screened audio per part."""
    files: dict[str, int]
    labels: list[str]
    """The labels with classes."""
    class_names: list[str]
    threshold: float
    mapping: Path
    skipped: list[tuple[Path, str]]
    listed: frozenset[Path]
    """What the config's ``exclude_from`` lists name already."""


def screen(loaded: LoadedConfig, mapping: Path | None = None, threshold: float = SCREEN_THRESHOLD) -> Screened:
    """The background files of every source and part in which a window gives a label's classes ``threshold``."""
    cfg = loaded.config
    model, class_map = yamnet_files(loaded)
    names = yamnet.read_class_names(class_map)
    path = mapping or (Path(cfg.audioset.confirm.mapping) if cfg.audioset.confirm.mapping else None)
    if path is None:
        raise DataError("screen: no mapping: give --mapping CSV or audioset.confirm.mapping (audioset-suggest -o)")
    classes = checked_mapping(path, names, training_clips(loaded)[1])
    parts = _background_parts(loaded)
    files = [p for paths in parts.values() for p in paths]
    if not files:
        raise DataError("screen: the config's data.background sources have no files")
    found, skipped = score_files(files, model, class_map, loaded.path(cfg.data.cache_dir), cfg.data.workers, "screen")
    part_of = {p: part for part, paths in parts.items() for p in paths}
    flagged = [f for f in (_flag(s, part_of[s.path], classes, threshold) for s in found) if f is not None]
    seconds = {part: sum(s.seconds for s in found if part_of[s.path] == part) for part in parts}
    lists = {Path(s.exclude_from) for s in cfg.data.background if s.exclude_from}
    listed = frozenset().union(*(background.read_exclude_list(x) for x in lists if x.is_file()))
    counts = {part: len(paths) for part, paths in parts.items()}
    return Screened(flagged, seconds, counts, sorted(classes), names, threshold, path, skipped, listed)


def _background_parts(loaded: LoadedConfig) -> dict[str, list[Path]]:
    """Every background source's files by part, ``exclude_from`` not applied (a rerun screens them again)."""
    parts: dict[str, list[Path]] = {p: [] for p in background.PARTS}
    for source in loaded.config.data.background:
        unlisted = dataclasses.replace(source, exclude_from="")
        for part, paths in background.list_files(unlisted, loaded.path(source.path)).items():
            parts[part].extend(paths)
    return parts


def _flag(s: FileScores, part: str, classes: dict[str, list[int]], threshold: float) -> Flagged | None:
    """The label with the highest score of one of its classes in one window, where it reaches ``threshold``."""
    best: Flagged | None = None
    for label, indices in classes.items() if len(s.scores) else ():
        sub = s.scores[:, indices]
        w, c = np.unravel_index(int(np.argmax(sub)), sub.shape)
        score = float(sub[w, c])
        if score >= threshold and (best is None or score > best.score):
            best = Flagged(s.path, part, s.seconds, label, indices[int(c)], score, float(s.end_s[w]))
    return best


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _minutes(flagged: Sequence[Flagged]) -> str:
    return f"{_files(len(flagged))}, {sum(f.seconds for f in flagged) / 60:.1f} min"


def lines(found: Screened, show: int = 5) -> list[str]:
    """What ``screen`` prints: what was screened, the files by label (``show`` of each), how much they are."""
    total = sum(found.seconds.values())
    parts = ", ".join(f"{p} {found.files[p]} ({found.seconds[p] / 60:.1f} min)" for p in found.files if found.files[p])
    out = [
        f"screen: {sum(found.files.values())} background files, {total / 60:.1f} min ({parts}), through YAMNet's "
        f"AudioSet head, the classes {found.mapping.name} gives {len(found.labels)} labels; a file is listed where "
        f"a window scores >= {found.threshold:g} on one of them"
        + (f"; {len(found.skipped)} unreadable" if found.skipped else "")
    ]
    for label in sorted({f.label for f in found.flagged}):
        mine = sorted((f for f in found.flagged if f.label == label), key=lambda f: -f.score)
        out.append(f"  {label}: {_minutes(mine)}")
        out += [
            f"    {f.path} ({f.part}): {found.class_names[f.class_index]} {f.score:.2f} at {f.at_s:.1f} s"
            for f in mine[:show]
        ]
        out += [f"    ... and {len(mine) - show} more"] if len(mine) > show else []
    gone = sum(f.seconds for f in found.flagged)
    by_part = [f"{p} {_minutes([f for f in found.flagged if f.part == p])}" for p in found.files]
    already = sum(1 for f in found.flagged if f.path.resolve() in found.listed)
    sound = "sounds" if len(found.flagged) == 1 else "sound"
    out.append(
        f"screen: {_files(len(found.flagged))} {sound} like the labels, {gone / 60:.1f} of {total / 60:.1f} min "
        f"({gone / max(total, 1e-9):.1%}): {'; '.join(by_part)}"
        + (f"; {already} of them in an exclude_from list already" if found.listed else "")
    )
    return out


def write_exclude(path: Path, found: Screened) -> None:
    """The flagged files as an ``exclude_from`` list, by label, each with why; paths relative to the list."""
    out = [
        f"# auricle-train screen: background files where a window scores >= {found.threshold:g} on a label's",
        f"# AudioSet classes ({found.mapping.name}). Paths are relative to this file; delete a line to keep its file.",
        "# A data.background source that names this list as exclude_from leaves these files out of every part.",
    ]
    for label in sorted({f.label for f in found.flagged}):
        mine = sorted((f for f in found.flagged if f.label == label), key=lambda f: -f.score)
        out.append(f"# {label}: {_minutes(mine)}")
        for f in mine:
            out.append(f"# {found.class_names[f.class_index]} {f.score:.2f} at {f.at_s:.1f} s ({f.part} part)")
            out.append(os.path.relpath(f.path.resolve(), path.parent.resolve()))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
