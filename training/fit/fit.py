"""Stage 2: fine-tuning from cached frames through ``tf.data``.

Phase 1 trains the head on a frozen base (its BatchNorm layers in inference
mode); phase 2 unfreezes the top blocks with a lower, cosine-decayed learning
rate; the optional phase 3 trains through simulated int8 (training/model/qat.py).
Early stopping and the kept weights follow the clip-level validation accuracy
(mean of window scores at a hop, as the device aggregates).  Each phase is
resumable: Keras' BackupAndRestore keeps the epoch state, and a finished
phase 1 or 2 is not repeated.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge import features
from edge.features import InputSpec
from training.data import augment
from training.data.prepare import Prepared
from training.fit import kept, windows
from training.fit import teacher as teacher_mod
from training.fit.windows import TrainWindows, batch_inputs
from training.model import model as model_mod
from training.recipe import stages
from training.recipe.config import TrainConfig
from training.recipe.load import LoadedConfig

_LOGGER = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
QAT_MODEL_FILE = "model_qat.keras"  # phase 3 weights: the int8 export starts from these
HEAD_WEIGHTS = "head.weights.h5"
FINETUNED_WEIGHTS = "finetuned.weights.h5"


def clip_windows(frames: Any, cfg: TrainConfig, hop: int) -> np.ndarray:
    """The dB windows the device would score for a clip, at ``hop``."""
    w = cfg.window.window_frames
    ends = features.window_ends(frames.shape[0], w, hop)
    return np.stack([features.window_at(frames, e, w, cfg.features) for e in ends])


def make_validation(cfg: TrainConfig, prepared: Prepared, from_start: bool = False) -> Any:
    """Callback (training/fit/kept.py): the clip-level validation accuracy decides the kept weights and stops
    early.  With ``from_start`` the weights before the first epoch are a candidate too."""
    spec, hop = model_mod.input_spec(cfg), cfg.fit.val_hop_frames
    val = list(prepared.split.val)
    clips = [clip_windows(prepared.frames[c], cfg, hop) for c in val]
    truth = np.array([prepared.targets[c] for c in val])
    n_labels = len(prepared.labels)  # the event labels come first; a background column is not scored

    def accuracy(model: Any) -> float:
        scores = predict_clips(model, clips, cfg, spec)[:, :n_labels]
        return float(np.mean(scores.argmax(axis=1) == truth))

    return kept.keeper(accuracy if val else None, cfg.fit.patience, from_start=from_start)


def predict_clips(model: Any, clips: list[np.ndarray], cfg: TrainConfig, spec: InputSpec) -> np.ndarray:
    """Mean window scores per clip (every output column) with the Keras model (used only for early stopping)."""
    flat = np.concatenate(clips)
    batches = [batch_inputs(flat[i : i + 512], cfg, spec) for i in range(0, len(flat), 512)]
    scores = np.concatenate([_class_scores(model, x) for x in batches])
    bounds = np.cumsum([0] + [len(w) for w in clips])
    return np.stack([scores[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])


def _class_scores(model: Any, x: np.ndarray) -> np.ndarray:
    out = model.predict(x, verbose=0)
    return np.asarray(out[model_mod.SCORES] if isinstance(out, dict) else out)


def strategy(name: str) -> Any:
    """``tf.distribute`` strategy: several GPUs by configuration, else the default."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def class_loss(cfg: TrainConfig) -> Any:
    """Cross-entropy over the softmax, or binary cross-entropy per sigmoid output (with ``fit.compete_weight``
    the labels of a labelled window also compete: :func:`competing_loss`)."""
    import keras

    if cfg.model.output == "sigmoid":
        if cfg.fit.compete_weight > 0:
            return competing_loss(cfg.fit.label_smoothing, cfg.fit.compete_weight)
        return keras.losses.BinaryCrossentropy(label_smoothing=cfg.fit.label_smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.fit.label_smoothing)


def competing_loss(label_smoothing: float, weight: float) -> Any:
    """Binary cross-entropy per sigmoid output (mean over the labels) plus ``weight`` x the cross-entropy of a
    softmax over the sigmoid outputs' logits, on windows with a label only (a background window's all-zero target
    adds nothing).  Binary cross-entropy treats the labels independently: it never asks that a crying baby score
    higher as ``crying_baby`` than as ``cat``, only that each be near its target.  The softmax term does: its
    gradient on a rival label's logit is its softmax share, largest where two labels are both sure.  Per logit it
    is not divided by the number of labels, as the mean binary cross-entropy's is, so a small weight already
    matches it."""
    import keras

    ops = keras.ops

    def loss(y_true: Any, y_pred: Any) -> Any:
        p = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        logits = ops.log(p) - ops.log(1.0 - p)  # the sigmoid's input, recovered
        mass = ops.sum(y_true, axis=-1)
        target = y_true / ops.maximum(mass, 1e-7)[..., None]
        compete = -ops.sum(target * ops.log_softmax(logits, axis=-1), axis=-1)
        bce = keras.losses.binary_crossentropy(y_true, y_pred, label_smoothing=label_smoothing)
        return bce + weight * ops.where(mass > 0, compete, 0.0)

    return loss


def cosine_distance(y_true: Any, y_pred: Any) -> Any:
    """1 - cosine similarity per example (0 when the directions agree)."""
    import keras

    a = keras.ops.normalize(y_true, axis=-1)
    b = keras.ops.normalize(y_pred, axis=-1)
    return 1.0 - keras.ops.sum(a * b, axis=-1)


def _compile(model: Any, cfg: TrainConfig, lr: Any) -> None:
    """Class loss; for a distillation model also the teacher losses, weighted by the config."""
    import keras

    opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=cfg.fit.weight_decay)
    accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    if not isinstance(model.output, dict):
        model.compile(optimizer=opt, loss=class_loss(cfg), metrics=[accuracy])
        return
    embedding_loss = cosine_distance if cfg.fit.distill_loss == "cosine" else keras.losses.MeanSquaredError()
    losses = {model_mod.SCORES: class_loss(cfg), model_mod.TEACHER_EMBEDDING: embedding_loss,
              model_mod.TEACHER_SCORES: keras.losses.BinaryCrossentropy()}  # fmt: skip
    weights = {model_mod.SCORES: 1.0, model_mod.TEACHER_EMBEDDING: cfg.fit.distill_weight,
               model_mod.TEACHER_SCORES: cfg.fit.distill_scores_weight}  # fmt: skip
    names = list(model.output)
    model.compile(
        optimizer=opt,
        loss={k: losses[k] for k in names},
        loss_weights={k: weights[k] for k in names},
        metrics={model_mod.SCORES: [accuracy]},
    )


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
    with stages.timed(f"fit {name}") as stage:
        history = model.fit(ds, epochs=epochs, callbacks=callbacks, verbose=2)
        stage.detail = f"{len(history.epoch)} of {epochs} epochs"


def noise_frames(cfg: TrainConfig, prepared: Prepared) -> list[Any]:
    """What is mixed under labelled windows: the background's train part (if enabled) and ``noise_dir``."""
    bg = prepared.background
    return (list(bg.train.frames) if cfg.augment.noise_from_background else []) + list(bg.noise.frames)


def train(loaded: LoadedConfig, prepared: Prepared) -> Any:
    """Fit both phases (and phase 3), save ``model.keras`` in the run directory and return the model.

    With a teacher, phases 1 and 2 train a distillation model that shares the classifier's layers
    (training/model/model.py); only the classifier is saved.
    """
    import keras

    cfg, out = loaded.config, loaded.output
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.fit.seed)
    augmenter = augment.Augmenter(cfg.augment, cfg.features, cfg.window.window_frames, noise_frames(cfg, prepared))
    source = TrainWindows(cfg, prepared, augmenter, teacher_mod.for_training(loaded, prepared))
    ds = windows.dataset(source)
    distribution = strategy(cfg.fit.distribute)  # one for every phase: Keras refuses to mix strategy objects
    with distribution.scope():
        model = model_mod.build(cfg.model, model_mod.input_spec(cfg), source.n_outputs, cfg.fit.bn_momentum)
        trainer = model_mod.distillation_model(model, *source.heads) if any(source.heads) else model
        _compile(trainer, cfg, cfg.fit.head_lr)
    head = out / HEAD_WEIGHTS
    if head.exists():
        trainer.load_weights(str(head))
        _LOGGER.info("phase 1 already done: loaded %s", head)
    else:
        _phase(trainer, ds, cfg.fit.head_epochs, out, "head", cfg, prepared)
        trainer.save_weights(str(head))
    finetuned = out / FINETUNED_WEIGHTS
    if finetuned.exists():
        trainer.load_weights(str(finetuned))
        _LOGGER.info("phase 2 already done: loaded %s", finetuned)
    else:
        with distribution.scope():
            n = model_mod.unfreeze_top(model, cfg.fit.unfreeze_blocks, cfg.fit.frozen_bn_blocks)
            decay = max(1, cfg.fit.finetune_epochs * source.steps)
            _compile(trainer, cfg, keras.optimizers.schedules.CosineDecay(cfg.fit.finetune_lr, decay, alpha=0.05))
        _LOGGER.info("phase 2: %d layers with weights trainable", n)
        _phase(trainer, ds, cfg.fit.finetune_epochs, out, "finetune", cfg, prepared)
        trainer.save_weights(str(finetuned))
    model.save(str(out / MODEL_FILE))
    (out / QAT_MODEL_FILE).unlink(missing_ok=True)
    if cfg.fit.qat_epochs > 0:
        qat_ds = windows.scores_only(ds)
        twin_weights = quantisation_aware(model, qat_ds, source.steps, cfg, prepared, out, distribution)
        twin_weights.save(str(out / QAT_MODEL_FILE))
    return model


def quantisation_aware(
    model: Any, ds: Any, steps: int, cfg: TrainConfig, prepared: Prepared, out: Path, distribution: Any
) -> Any:
    """Phase 3: train a fake-quantised twin of ``model``; return a copy holding the twin's weights.

    ``model`` itself stays the float model. The validation callback starts from
    the twin's accuracy before training, so the weights kept are never worse
    (in simulated int8) than the fine-tuned ones.
    """
    import keras

    from training.model import qat

    model = clone(model)
    inputs = batch_inputs(calibration_windows(cfg, prepared), cfg, model_mod.input_spec(cfg))
    with distribution.scope():
        twin, pairs = qat.build(model, qat.activation_ranges(model, inputs))
        decay = max(1, cfg.fit.qat_epochs * steps)
        _compile(twin, cfg, keras.optimizers.schedules.CosineDecay(cfg.fit.qat_lr, decay, alpha=0.05))
    _LOGGER.info("phase 3: quantisation-aware fine-tuning, %d folded convolutions", len(pairs) - 1)
    _phase(twin, ds, cfg.fit.qat_epochs, out, "qat", cfg, prepared, from_start=True)
    qat.write_back(pairs)
    return model


def calibration_windows(cfg: TrainConfig, prepared: Prepared) -> list[np.ndarray]:
    """The int8 calibration windows: phase 3 and the export use the same ones.

    Training clips, and background train windows in the share ``fit.background_fraction`` (the device
    hears background far more often than labels, so its activation ranges must be covered too).
    """
    from training.model import export

    w, count, bg = cfg.window.window_frames, cfg.export.calibration_windows, prepared.background.train
    n_bg = round(count * cfg.fit.background_fraction) if bg.frames else 0
    labelled = export.calibration_windows(
        prepared.frames, prepared.split.train, w, cfg.features, count - n_bg, cfg.fit.seed
    )
    if not n_bg:
        return labelled
    return labelled + export.calibration_windows(bg.frames, range(len(bg.frames)), w, cfg.features, n_bg, cfg.fit.seed)


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
    return keras.models.load_model(str(path), compile=False)  # for predictions and export only
