"""Stage 1: dataset -> clips, split and cached features, recorded in ``prepared.json``.

Later stages (fit, export, evaluate) start from that file, so each can run on
its own and a run can resume after any stage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.data import background as background_mod
from training.data import cache, data
from training.data.background import Background
from training.data.cache import Frames
from training.data.data import Clip, Split
from training.recipe import stages
from training.recipe.load import LoadedConfig

_LOGGER = logging.getLogger(__name__)

PREPARED = "prepared.json"
CONFIG_RECORD = "config.yaml"
"""The config as read, `extends` merged: what the run was made from."""


@dataclass(frozen=True)
class Prepared:
    """Usable clips with their memory-mapped frames, label order and split."""

    clips: list[Clip]
    frames: list[Frames]
    labels: list[str]
    split: Split
    skipped: list[tuple[Path, str]]
    cache_files: list[str]
    background: Background = field(default_factory=Background)
    """Background audio: ``train`` part for negatives and mixing, ``calibrate`` part never trained on."""

    @property
    def targets(self) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[c.label] for c in self.clips]

    def summary(self, frame_s: float = 0.01) -> str:
        """One line: clips, classes, split sizes, skipped files, background minutes (``frame_s`` per frame)."""
        s, bg = self.split, self.background
        line = (
            f"{len(self.clips)} clips, {len(self.labels)} classes, train/val/test {len(s.train)}/{len(s.val)}/"
            f"{len(s.test)}, {len(self.skipped)} skipped"
        )
        return f"{line}; {bg.summary(frame_s)}" if bg.train.paths or bg.calibrate.paths else line

    def class_lines(self, asked_test: float | None = None) -> list[str]:
        """Per class: clips in train / validation / test, and a warning where a class's test share is far
        (more than 10 points or half) from ``asked_test`` (a grouped split can put a whole cluster on one side)."""
        s = self.split
        width = max(len(x) for x in self.labels)
        lines = [f"  {'class':<{width}}  train    val   test"]
        for i, label in enumerate(self.labels):
            n = [sum(1 for c in part if self.targets[c] == i) for part in (s.train, s.val, s.test)]
            share = n[2] / max(1, sum(n))
            far = asked_test is not None and abs(share - asked_test) > max(0.1, asked_test / 2)
            warn = f"   <- test share {share:.0%}, asked {asked_test:.0%}" if far else ""
            lines.append(f"  {label:<{width}}  {n[0]:>5}  {n[1]:>5}  {n[2]:>5}{warn}")
        return lines


def dataset_paths(loaded: LoadedConfig) -> tuple[Path | None, Path]:
    """(manifest or None, audio root) resolved against the config's directory."""
    cfg = loaded.config.data
    manifest = loaded.path(cfg.manifest) if cfg.manifest else None
    root = loaded.path(cfg.audio_root) if manifest is None else (manifest.parent / cfg.audio_root).resolve()
    return manifest, root


def prepare(loaded: LoadedConfig, test_folds: tuple[int, ...] | None = None) -> Prepared:
    """Load, extract (cached), check class sizes, split; set the "other" labels' clips apart as background; write
    ``prepared.json``."""
    cfg = loaded.config.data
    manifest, root = dataset_paths(loaded)
    clips = data.load_clips(cfg, manifest, root)
    with stages.timed("features") as stage:
        extracted = cache.extract(clips, loaded.config.features, loaded.path(cfg.cache_dir), cfg.workers)
        stage.detail = f"{len(extracted.clips)} clips, {len(extracted.skipped)} unreadable"
    labels = data.check_counts(extracted.clips, cfg.min_clips_per_class)
    if background_mod.LABEL in labels:
        raise data.DataError(f"label {background_mod.LABEL!r} is reserved for background audio (data.background)")
    others = data.check_other_labels(cfg.other_labels, labels)
    split = data.make_split(extracted.clips, cfg, test_folds)
    extracted, split, other_parts = others_apart(extracted, split, others)
    labels = [x for x in labels if x not in others]
    extracted, split = codec_copies(extracted, split, loaded)
    extracted, split = extra_clips(extracted, split, loaded, labels)
    files = [str(f.filename) for f in extracted.frames]  # type: ignore[attr-defined]
    with stages.timed("background") as stage:
        bg = background_mod.with_parts(background_mod.load(loaded), other_parts)
        stage.detail = bg.summary(loaded.config.features.hop_samples / loaded.config.features.sample_rate)
        stage.detail = stage.detail.removeprefix("background ")
    prepared = Prepared(extracted.clips, extracted.frames, labels, split, extracted.skipped, files, bg)
    save(prepared, loaded.output / PREPARED)
    record_config(loaded)
    return prepared


def others_apart(
    ex: cache.Extracted, split: Split, others: frozenset[str]
) -> tuple[cache.Extracted, Split, dict[str, background_mod.Part]]:
    """The clips of ``data.other_labels`` taken out of the labelled set, as background that keeps their split:
    training clips for the 'train' part, validation clips for 'calibrate', test clips for 'report'."""
    if not others:
        return ex, split, {}
    parts = {}
    for part, indices in (("train", split.train), ("calibrate", split.val), ("report", split.test)):
        mine = [i for i in indices if ex.clips[i].label in others]
        files = [str(ex.frames[i].filename) for i in mine]  # type: ignore[attr-defined]
        parts[part] = background_mod.Part([ex.clips[i].path for i in mine], [ex.frames[i] for i in mine], files)
    _LOGGER.info(
        "%s: %d clips trained as background (train %d, calibrate %d, report %d)", ", ".join(sorted(others)),
        sum(len(p.paths) for p in parts.values()), *(len(parts[x].paths) for x in ("train", "calibrate", "report")),
    )  # fmt: skip
    keep = [i for i, c in enumerate(ex.clips) if c.label not in others]
    index = {old: new for new, old in enumerate(keep)}

    def kept(indices: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(index[i] for i in indices if i in index)

    labelled = cache.Extracted([ex.clips[i] for i in keep], [ex.frames[i] for i in keep], ex.skipped)
    return labelled, Split(train=kept(split.train), val=kept(split.val), test=kept(split.test)), parts


def record_config(loaded: LoadedConfig) -> None:
    """The run's config as it was read (``extends`` merged) in the run folder, its paths relative to its folder."""
    note = f"# the config of this run; relative paths resolve from {loaded.base_dir}\n"
    (loaded.output / CONFIG_RECORD).write_text(note + loaded.text, encoding="utf-8")


def codec_copies(ex: cache.Extracted, split: Split, loaded: LoadedConfig) -> tuple[cache.Extracted, Split]:
    """``data.codec_fraction`` of the training clips once more, through the codec (training split only)."""
    cfg = loaded.config.data
    n = round(len(split.train) * cfg.codec_fraction)
    if n == 0:
        return ex, split
    chosen = sorted(np.random.default_rng(cfg.seed).choice(split.train, n, replace=False))
    merged, split, _ = _train_on(ex, split, [dataclasses.replace(ex.clips[i], codec="opus") for i in chosen], loaded)
    return merged, split


def extra_clips(
    ex: cache.Extracted, split: Split, loaded: LoadedConfig, labels: list[str]
) -> tuple[cache.Extracted, Split]:
    """``data.extra``: recordings from other sources, added to the training split only."""
    cfg = loaded.config.data
    clips = [c for s in cfg.extra for c in data.read_extra(s, loaded.path(s.manifest), labels)]
    if not clips:
        return ex, split
    merged, split, got = _train_on(ex, split, clips, loaded)
    features = loaded.config.features
    seconds = sum(len(f) for f in got.frames) * features.hop_samples / features.sample_rate
    _LOGGER.info(
        "data.extra: %d recordings (%.1f min) of %d labels added to the training clips%s", len(got.clips),
        seconds / 60, len({c.label for c in got.clips}), f", {len(got.skipped)} unreadable" if got.skipped else "",
    )  # fmt: skip
    return merged, split


def _train_on(
    ex: cache.Extracted, split: Split, clips: list[data.Clip], loaded: LoadedConfig
) -> tuple[cache.Extracted, Split, cache.Extracted]:
    """``clips`` through the feature cache, appended to ``ex`` and to the training split only; also what was
    extracted of them."""
    cfg = loaded.config.data
    got = cache.extract(clips, loaded.config.features, loaded.path(cfg.cache_dir), cfg.workers)
    added = tuple(range(len(ex.clips), len(ex.clips) + len(got.clips)))
    merged = cache.Extracted(ex.clips + got.clips, ex.frames + got.frames, ex.skipped + got.skipped)
    return merged, Split(train=split.train + added, val=split.val, test=split.test), got


def save(p: Prepared, path: Path) -> None:
    """Write the clip list, split and cache file names as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "labels": p.labels,
        "clips": [{"path": str(c.path), "label": c.label, "fold": c.fold, "codec": c.codec} for c in p.clips],
        "cache_files": p.cache_files,
        "split": {"train": list(p.split.train), "val": list(p.split.val), "test": list(p.split.test)},
        "skipped": [{"path": str(f), "reason": r} for f, r in p.skipped],
        "background": background_mod.to_json(p.background),
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def load(output: Path) -> Prepared:
    """Read ``prepared.json`` from a run directory and memory-map the cached frames."""
    path = output / PREPARED
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise data.DataError(f"{path}: cannot read ({exc}); run 'auricle-train prepare' first") from None
    clips = [
        Clip(path=Path(c["path"]), label=c["label"], fold=c["fold"], codec=c.get("codec", "")) for c in doc["clips"]
    ]
    try:
        frames = [np.load(f, mmap_mode="r") for f in doc["cache_files"]]
        bg = background_mod.from_json(doc.get("background"))
    except OSError as exc:
        raise data.DataError(f"feature cache missing ({exc}); run 'auricle-train prepare' again") from None
    s = doc["split"]
    split = Split(train=tuple(s["train"]), val=tuple(s["val"]), test=tuple(s["test"]))
    skipped = [(Path(x["path"]), x["reason"]) for x in doc["skipped"]]
    return Prepared(clips, frames, doc["labels"], split, skipped, doc["cache_files"], bg)
