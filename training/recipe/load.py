"""Reading a training config: the file (merged over the base it ``extends``), the checks across its sections,
and its paths, which resolve against the config file's folder so that a recipe works from any cwd.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.schema import ConfigError, from_yaml, read_text
from training.recipe.config import TrainConfig
from training.recipe.extends import NOT_PATHS, extends, merged_text


@dataclass(frozen=True)
class LoadedConfig:
    """A parsed config, the directory its relative paths resolve from, and its text."""

    config: TrainConfig
    base_dir: Path
    text: str

    def path(self, value: str) -> Path:
        """Resolve a config path: ``~`` expanded, relative to the config's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def output(self) -> Path:
        return self.path(self.config.output)


def parse(text: str, source: str) -> TrainConfig:
    """YAML text -> :class:`TrainConfig`; :class:`ConfigError` (one line) if invalid."""
    config = from_yaml(TrainConfig, text, source)
    _check(config, source)
    return config


def _check(config: TrainConfig, source: str) -> None:
    snr = config.augment.noise_snr_db
    if len(snr) != 2 or snr[0] > snr[1]:
        raise ConfigError(f"{source}: augment.noise_snr_db: expected [low, high] with low <= high")
    overlap = set(config.data.train_folds) & set(config.data.test_folds)
    if overlap:
        raise ConfigError(f"{source}: data.test_folds: fold(s) {sorted(overlap)} are also training folds")
    if config.model.arch == "yamnet":
        _check_yamnet(config, source)
    if config.fit.qat_epochs and config.model.arch != "mobilenet":
        raise ConfigError(f"{source}: fit.qat_epochs: supported for model.arch mobilenet only, not {config.model.arch}")
    seeds = config.fit.soup_seeds
    if seeds and (len(seeds) < 2 or len(set(seeds)) < len(seeds) or min(seeds) < 0):
        raise ConfigError(f"{source}: fit.soup_seeds: expected two or more different seeds >= 0, got {list(seeds)}")
    if config.fit.compete_weight and config.model.output != "sigmoid":
        raise ConfigError(
            f"{source}: fit.compete_weight: supported for model.output sigmoid only, not {config.model.output}"
        )
    for key in ("average_epochs", "soup_seeds"):
        if getattr(config.fit, key) and config.model.arch != "yamnet":
            raise ConfigError(f"{source}: fit.{key}: supported for model.arch yamnet only, not {config.model.arch}")
    low, high = config.calibration.noisy_snr_db
    if low > high:
        raise ConfigError(f"{source}: calibration.noisy_snr_db: expected [low, high] with low <= high")
    _check_open_set(config, source)
    _check_confirm_fit(config, source)


def _check_confirm_fit(config: TrainConfig, source: str) -> None:
    """The fitted confirmation's grid: scores strictly between 0 and 1, positive slopes, background kept apart."""
    confirm = config.audioset.confirm
    if not confirm.fit_thresholds:
        return
    if any(not 0 < t < 1 for t in confirm.fit_thresholds):
        raise ConfigError(
            f"{source}: audioset.confirm.fit_thresholds: scores between 0 and 1, not {confirm.fit_thresholds}"
        )
    if any(s <= 0 for s in confirm.fit_slopes):
        raise ConfigError(
            f"{source}: audioset.confirm.fit_slopes: above 0 (0 is the hard gate), not {confirm.fit_slopes}"
        )
    if not confirm.fit_slopes and confirm.slope <= 0:
        raise ConfigError(f"{source}: audioset.confirm.fit_thresholds: needs fit_slopes or a slope above 0")
    if config.audioset.evidence.unseen_fraction <= 0:
        raise ConfigError(
            f"{source}: audioset.confirm.fit_thresholds: needs background kept from the network "
            "(audioset.evidence.unseen_fraction above 0)"
        )


def _check_yamnet(config: TrainConfig, source: str) -> None:
    """YAMNet's network takes 96x64 patches, has 14 blocks and keeps a sigmoid AudioSet head."""
    if (config.window.window_frames, config.features.n_bands) != (96, 64):
        raise ConfigError(f"{source}: model.arch: yamnet takes 96x64 windows (window.window_frames, features.n_bands)")
    if config.model.output != "sigmoid":
        raise ConfigError(f"{source}: model.output: yamnet needs sigmoid outputs, not {config.model.output}")
    if config.model.weights in ("imagenet", "none", ""):
        raise ConfigError(
            f"{source}: model.weights: yamnet starts from a YAMNet TFLite file, not {config.model.weights!r}"
        )
    if not 1 <= config.fit.unfreeze_blocks <= 13:
        raise ConfigError(f"{source}: fit.unfreeze_blocks: yamnet fine-tunes 1..13 of its 14 blocks")


def _check_open_set(config: TrainConfig, source: str) -> None:
    """Background, output and teacher settings that only make sense together (a dataset's own "other" labels are
    background too)."""
    has_background = bool(config.data.background or config.data.other_labels)
    if config.fit.background_fraction > 0 and not has_background:
        raise ConfigError(f"{source}: fit.background_fraction: needs data.background sources or data.other_labels")
    if config.model.output == "softmax_background" and not (has_background and config.fit.background_fraction > 0):
        raise ConfigError(
            f"{source}: model.output: softmax_background needs data.background and fit.background_fraction > 0"
        )
    fit = config.fit
    if config.teacher.path and fit.distill_weight == 0 and fit.distill_scores_weight == 0:
        raise ConfigError(f"{source}: teacher.path: set, but fit.distill_weight and fit.distill_scores_weight are 0")


def load(path: str | Path) -> LoadedConfig:
    """Read and parse a config file, merged over the base it ``extends`` (training/recipe/extends.py)."""
    p = Path(path)
    text = read_text(p)
    if extends(text):
        text = merged_text(p)
    loaded = LoadedConfig(parse(text, p.name), p.resolve().parent, text)
    return _with_exclude_lists(_with_confirm_paths(loaded, p.name))


def _with_exclude_lists(loaded: LoadedConfig) -> LoadedConfig:
    """Each background source's ``exclude_from`` as an absolute path: the list is read where the sources are listed,
    far from the config file (training.data.background), and may not exist yet (``auricle-train screen`` writes it)."""
    data = loaded.config.data
    if not any(s.exclude_from for s in data.background):
        return loaded
    sources = tuple(
        dataclasses.replace(s, exclude_from=str(loaded.path(s.exclude_from))) if s.exclude_from else s
        for s in data.background
    )
    return replace(loaded, data=dataclasses.replace(data, background=sources))


def _with_confirm_paths(loaded: LoadedConfig, source: str) -> LoadedConfig:
    """``audioset.confirm.mapping`` and ``class_map`` as absolute paths (the bundle is made far from the config
    file).  The mapping ships with the recipe and must exist; the class map, with YAMNet's weights, is needed
    when a bundle is made (training.evaluate.evaluate)."""
    confirm = loaded.config.audioset.confirm
    if not confirm.mapping:
        return loaded
    path = loaded.path(confirm.mapping)
    if not path.is_file():
        raise ConfigError(f"{source}: audioset.confirm.mapping: no such file: {path}")
    weights = loaded.config.model.weights
    beside = loaded.path(weights).parent if weights not in NOT_PATHS else loaded.base_dir
    class_map = loaded.path(confirm.class_map) if confirm.class_map else beside / "yamnet_class_map.csv"
    resolved = dataclasses.replace(confirm, mapping=str(path), class_map=str(class_map))
    return replace(loaded, audioset=dataclasses.replace(loaded.config.audioset, confirm=resolved))


def replace(loaded: LoadedConfig, **sections: Any) -> LoadedConfig:
    """A copy with whole sections replaced (used for cross-validation folds)."""
    return LoadedConfig(dataclasses.replace(loaded.config, **sections), loaded.base_dir, loaded.text)
