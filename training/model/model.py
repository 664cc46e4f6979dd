"""The classifier: an ImageNet MobileNet (no top) under a new pooling/dropout/dense head.

Input is the front end's normalised window, ``(frames, bands, channels)`` in
[-1, 1], exactly what ``edge.features.normalise`` produces on the device.
The head is a softmax over the labels, a softmax over the labels and
``_background``, or one sigmoid per label (``model.output``).  For distillation
the training model adds projection heads on the pooled features
(:func:`distillation_model`); they share every layer with the classifier and
are never exported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.features import InputSpec
from training.data.background import LABEL as BACKGROUND_LABEL
from training.recipe.config import NetworkConfig, TrainConfig

_LOGGER = logging.getLogger(__name__)

_BLOCK_NUMBER = re.compile(r"(?:conv_(?:dw|pw|pad)_|block_|expanded_conv_)(\d+)")
BASE_NAME = "base"
EMBEDDING_NAME = "embedding"
SCORES = "scores"
TEACHER_EMBEDDING, TEACHER_SCORES = "teacher_embedding", "teacher_scores"


def input_spec(cfg: TrainConfig) -> InputSpec:
    """The float input spec the Keras model is built for."""
    w = cfg.window
    channels = 1 if cfg.model.arch == "yamnet" else 3  # YAMNet takes one plane; ImageNet nets three
    return InputSpec(frames=w.window_frames, bands=cfg.features.n_bands, channels=channels, channel_mode=w.channel_mode)


def output_labels(cfg: NetworkConfig, labels: Sequence[str]) -> list[str]:
    """The model's output columns: the labels, then ``_background`` for ``softmax_background``."""
    return [*labels, BACKGROUND_LABEL] if cfg.output == "softmax_background" else list(labels)


def background_labels(cfg: NetworkConfig) -> tuple[str, ...]:
    """Outputs the device scores but never publishes."""
    return (BACKGROUND_LABEL,) if cfg.output == "softmax_background" else ()


def _application(arch: str) -> Any:
    import keras

    return {
        "mobilenet": keras.applications.MobileNet,
        "mobilenet_v2": keras.applications.MobileNetV2,
        "mobilenet_v3_small": keras.applications.MobileNetV3Small,
    }[arch]


def _weights(value: str) -> str | None:
    """Keras' ``weights`` argument: 'imagenet', None, or an existing .h5 path."""
    if value == "none":
        return None
    if value == "imagenet":
        return "imagenet"
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"model.weights: {value}: no such file")
    return str(path)


def build(cfg: NetworkConfig, spec: InputSpec, n_classes: int, bn_momentum: float) -> Any:
    """The Keras model with ``n_classes`` outputs (see :func:`output_labels`); the base is frozen (phase 1)."""
    import keras

    inputs = keras.Input(spec.shape[1:], name="window")
    x = inputs
    size = (spec.frames * cfg.upsample, spec.bands * cfg.upsample, spec.channels)
    if cfg.upsample > 1:
        x = keras.layers.UpSampling2D(cfg.upsample, name="upsample")(x)
    kwargs: dict[str, Any] = {"input_shape": size, "alpha": cfg.alpha, "include_top": False}
    if cfg.arch == "mobilenet_v3_small":
        kwargs["include_preprocessing"] = False  # inputs are already in [-1, 1]
    base = _application(cfg.arch)(weights=_weights(cfg.weights), **kwargs)
    base.name = BASE_NAME
    set_bn_momentum(base, bn_momentum)
    base.trainable = False
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name=EMBEDDING_NAME)(x)
    x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    activation = "sigmoid" if cfg.output == "sigmoid" else "softmax"
    outputs = keras.layers.Dense(n_classes, activation=activation, name=SCORES)(x)
    return keras.Model(inputs, outputs, name=f"auricle_{cfg.arch}")


def distillation_model(model: Any, embedding_dim: int, n_scores: int) -> Any:
    """A training model sharing every layer of ``model``, with outputs ``scores`` and projection heads.

    ``teacher_embedding`` (linear, ``embedding_dim``) and ``teacher_scores`` (sigmoid, ``n_scores``) sit on
    the pooled features; a dimension of 0 leaves that head out.  Only ``model`` is saved and exported.
    """
    import keras

    pooled = model.get_layer(EMBEDDING_NAME).output
    outputs = {SCORES: model.output}
    if embedding_dim:
        outputs[TEACHER_EMBEDDING] = keras.layers.Dense(embedding_dim, name=TEACHER_EMBEDDING)(pooled)
    if n_scores:
        outputs[TEACHER_SCORES] = keras.layers.Dense(n_scores, activation="sigmoid", name=TEACHER_SCORES)(pooled)
    return keras.Model(model.inputs, outputs, name=f"{model.name}_distill")


def set_bn_momentum(base: Any, momentum: float) -> None:
    """Faster-moving BatchNorm statistics: 0.99 barely moves in a short fine-tune."""
    import keras

    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def block_of_layers(base: Any) -> list[int]:
    """Block number of each base layer (layers after the last numbered block join it)."""
    blocks, current = [], 0
    for layer in base.layers:
        m = _BLOCK_NUMBER.search(layer.name)
        if m:
            current = max(current, int(m.group(1)))
        blocks.append(current)
    return blocks


def unfreeze_top(model: Any, n_blocks: int, frozen_bn_blocks: int = 0) -> int:
    """Make the top ``n_blocks`` blocks trainable (BatchNorm too unless frozen); return layers unfrozen.

    Frozen BatchNorm layers run in inference mode (Keras 3), so the lower,
    still-frozen blocks keep their ImageNet statistics.
    """
    import keras

    base = model.get_layer(BASE_NAME)
    blocks = block_of_layers(base)
    top = max(blocks) if blocks else 0
    base.trainable = True
    count = 0
    for layer, block in zip(base.layers, blocks, strict=True):
        layer.trainable = n_blocks > 0 and block > top - n_blocks
        if block <= frozen_bn_blocks and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        count += int(layer.trainable and bool(layer.weights))
    return count


def embedding_model(model: Any) -> Any:
    """The same network up to the pooled penultimate features."""
    import keras

    return keras.Model(model.inputs, model.get_layer(EMBEDDING_NAME).output)


def count_macs(model: Any) -> int:
    """Multiply-accumulates of one inference (conv, depthwise conv and dense layers)."""
    import keras

    total = 0
    for layer in _flat_layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    return int(total)


def _flat_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.extend(_flat_layers(layer) if hasattr(layer, "layers") and layer.layers else [layer])
    return out
