"""Training batches from cached frames: augmented labelled windows, random background windows, targets.

Each batch holds labelled crops and, with ``fit.background_fraction`` f, about
f of its windows drawn at random from the background's train part (uniform
over its audio time).  Targets of a background window depend on the output:

- ``softmax``: uniform over the labels (outlier exposure: "none of them");
- ``softmax_background``: the ``_background`` class;
- ``sigmoid``: all zeros.

With a teacher, each window also carries the teacher's (standardised)
embedding and/or scores at the nearest cached position (training/fit/teacher.py).
Mixup then blends every target of a pair with the same weight.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from edge import features
from edge.features import InputSpec
from training.data import augment
from training.data.data import DataError
from training.data.prepare import Prepared
from training.fit.teacher import EMBEDDING_DIM, N_SCORES, Key, Targets
from training.model import model as model_mod
from training.recipe.config import TrainConfig

Batch = tuple[np.ndarray, Any]


def batch_inputs(windows: Any, cfg: TrainConfig, spec: InputSpec) -> np.ndarray:
    """dB windows -> the model's float input, one window at a time through edge's mapping."""
    return np.concatenate([features.normalise(w, cfg.features, spec) for w in windows])


def class_targets(cfg: TrainConfig, n_labels: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(one row per label, the background row) over the model's output columns."""
    n_out = n_labels + (1 if cfg.model.output == "softmax_background" else 0)
    rows = np.eye(n_labels, n_out, dtype=np.float32)
    background = np.zeros(n_out, dtype=np.float32)
    if cfg.model.output == "softmax_background":
        background[-1] = 1.0
    elif cfg.model.output == "softmax":
        background[:] = 1.0 / n_labels
    return rows, background


def teacher_heads(cfg: TrainConfig) -> tuple[int, int]:
    """(embedding, scores) widths of the distillation heads; 0 = that head is off."""
    if not cfg.teacher.path:
        return 0, 0
    return (EMBEDDING_DIM if cfg.fit.distill_weight > 0 else 0), (N_SCORES if cfg.fit.distill_scores_weight > 0 else 0)


class TrainWindows:
    """Endless source of augmented, batched training windows for one epoch at a time."""

    def __init__(
        self, cfg: TrainConfig, prepared: Prepared, augmenter: augment.Augmenter, teacher: Targets | None = None
    ) -> None:
        self.cfg, self.prepared, self.augmenter, self.teacher = cfg, prepared, augmenter, teacher
        w = cfg.window.window_frames
        floor = cfg.features.db_floor if cfg.augment.skip_silent_crops else -math.inf
        a = cfg.augment
        within, least = (a.active_within_db, a.active_min_frames) if a.skip_silent_crops else (0.0, 1)
        self.ends = [augment.active_ends(f, w, floor, within, least) for f in prepared.frames]
        rows, self.background_target = class_targets(cfg, len(prepared.labels))
        self.targets = rows[prepared.targets]
        self.background = augment.WindowPool(prepared.background.train.frames, w, cfg.features)
        f = cfg.fit.background_fraction
        if f > 0 and not len(self.background):
            raise DataError("fit.background_fraction > 0, but data.background has no usable file in its train part")
        self.spec = model_mod.input_spec(cfg)
        self.rng = np.random.default_rng(cfg.fit.seed)
        self.epoch_size = len(prepared.split.train) * cfg.fit.crops_per_clip
        self.labelled_per_batch = max(1, cfg.fit.batch_size - round(cfg.fit.batch_size * f))
        self.background_share = f / (1.0 - f)
        self.heads = teacher_heads(cfg) if teacher is not None else (0, 0)

    @property
    def steps(self) -> int:
        return math.ceil(self.epoch_size / self.labelled_per_batch)

    @property
    def n_outputs(self) -> int:
        return len(self.background_target)

    def _crops(self) -> list[augment.Crop]:
        train, per = list(self.prepared.split.train), self.cfg.fit.crops_per_clip
        if self.cfg.augment.time_crop:
            return augment.random_crops(self.ends, train, per, self.rng)
        hop = self.cfg.window.hop_frames
        crops: list[augment.Crop] = []
        for c in train:
            ends = features.window_ends(self.prepared.frames[c].shape[0], self.cfg.window.window_frames, hop)
            crops.extend(augment.Crop(clip=c, end=e) for e in ends[:per])
        return [crops[i] for i in self.rng.permutation(len(crops))]

    def __call__(self) -> Iterator[Batch]:
        crops, n = self._crops(), self.labelled_per_batch
        for i in range(0, len(crops), n):
            yield self._batch(crops[i : i + n])

    def _batch(self, chunk: list[augment.Crop]) -> Batch:
        aug, frames, rng = self.augmenter, self.prepared.frames, self.rng
        windows = [aug.window_of(frames[c.clip], c.end, rng) for c in chunk]
        keys: list[tuple[Key, int]] = [(("clip", c.clip), c.end) for c in chunk]
        for _ in range(round(len(chunk) * self.background_share)):
            crop = self.background.draw(rng)
            windows.append(aug.window_of(self.background.frames[crop.clip], crop.end, rng, mix=False))
            keys.append((("background", crop.clip), crop.end))
        n_bg = len(windows) - len(chunk)
        targets = np.concatenate((self.targets[[c.clip for c in chunk]], np.tile(self.background_target, (n_bg, 1))))
        if self.teacher is not None:
            targets = np.concatenate((targets, self._teacher_targets(keys)), axis=1)
        mixed, targets = aug.mixup(np.stack(windows), targets.astype(np.float32), rng)
        return batch_inputs(mixed, self.cfg, self.spec), self._split(targets)

    def _teacher_targets(self, keys: list[tuple[Key, int]]) -> npt.NDArray[np.float32]:
        assert self.teacher is not None
        rows = []
        for key, end in keys:
            embedding, scores = self.teacher.lookup(key, end)
            rows.append(np.concatenate(([embedding] if self.heads[0] else []) + ([scores] if self.heads[1] else [])))
        return np.stack(rows).astype(np.float32)

    def _split(self, targets: npt.NDArray[np.float32]) -> Any:
        """Class targets alone, or the dict of named outputs when distilling."""
        if self.teacher is None:
            return targets
        n, (e, s) = self.n_outputs, self.heads
        out = {model_mod.SCORES: targets[:, :n]}
        if e:
            out[model_mod.TEACHER_EMBEDDING] = targets[:, n : n + e]
        if s:
            out[model_mod.TEACHER_SCORES] = targets[:, n + e : n + e + s]
        return out


def dataset(source: TrainWindows) -> Any:
    """``tf.data`` pipeline over the generator, prefetching while the model trains."""
    import tensorflow as tf

    spec = source.spec
    x = tf.TensorSpec((None, spec.frames, spec.bands, spec.channels), tf.float32)
    y: Any = tf.TensorSpec((None, source.n_outputs), tf.float32)
    if source.teacher is not None:
        y = {model_mod.SCORES: y}
        e, s = source.heads
        if e:
            y[model_mod.TEACHER_EMBEDDING] = tf.TensorSpec((None, e), tf.float32)
        if s:
            y[model_mod.TEACHER_SCORES] = tf.TensorSpec((None, s), tf.float32)
    return tf.data.Dataset.from_generator(source, output_signature=(x, y)).prefetch(2)


def scores_only(ds: Any) -> Any:
    """The same batches with the class targets alone (the quantisation-aware twin has one output)."""
    return ds.map(lambda x, y: (x, y[model_mod.SCORES]) if isinstance(y, dict) else (x, y))
