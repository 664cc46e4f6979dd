"""``model.arch: yamnet``: YAMNet's network fine-tuned on our labels while its AudioSet head keeps what it knows.

Learning without forgetting, shaped for 2 CPU cores:

- The network is YAMNet's (training/model/audioset.py), started from the peer's weights, with a second head:
  ``scores`` (our labels, sigmoid, on the 1024-d ``embedding``) beside ``audioset`` (YAMNet's 521).
- The lower blocks (the stem up to ``layer{14 - fit.unfreeze_blocks}``) stay frozen at YAMNet's
  weights, so their activations are computed once: ``fit.cache_copies`` augmented passes over the
  training windows (labelled crops, background windows, mixing, masks, mixup as in training/fit/windows.py)
  and the clean validation windows, kept as float16 in ``lwf_cache/`` of the run folder (a resumed run
  reads them back).
- The AudioSet head's targets are the untouched network's 521 scores on exactly those windows (the
  same cached activations through the original upper blocks): what YAMNet itself says, labelled and
  background audio alike.  ``fit.lwf_weight`` weighs that loss against ours.
- Phase 1 trains the new head alone; phase 2 the upper blocks and both heads with a cosine-decayed
  learning rate.  BatchNorm stays frozen (it holds YAMNet's folded biases: training/model/audioset.py).
  Early stopping and the kept weights follow the clip-level validation accuracy, as in training/fit/fit.py,
  unless ``fit.average_epochs`` is set: then phase 2 runs every epoch and keeps the mean of the last N epochs'
  weights (stochastic weight averaging; BatchNorm is frozen, so there are no statistics to re-estimate).
- ``fit.soup_seeds`` makes a uniform weight soup (Wortsman et al., 2022): both phases run once per seed on the
  same cached windows, each from YAMNet's upper blocks with a new head of that seed, and the network keeps the
  mean of their weights.  The members share the pretrained start, so their weights average into one network
  (close to the mean of their logits) that costs what one of them costs on the device.
- ``fit.distribute: mirrored`` builds and compiles the network in the scope of one ``tf.distribute``
  strategy, as training/fit/fit.py does: each batch is split over every GPU (every CPU device where
  there is none).

The saved model is the whole network: the normalised window (training/model/model.py ``input_spec``) in,
``{"scores": labels, "audioset": 521}`` out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.data import augment
from training.data.prepare import Prepared
from training.fit import kept
from training.fit.fit import MODEL_FILE, class_loss, noise_frames, strategy
from training.fit.lwf_cache import AUDIOSET, PREDICT_BATCH, Cached, batches, cache_training, cache_validation, predict
from training.fit.windows import TrainWindows
from training.model import audioset
from training.model import model as model_mod
from training.model.yamnet import DB_TO_LN
from training.recipe import stages
from training.recipe.config import TrainConfig
from training.recipe.load import LoadedConfig

_LOGGER = logging.getLogger(__name__)

HEAD_WEIGHTS, FINETUNED_WEIGHTS = "head.weights.h5", "finetuned.weights.h5"
N_BLOCKS = 14


def build(loaded: LoadedConfig, n_labels: int) -> Any:
    """The two-headed network, normalised window in; its BatchNorm frozen."""
    return build_tapped(loaded, n_labels)[0]


def build_tapped(loaded: LoadedConfig, n_labels: int) -> tuple[Any, dict[str, Any]]:
    """:func:`build`, and every layer's output in the new network by name (to cut it in two)."""
    import keras

    cfg = loaded.config
    yam = audioset.build_yamnet(loaded.path(cfg.model.weights), input_db_scale=None)
    spec = model_mod.input_spec(cfg)
    inputs = keras.Input(spec.shape[1:], name="window")
    half_span = (cfg.features.db_ceiling - cfg.features.db_floor) / 2.0
    centre = (cfg.features.db_ceiling + cfg.features.db_floor) / 2.0
    x = keras.layers.Rescaling(half_span * DB_TO_LN, offset=centre * DB_TO_LN, name="to_log_mel")(inputs)
    x = keras.layers.Reshape((spec.frames, spec.bands), name="log_mel")(x)
    taps = _chain(yam, x, first=1, last=audioset.EMBEDDING)
    outputs = _heads(yam, taps[audioset.EMBEDDING], n_labels, cfg.model.dropout)
    for layer in yam.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return keras.Model(inputs, outputs, name="auricle_yamnet"), taps


def _chain(yam: Any, x: Any, first: int, last: str) -> dict[str, Any]:
    """Apply YAMNet's layers ``first`` .. the one named ``last`` (a plain chain); each output by name."""
    taps = {}
    for layer in yam.layers[first:]:
        x = taps[layer.name] = layer(x)
        if layer.name == last:
            return taps
    raise ValueError(f"YAMNet has no layer {last!r}")


def _heads(yam: Any, embedding: Any, n_labels: int, dropout: float) -> dict[str, Any]:
    import keras

    logits = yam.get_layer(audioset.LOGITS)(embedding)
    ours = keras.layers.Dropout(dropout, name="dropout")(embedding)
    return {
        model_mod.SCORES: keras.layers.Dense(n_labels, activation="sigmoid", name=model_mod.SCORES)(ours),
        AUDIOSET: keras.layers.Activation("sigmoid", name=AUDIOSET)(logits),
    }


def boundary(cfg: TrainConfig) -> str:
    """The last frozen layer: the output of block ``14 - fit.unfreeze_blocks``."""
    block = N_BLOCKS - cfg.fit.unfreeze_blocks
    return "layer1_conv_relu" if block <= 1 else f"layer{block}_pointwise_relu"


def split(net: Any, taps: dict[str, Any], cfg: TrainConfig) -> tuple[Any, Any]:
    """(lower, upper): the frozen blocks, and the rest of ``net`` on their output (layers shared)."""
    import keras

    cut = taps[boundary(cfg)]
    lower = keras.Model(net.inputs, cut, name="lower")
    inputs = keras.Input(tuple(cut.shape[1:]), name="frozen_blocks")
    index = [layer.name for layer in net.layers].index(boundary(cfg))
    x = inputs
    for layer in net.layers[index + 1 :]:
        x = layer(x)
        if layer.name == audioset.EMBEDDING:
            break
    heads = {
        model_mod.SCORES: net.get_layer(model_mod.SCORES)(net.get_layer("dropout")(x)),
        AUDIOSET: net.get_layer(AUDIOSET)(net.get_layer(audioset.LOGITS)(x)),
    }
    lower.trainable = False
    return lower, keras.Model(inputs, heads, name="upper")


def validation(val: Cached, truth: npt.NDArray[np.int64], patience: int, average: int = 0) -> Any:
    """Callback (training/fit/kept.py): the clip accuracy of the mean window scores over the cached validation
    windows decides the kept weights, or with ``average`` > 0 the mean of the last ``average`` epochs' is kept."""
    accuracy = (lambda model: clip_accuracy(model, val, truth)) if len(truth) else None
    return kept.keeper(accuracy, patience, average=average)


def clip_accuracy(model: Any, val: Cached, truth: npt.NDArray[np.int64]) -> float:
    """Clip accuracy of the mean window scores over the cached validation windows (``val.scores``: clip index)."""
    scores = np.concatenate([
        predict(model, val.acts[i : i + PREDICT_BATCH].astype(np.float32))[model_mod.SCORES]
        for i in range(0, len(val.acts), PREDICT_BATCH)
    ])  # fmt: skip
    sums = np.zeros((len(truth), scores.shape[1]))
    np.add.at(sums, val.scores[:, 0].astype(np.int64), scores)
    return float(np.mean(sums.argmax(axis=1) == truth))


def _compile(upper: Any, cfg: TrainConfig, lr: Any) -> None:
    import keras

    upper.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=cfg.fit.weight_decay),
        loss={
            model_mod.SCORES: class_loss(cfg),
            AUDIOSET: keras.losses.BinaryCrossentropy(),
        },
        loss_weights={model_mod.SCORES: 1.0, AUDIOSET: cfg.fit.lwf_weight},
    )


def _set_upper_trainable(upper: Any, trainable: bool) -> None:
    """Phase 1: only our head learns; phase 2: the upper blocks' convolutions and both heads (never BN)."""
    import keras

    for layer in upper.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif layer.weights and layer.name != model_mod.SCORES:
            layer.trainable = trainable


def _phase(upper: Any, data: Any, epochs: int, out: Path, name: str, callbacks: list[Any]) -> None:
    import keras

    if epochs <= 0:
        return
    log = keras.callbacks.CSVLogger(str(out / f"history_{name}.csv"), append=True)
    with stages.timed(f"fit {name}") as stage:
        history = upper.fit(data, epochs=epochs, callbacks=[*callbacks, log], verbose=2)
        stage.detail = f"{len(history.epoch)} of {epochs} epochs"


def train(loaded: LoadedConfig, prepared: Prepared) -> Any:
    """Cache, fit both phases (each resumable); save the whole network as ``model.keras`` and return it."""
    import keras

    cfg, out = loaded.config, loaded.output
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.fit.seed)
    distribution = strategy(cfg.fit.distribute)  # one strategy: the network is built and compiled in its scope
    with distribution.scope():
        net, taps = build_tapped(loaded, len(prepared.labels))
        lower, upper = split(net, taps, cfg)
    augmenter = augment.Augmenter(cfg.augment, cfg.features, cfg.window.window_frames, noise_frames(cfg, prepared))
    with stages.timed("fit cache") as stage:
        data = cache_training(TrainWindows(cfg, prepared, augmenter), lower, upper, out, cfg.fit.cache_copies)
        val = cache_validation(cfg, prepared, lower, upper, out)
        stage.detail = f"{len(data.acts)} training windows through the frozen blocks, {len(val.acts)} validation"
    truth = np.array([prepared.targets[c] for c in prepared.split.val], dtype=np.int64)
    if cfg.fit.soup_seeds:
        soup(upper, data, cfg, out, (val, truth), distribution)
    else:
        _run_phases(upper, batches(data, cfg.fit.batch_size, cfg.fit.seed), cfg, out, (val, truth), distribution)
    net.save(str(out / MODEL_FILE))
    return net


def soup(upper: Any, data: Cached, cfg: TrainConfig, out: Path, val: tuple[Cached, Any], distribution: Any) -> None:
    """``fit.soup_seeds``: both phases once per seed, each in ``soup_<seed>/`` of the run folder and resumable
    there, from the same start but with the new head initialised and the batches shuffled by that seed; the
    mean of their phase-2 weights is kept (and saved as the run's own, so a finished soup is not redone)."""
    import keras

    path = out / FINETUNED_WEIGHTS
    if path.exists():
        upper.load_weights(str(path))
        _LOGGER.info("soup already done: loaded %s", path)
        return
    start, head, members = upper.get_weights(), upper.get_layer(model_mod.SCORES), []
    for seed in cfg.fit.soup_seeds:
        member = out / f"soup_{seed}"
        member.mkdir(exist_ok=True)
        keras.utils.set_random_seed(seed)
        upper.set_weights(start)
        head.kernel.assign(keras.initializers.GlorotUniform(seed=seed)(head.kernel.shape))
        head.bias.assign(np.zeros(head.bias.shape, dtype=np.float32))
        _run_phases(upper, batches(data, cfg.fit.batch_size, seed), cfg, member, val, distribution)
        members.append(upper.get_weights())
    upper.set_weights(kept.mean_weights(members))
    if len(val[1]):
        _LOGGER.info("soup of %d trainings: validation clip accuracy %.3f", len(members), clip_accuracy(upper, *val))
    upper.save_weights(str(path))


def _run_phases(upper: Any, data: Any, cfg: TrainConfig, out: Path, val: tuple[Cached, Any], distribution: Any) -> None:
    import keras

    for name, epochs, weights in (
        ("head", cfg.fit.head_epochs, HEAD_WEIGHTS),
        ("finetune", cfg.fit.finetune_epochs, FINETUNED_WEIGHTS),
    ):
        _set_upper_trainable(upper, name == "finetune")
        if name == "head":
            lr: Any = cfg.fit.head_lr
        else:
            lr = keras.optimizers.schedules.CosineDecay(cfg.fit.finetune_lr, max(1, epochs * len(data)), alpha=0.05)
        with distribution.scope():
            _compile(upper, cfg, lr)
        path = out / weights
        if path.exists():
            upper.load_weights(str(path))
            _LOGGER.info("phase %s already done: loaded %s", name, path)
            continue
        average = cfg.fit.average_epochs if name == "finetune" else 0
        _phase(upper, data, epochs, out, name, [validation(*val, cfg.fit.patience, average)])
        upper.save_weights(str(path))
