"""Quantisation-aware fine-tuning for the MobileNet v1 base (Keras 3, no tfmot).

Post-training int8 costs a fine-tuned MobileNet several points (docs/training.md):
the errors of narrow early layers and of the folded BatchNorm weights add up.
This phase trains the network *through* the int8 arithmetic the TFLite
converter will produce, so the weights settle where rounding costs little:

- every Conv2D/DepthwiseConv2D + BatchNorm pair becomes one convolution with the
  BatchNorm folded in (frozen moving statistics, as the converter folds them),
  its folded weights fake-quantised per output channel, symmetric, 8 bits;
- every ReLU6 output is fake-quantised per tensor over the range the float
  model reaches on the calibration windows (what post-training calibration
  measures), the model input over [-1, 1];
- the head's Dense weights are fake-quantised per tensor; its activation (softmax over the
  labels with or without ``_background``, or per-label sigmoid) is the float model's.

Gradients pass the rounding straight through (TensorFlow's FakeQuant ops).
Afterwards the trained kernels, gammas and betas are written back into the
ordinary Keras model, which is then converted exactly as without this phase;
nothing of this module reaches the device.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

BITS = 8


def _fold_scale(gamma: Any, var: Any, eps: float) -> Any:
    return gamma * tf.math.rsqrt(var + eps)


def _quant_per_channel(w: Any) -> Any:
    """Symmetric narrow-range int8 per last axis, as the converter quantises folded weights."""
    axes = list(range(len(w.shape) - 1))
    m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(w), axis=axes), 1e-8))
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(w, -m, m, num_bits=BITS, narrow_range=True)


def _quant_tensor(w: Any) -> Any:
    m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(w)), 1e-8))
    return tf.quantization.fake_quant_with_min_max_vars(w, -m, m, num_bits=BITS, narrow_range=True)


class FoldedConv(keras.layers.Layer):  # type: ignore[misc]
    """Conv2D or DepthwiseConv2D with its BatchNorm folded in and its weights fake-quantised."""

    def __init__(self, conv: Any, norm: Any, **kwargs: Any) -> None:
        super().__init__(name=f"q_{conv.name}", **kwargs)
        self.depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)
        self.strides, self.padding = tuple(conv.strides), conv.padding.upper()
        self.eps = float(norm.epsilon)
        self.kernel = self.add_weight(shape=tuple(conv.kernel.shape), name="kernel", initializer="zeros")
        self.kernel.assign(np.asarray(conv.kernel))
        c = int(norm.gamma.shape[0])
        self.gamma = self.add_weight(shape=(c,), name="gamma", initializer="ones")
        self.beta = self.add_weight(shape=(c,), name="beta", initializer="zeros")
        self.mean = self.add_weight(shape=(c,), name="mean", initializer="zeros", trainable=False)
        self.var = self.add_weight(shape=(c,), name="var", initializer="ones", trainable=False)
        for mine, theirs in (
            (self.gamma, norm.gamma), (self.beta, norm.beta),
            (self.mean, norm.moving_mean), (self.var, norm.moving_variance),
        ):  # fmt: skip
            mine.assign(np.asarray(theirs))

    def call(self, x: Any) -> Any:
        k = _fold_scale(self.gamma, self.var, self.eps)
        bias = self.beta - self.mean * k
        if self.depthwise:  # (kh, kw, channels, 1): quantised per channel = axis 2
            w = tf.transpose(self.kernel, (0, 1, 3, 2)) * k
            w = tf.transpose(_quant_per_channel(w), (0, 1, 3, 2))
            y = tf.nn.depthwise_conv2d(x, w, (1, *self.strides, 1), self.padding)
        else:
            w = _quant_per_channel(self.kernel * k)
            y = tf.nn.conv2d(x, w, (1, *self.strides, 1), self.padding)
        return y + bias

    def write_back(self, conv: Any, norm: Any) -> None:
        conv.kernel.assign(np.asarray(self.kernel))
        norm.gamma.assign(np.asarray(self.gamma))
        norm.beta.assign(np.asarray(self.beta))


class ActQuant(keras.layers.Layer):  # type: ignore[misc]
    """Per-tensor fake quantisation over a fixed calibrated range (ReLU6 clip included when lo == 0)."""

    def __init__(self, lo: float, hi: float, name: str, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.lo, self.hi = float(min(lo, 0.0)), float(max(hi, lo + 1e-6, 1e-6))

    def call(self, x: Any) -> Any:
        return tf.quantization.fake_quant_with_min_max_args(x, min=self.lo, max=self.hi, num_bits=BITS)


class QuantDense(keras.layers.Layer):  # type: ignore[misc]
    """The head's Dense with per-tensor fake-quantised weights and its own activation (softmax or sigmoid)."""

    def __init__(self, dense: Any, **kwargs: Any) -> None:
        super().__init__(name=f"q_{dense.name}", **kwargs)
        self.activation = dense.activation
        self.kernel = self.add_weight(shape=tuple(dense.kernel.shape), name="kernel", initializer="zeros")
        self.bias = self.add_weight(shape=tuple(dense.bias.shape), name="bias", initializer="zeros")
        self.kernel.assign(np.asarray(dense.kernel))
        self.bias.assign(np.asarray(dense.bias))

    def call(self, x: Any) -> Any:
        return self.activation(tf.matmul(x, _quant_tensor(self.kernel)) + self.bias)

    def write_back(self, dense: Any) -> None:
        dense.kernel.assign(np.asarray(self.kernel))
        dense.bias.assign(np.asarray(self.bias))


def activation_ranges(model: Any, inputs: np.ndarray, base_name: str = "base") -> dict[str, tuple[float, float]]:
    """Per-tensor (min, max) of every ReLU output of the base on ``inputs``."""
    base = model.get_layer(base_name)
    relus = [layer for layer in base.layers if isinstance(layer, keras.layers.ReLU)]
    probe = keras.Model(base.inputs, [layer.output for layer in relus])
    pre = [layer for layer in model.layers[: model.layers.index(base)] if not layer.weights][1:]
    ranges = {layer.name: (0.0, 0.0) for layer in relus}
    for i in range(0, len(inputs), 64):
        x = inputs[i : i + 64]
        for layer in pre:
            x = layer(x)
        for layer, out in zip(relus, probe(x, training=False), strict=True):
            a = np.asarray(out)
            lo, hi = ranges[layer.name]
            ranges[layer.name] = (min(lo, float(a.min())), max(hi, float(a.max())))
    return ranges


def build(model: Any, ranges: dict[str, tuple[float, float]], base_name: str = "base") -> tuple[Any, list[Any]]:
    """The fake-quantised twin of ``model`` and the list of (quantised layer, originals) to write back."""
    base = model.get_layer(base_name)
    inputs = keras.Input(model.inputs[0].shape[1:], name="window")
    x = ActQuant(-1.0, 1.0, name="q_input")(inputs)
    pairs: list[Any] = []
    for layer in model.layers[1:]:
        if layer is base:
            x = _base(base, x, ranges, pairs)
        elif isinstance(layer, keras.layers.Dense):
            q = QuantDense(layer)
            pairs.append((q, (layer,)))
            x = q(x)
        else:  # upsampling, pooling, dropout: no weights
            x = layer(x)
    return keras.Model(inputs, x, name="qat"), pairs


def _base(base: Any, x: Any, ranges: dict[str, tuple[float, float]], pairs: list[Any]) -> Any:
    layers = base.layers[1:]
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            norm = layers[i + 1]
            if not isinstance(norm, keras.layers.BatchNormalization):
                raise ValueError(f"{layer.name}: expected a BatchNormalization after it, got {norm.name}")
            q = FoldedConv(layer, norm)
            pairs.append((q, (layer, norm)))
            x = q(x)
            i += 2
        elif isinstance(layer, keras.layers.ReLU):
            lo, hi = ranges[layer.name]
            x = ActQuant(lo, min(hi, float(layer.max_value or hi)), name=f"q_{layer.name}")(layer(x))
            i += 1
        elif not layer.weights:
            x = layer(x)
            i += 1
        else:
            raise ValueError(f"quantisation-aware training supports MobileNet v1 only; cannot handle {layer.name}")
    return x


def write_back(pairs: list[Any]) -> None:
    """Copy the trained weights into the original layers."""
    for q, originals in pairs:
        q.write_back(*originals)
