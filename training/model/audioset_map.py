"""``auricle-train audioset-suggest``: which AudioSet classes YAMNet's head gives each of your labels.

For each label, the classes that fire on the *sounding* windows of its training clips (within 20 dB of the clip's
loudest: ``edge.learn.heads.sounding``); a class *fires* on a window where it reaches the confirmation's threshold
(``audioset.confirm.threshold``).  The classes that fire on at least ``min_share`` of a label's windows are proposed
for it, each class for one label only (the one it fires on most, as a mapping allows), and written as a
``label,audioset_classes`` mapping to accept or edit.  The config's own mapping, when it has one, is read with the
same checks as training's and measured the same way.  YAMNet's windows: training/model/audioset_scores.py.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.learn.heads import SOUNDING_DB, sounding
from training.data import data
from training.data.data import DataError
from training.model import yamnet
from training.model.audioset_scores import FileScores, score_files
from training.recipe.load import LoadedConfig

MIN_SHARE = 0.5
"""A class is proposed for a label when it fires on at least this share of the label's sounding windows."""
Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Fires:
    """One AudioSet class on one label's sounding windows."""

    index: int
    share: float
    """Of the windows, where it reaches the threshold."""


@dataclass(frozen=True)
class Suggestion:
    """What YAMNet's head says of one label's training clips."""

    label: str
    clips: int
    windows: int
    """Sounding windows."""
    top: tuple[Fires, ...]
    """The classes that fire most, best first."""
    proposed: tuple[int, ...]
    proposed_share: float
    """Of the windows, where one of the proposed classes fires: what the confirmation would let through."""
    mapped_share: float | None = None
    """The same for the config's mapping (None: it has none; 0 where it gives the label no class)."""


@dataclass(frozen=True)
class Suggested:
    suggestions: list[Suggestion]
    class_names: list[str]
    threshold: float
    min_share: float
    skipped: list[tuple[Path, str]]
    mapping: Path | None
    """The config's mapping, when it has one."""


def yamnet_files(loaded: LoadedConfig) -> tuple[Path, Path]:
    """(YAMNet TFLite file, its class map) named by the config: ``model.weights`` of ``model.arch: yamnet``, else
    ``teacher.path``; the class map is ``audioset.confirm.class_map`` where that file exists (reading a config puts
    it beside ``model.weights``, not a teacher), else the one beside the model."""
    cfg = loaded.config
    if cfg.model.arch == "yamnet":
        key, model = "model.weights", loaded.path(cfg.model.weights)
    elif cfg.teacher.path:
        key, model = "teacher.path", loaded.path(cfg.teacher.path)
    else:
        raise DataError("no YAMNet in the config: model.arch yamnet with model.weights, or teacher.path, names it")
    if not model.is_file():
        raise DataError(f"{key}: {model}: no such file")
    named = loaded.path(cfg.audioset.confirm.class_map) if cfg.audioset.confirm.class_map else None
    class_map = named if named and named.is_file() else model.with_name("yamnet_class_map.csv")
    if not class_map.is_file():
        raise DataError(f"YAMNet's class map: {named or class_map}: no such file (audioset.confirm.class_map)")
    return model, class_map


def checked_mapping(path: Path, class_names: Sequence[str], labels: Sequence[str]) -> dict[str, list[int]]:
    """The mapping's classes of the dataset's labels.  A class that is not YAMNet's, a label close to one of the
    dataset's (a typo) or a mapping naming none of them is an error naming it; other labels are left out."""
    try:
        mapping = yamnet.read_mapping(path, class_names)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{exc}" if str(path) in str(exc) else f"{path}: {exc}") from None
    for name in mapping:
        close = difflib.get_close_matches(name, [x for x in labels if x not in mapping], n=1, cutoff=0.8)
        if name not in labels and close:
            raise DataError(f"{path}: {name!r} is not one of the labels (did you mean {close[0]!r}?)")
    if not set(mapping) & set(labels):
        raise DataError(f"{path}: maps none of the dataset's labels ({', '.join(labels[:4])}, ...)")
    return {x: v for x, v in mapping.items() if x in labels}


def training_clips(loaded: LoadedConfig) -> tuple[list[data.Clip], list[str]]:
    """The training split's clips of the labels listened for (not ``data.other_labels``), and those labels."""
    from training.data.prepare import dataset_paths

    cfg = loaded.config.data
    manifest, root = dataset_paths(loaded)
    clips = data.load_clips(cfg, manifest, root)
    labels = sorted({c.label for c in clips})
    others = data.check_other_labels(cfg.other_labels, labels)
    split = data.make_split(clips, cfg)
    return [clips[i] for i in split.train if clips[i].label not in others], [x for x in labels if x not in others]


def suggest(
    loaded: LoadedConfig, top: int = 3, threshold: float | None = None, min_share: float = MIN_SHARE
) -> Suggested:
    """What YAMNet's head says of each label's training clips, and the classes to propose for it."""
    cfg = loaded.config
    clips, labels = training_clips(loaded)
    model, class_map = yamnet_files(loaded)
    names = yamnet.read_class_names(class_map)
    mapping_path = Path(cfg.audioset.confirm.mapping) if cfg.audioset.confirm.mapping else None
    mapping = checked_mapping(mapping_path, names, labels) if mapping_path else {}
    thr = cfg.audioset.confirm.threshold if threshold is None else threshold
    cache_dir = loaded.path(cfg.data.cache_dir)
    found, skipped = score_files([c.path for c in clips], model, class_map, cache_dir, cfg.data.workers, "YAMNet")
    label_of = {c.path: c.label for c in clips}
    windows = {x: _sounding([f for f in found if label_of[f.path] == x]) for x in labels}
    fires = {x: (w >= thr).mean(axis=0) if len(w) else np.zeros(len(names)) for x, w in windows.items()}
    means = {x: w.mean(axis=0) if len(w) else np.zeros(len(names)) for x, w in windows.items()}
    order = {x: [int(c) for c in np.lexsort((-means[x], -fires[x]))[:top]] for x in labels}  # ties: higher mean
    owner = _owners(fires, order, min_share)
    out = []
    for x in labels:
        w, f = windows[x], fires[x]
        proposed = tuple(c for c in order[x] if owner.get(c) == x)
        out.append(
            Suggestion(
                x, sum(1 for f in found if label_of[f.path] == x), len(w),
                tuple(Fires(c, float(f[c])) for c in order[x]), proposed, _share(w, proposed, thr),
                _share(w, mapping.get(x, ()), thr) if mapping_path else None,
            )
        )  # fmt: skip
    return Suggested(out, names, thr, min_share, skipped, mapping_path)


def _sounding(found: Sequence[FileScores]) -> Floats:
    """The scores of the sounding windows of these files, stacked."""
    rows = [f.scores[sounding(f.level_db)] for f in found if len(f.level_db)]
    return np.concatenate(rows) if rows else np.zeros((0, 521), np.float32)


def _share(windows: Floats, classes: Sequence[int], threshold: float) -> float:
    """Of the windows, where one of the classes reaches the threshold (0 without classes or windows)."""
    if not len(windows) or not classes:
        return 0.0
    return float((windows[:, list(classes)] >= threshold).any(axis=1).mean())


def _owners(fires: dict[str, npt.NDArray[np.float64]], top: dict[str, list[int]], min_share: float) -> dict[int, str]:
    """Each class among a label's ``top`` that fires on ``min_share`` of its windows, for the label it fires on
    most (a class confirms one label only)."""
    owner: dict[int, str] = {}
    for label, f in fires.items():
        for c in top[label]:
            if f[c] >= min_share and (c not in owner or f[c] > fires[owner[c]][c]):
                owner[c] = label
    return owner


def lines(found: Suggested) -> list[str]:
    """What ``audioset-suggest`` prints: a heading, then a row per label."""
    names, rows = found.class_names, found.suggestions
    n, bad = sum(s.clips for s in rows), f"; {len(found.skipped)} unreadable" if found.skipped else ""
    width = max([5, *(len(s.label) for s in rows)])
    theirs = f"  {found.mapping.name}" if found.mapping else ""
    out = [
        f"audioset-suggest: {n} training clips of {len(rows)} labels through YAMNet's AudioSet head: share of each "
        f"label's sounding windows (within {SOUNDING_DB:g} dB of its clip's loudest) where a class scores "
        f">= {found.threshold:g}{bad}",
        f"  {'label':<{width}}  windows  proposed{theirs}  classes that fire most",
    ]
    for s in rows:
        mapped = "" if s.mapped_share is None else f"  {s.mapped_share:>{len(theirs) - 2}.0%}"
        fires = ", ".join(f"{names[f.index]} {f.share:.0%}{'*' if f.index in s.proposed else ''}" for f in s.top)
        out.append(f"  {s.label:<{width}}  {s.windows:>7}  {s.proposed_share:>8.0%}{mapped}  {fires}")
    out.append(
        f"  proposed: the share where a proposed class (*: fires on >= {found.min_share:.0%} of the label's windows, "
        "and on no other label's more) fires - what the confirmation would let through"
    )
    return out


def write_mapping(path: Path, found: Suggested) -> None:
    """The proposals as ``label,audioset_classes,note`` (the note says how often each class fires)."""
    names = found.class_names
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "audioset_classes", "note"])
        for s in found.suggestions:
            writer.writerow([s.label, ";".join(names[c] for c in s.proposed), _note(s, found)])


def _note(s: Suggestion, found: Suggested) -> str:
    names = found.class_names
    if not s.windows:
        return "no sounding window in its training clips: unmapped"
    taken = [f"{names[f.index]} {f.share:.0%}" for f in s.top if f.share >= found.min_share]
    if not s.proposed and taken:
        return f"{', '.join(taken)} of its {s.windows} sounding windows, but more of another label's: unmapped"
    if not s.proposed:
        best = f"best {names[s.top[0].index]} {s.top[0].share:.0%}" if s.top else "none"
        return f"no class fires on {found.min_share:.0%} of its {s.windows} sounding windows ({best}): unmapped"
    share = {f.index: f.share for f in s.top}
    each = ", ".join(f"{names[c]} {share[c]:.0%}" for c in s.proposed)
    return (
        f"fire (>= {found.threshold:g}) on {each} of its {s.windows} sounding windows, together {s.proposed_share:.0%}"
    )
