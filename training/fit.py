"""Stage 2: fine-tuning from cached frames through ``tf.data``.

Phase 1 trains the head on a frozen base (its BatchNorm layers in inference
mode); phase 2 unfreezes the top blocks with a lower, cosine-decayed learning
rate; the optional phase 3 trains through simulated int8 (training/qat.py).
Early stopping and the kept weights follow the clip-level validation accuracy
(mean of window scores at a hop, as the device aggregates).  Each phase is
resumable: Keras' BackupAndRestore keeps the epoch state, and a finished
phase 1 or 2 is not repeated.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge import features
from edge.features import InputSpec
from training import augment
from training import model as model_mod
from training.config import LoadedConfig, TrainConfig
from training.prepare import Prepared

_LOGGER = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
QAT_MODEL_FILE = "model_qat.keras"  # phase 3 weights: the int8 export starts from these
HEAD_WEIGHTS = "head.weights.h5"
FINETUNED_WEIGHTS = "finetuned.weights.h5"


def input_spec(cfg: TrainConfig) -> InputSpec:
    """The float input spec the Keras model is built for."""
    w = cfg.window
    return InputSpec(frames=w.window_frames, bands=cfg.features.n_bands, channel_mode=w.channel_mode)


def batch_inputs(windows: Any, cfg: TrainConfig, spec: InputSpec) -> np.ndarray:
    """dB windows -> the model's float input, one window at a time through edge's mapping."""
    return np.concatenate([features.normalise(w, cfg.features, spec) for w in windows])


class TrainWindows:
    """Endless source of augmented, batched training windows for one epoch at a time."""

    def __init__(self, cfg: TrainConfig, prepared: Prepared, augmenter: augment.Augmenter) -> None:
        self.cfg, self.prepared, self.augmenter = cfg, prepared, augmenter
        w = cfg.window.window_frames
        floor = cfg.features.db_floor if cfg.augment.skip_silent_crops else -math.inf
        self.ends = [augment.active_ends(f, w, floor) for f in prepared.frames]
        self.targets = np.eye(len(prepared.labels), dtype=np.float32)[prepared.targets]
        self.spec = input_spec(cfg)
        self.rng = np.random.default_rng(cfg.fit.seed)
        self.epoch_size = len(prepared.split.train) * cfg.fit.crops_per_clip

    @property
    def steps(self) -> int:
        return math.ceil(self.epoch_size / self.cfg.fit.batch_size)

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

    def __call__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        crops, bs = self._crops(), self.cfg.fit.batch_size
        for i in range(0, len(crops), bs):
            chunk = crops[i : i + bs]
            windows = np.stack([self.augmenter.window_of(self.prepared.frames[c.clip], c.end, self.rng) for c in chunk])
            targets = self.targets[[c.clip for c in chunk]]
            windows, targets = self.augmenter.mixup(windows, targets, self.rng)
            yield batch_inputs(windows, self.cfg, self.spec), targets


def dataset(source: TrainWindows) -> Any:
    """``tf.data`` pipeline over the generator, prefetching while the model trains."""
    import tensorflow as tf

    spec = source.spec
    sig = (
        tf.TensorSpec((None, spec.frames, spec.bands, spec.channels), tf.float32),
        tf.TensorSpec((None, len(source.prepared.labels)), tf.float32),
    )
    return tf.data.Dataset.from_generator(source, output_signature=sig).prefetch(2)


def clip_windows(frames: Any, cfg: TrainConfig, hop: int) -> np.ndarray:
    """The dB windows the device would score for a clip, at ``hop``."""
    w = cfg.window.window_frames
    ends = features.window_ends(frames.shape[0], w, hop)
    return np.stack([features.window_at(frames, e, w, cfg.features) for e in ends])


def make_validation(cfg: TrainConfig, prepared: Prepared, from_start: bool = False) -> Any:
    """Callback: clip-level validation accuracy, early stopping and best-weights keeping.

    With ``from_start`` the weights before the first epoch are a candidate too.
    """
    import keras

    spec, hop = input_spec(cfg), cfg.fit.val_hop_frames
    val = list(prepared.split.val)
    windows = [clip_windows(prepared.frames[c], cfg, hop) for c in val]
    truth = np.array([prepared.targets[c] for c in val])

    class ClipValidation(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.best, self.best_weights, self.wait = -1.0, None, 0

        def accuracy(self) -> float:
            scores = predict_clips(self.model, windows, cfg, spec)
            return float(np.mean(scores.argmax(axis=1) == truth))

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            if from_start and val and self.best < 0:
                self.best, self.best_weights = self.accuracy(), self.model.get_weights()
                _LOGGER.info("validation clip accuracy before training: %.3f", self.best)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if not val:
                return
            acc = self.accuracy()
            if logs is not None:
                logs["val_clip_acc"] = acc
            if acc > self.best:
                self.best, self.best_weights, self.wait = acc, self.model.get_weights(), 0
            else:
                self.wait += 1
                if self.wait >= cfg.fit.patience:
                    self.model.stop_training = True

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)
                _LOGGER.info("kept the weights with validation clip accuracy %.3f", self.best)

    return ClipValidation()


def predict_clips(model: Any, windows: list[np.ndarray], cfg: TrainConfig, spec: InputSpec) -> np.ndarray:
    """Mean window scores per clip with the Keras model (used only for early stopping)."""
    flat = np.concatenate(windows)
    scores = np.concatenate(
        [model.predict(batch_inputs(flat[i : i + 512], cfg, spec), verbose=0) for i in range(0, len(flat), 512)]
    )
    bounds = np.cumsum([0] + [len(w) for w in windows])
    return np.stack([scores[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])


def strategy(name: str) -> Any:
    """``tf.distribute`` strategy: several GPUs by configuration, else the default."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _compile(model: Any, cfg: TrainConfig, lr: Any) -> None:
    import keras

    opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=cfg.fit.weight_decay)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.fit.label_smoothing)
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])


def _phase(
    model: Any, ds: Any, epochs: int, out: Path, name: str, cfg: TrainConfig, prepared: Prepared,
    from_start: bool = False,
) -> None:  # fmt: skip
    import keras

    if epochs <= 0:
        return
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out / f"backup_{name}")),
        make_validation(cfg, prepared, from_start),
        keras.callbacks.CSVLogger(str(out / f"history_{name}.csv"), append=True),
    ]
    model.fit(ds, epochs=epochs, callbacks=callbacks, verbose=2)


def train(loaded: LoadedConfig, prepared: Prepared) -> Any:
    """Fit both phases, save ``model.keras`` in the run directory and return the model."""
    import keras

    cfg, out = loaded.config, loaded.output
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.fit.seed)
    source = TrainWindows(cfg, prepared, augment.Augmenter(cfg.augment, cfg.features, cfg.window.window_frames))
    ds = dataset(source)
    with strategy(cfg.fit.distribute).scope():
        model = model_mod.build(cfg.model, input_spec(cfg), len(prepared.labels), cfg.fit.bn_momentum)
        _compile(model, cfg, cfg.fit.head_lr)
    head = out / HEAD_WEIGHTS
    if head.exists():
        model.load_weights(str(head))
        _LOGGER.info("phase 1 already done: loaded %s", head)
    else:
        _phase(model, ds, cfg.fit.head_epochs, out, "head", cfg, prepared)
        model.save_weights(str(head))
    finetuned = out / FINETUNED_WEIGHTS
    if finetuned.exists():
        model.load_weights(str(finetuned))
        _LOGGER.info("phase 2 already done: loaded %s", finetuned)
    else:
        with strategy(cfg.fit.distribute).scope():
            n = model_mod.unfreeze_top(model, cfg.fit.unfreeze_blocks, cfg.fit.frozen_bn_blocks)
            decay = max(1, cfg.fit.finetune_epochs * source.steps)
            _compile(model, cfg, keras.optimizers.schedules.CosineDecay(cfg.fit.finetune_lr, decay, alpha=0.05))
        _LOGGER.info("phase 2: %d layers with weights trainable", n)
        _phase(model, ds, cfg.fit.finetune_epochs, out, "finetune", cfg, prepared)
        model.save_weights(str(finetuned))
    model.save(str(out / MODEL_FILE))
    (out / QAT_MODEL_FILE).unlink(missing_ok=True)
    if cfg.fit.qat_epochs > 0:
        quantisation_aware(model, ds, source.steps, cfg, prepared, out).save(str(out / QAT_MODEL_FILE))
    return model


def quantisation_aware(model: Any, ds: Any, steps: int, cfg: TrainConfig, prepared: Prepared, out: Path) -> Any:
    """Phase 3: train a fake-quantised twin of ``model``; return a copy holding the twin's weights.

    ``model`` itself stays the float model. The validation callback starts from
    the twin's accuracy before training, so the weights kept are never worse
    (in simulated int8) than the fine-tuned ones.
    """
    import keras

    from training import qat

    model = clone(model)
    inputs = batch_inputs(calibration_windows(cfg, prepared), cfg, input_spec(cfg))
    with strategy(cfg.fit.distribute).scope():
        twin, pairs = qat.build(model, qat.activation_ranges(model, inputs))
        decay = max(1, cfg.fit.qat_epochs * steps)
        _compile(twin, cfg, keras.optimizers.schedules.CosineDecay(cfg.fit.qat_lr, decay, alpha=0.05))
    _LOGGER.info("phase 3: quantisation-aware fine-tuning, %d folded convolutions", len(pairs) - 1)
    _phase(twin, ds, cfg.fit.qat_epochs, out, "qat", cfg, prepared, from_start=True)
    qat.write_back(pairs)
    return model


def calibration_windows(cfg: TrainConfig, prepared: Prepared) -> list[np.ndarray]:
    """The int8 calibration windows (training clips only): phase 3 and the export use the same ones."""
    from training import export

    return export.calibration_windows(
        prepared.frames, prepared.split.train, cfg.window.window_frames, cfg.features,
        cfg.export.calibration_windows, cfg.fit.seed,
    )  # fmt: skip


def clone(model: Any) -> Any:
    """An independent copy of a Keras model, weights included."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def load_model(output: Path, name: str = MODEL_FILE) -> Any:
    """The trained (float) Keras model of a run directory, or another of its model files."""
    import keras

    path = output / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained model; run 'auricle-train fit' first")
    return keras.models.load_model(str(path))
