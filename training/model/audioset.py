"""YAMNet's network in Keras 3, started from the weights of the int8 TFLite peer (training side only).

Layout (``BLOCKS``): MobileNetV1 at alpha 1.0 as YAMNet lays it out for a 96x64 log-mel patch, a 3x3
stride-2 convolution (32) and 13 depthwise-separable blocks, 'same' padding, then global average
pooling to the 1024-d ``embedding``, 521 ``audioset_logits`` and sigmoid ``audioset`` scores.
Layer names are stable (``layer1_conv``, ``layerN_depthwise``, ``layerN_pointwise``, each with
``_bn`` and ``_relu``) so that training can freeze lower blocks, cache their activations, or add a
head on ``embedding``.

Weights: no float YAMNet exists here, so :func:`read_yamnet_weights` dequantises a TFLite file's
weights (per-channel or per-tensor scales) found in op order, checked against ``BLOCKS``' shapes.
``yamnet_waveform_in.tflite`` is the one to use: it is YAMNet as TensorFlow publishes it (fused
ReLU; activations stay float, so its scores can check the port), its stem and first two depthwise
kernels are stored as float, the pointwise and dense kernels as per-channel int8 and the later
depthwise kernels as per-tensor int8.  The two peer files are *different networks*:
``yamnet_spectra_in.tflite`` (the full-int8 export Frigate runs) has other weights and ReLU6; the
reader tells the activation from the converter's names for the fused outputs (``.../Relu6``).

Batch norm is folded into those weights.  Each convolution is built as Conv (no bias) +
BatchNormalization holding the folded bias as ``beta``, with gamma 1, moving mean 0 and moving
variance ``1 - epsilon``, so that ``var + epsilon`` is exactly 1.0 in float32 and the layer is
``x + bias`` up to float32 rounding (TensorFlow's rsqrt of 1.0 may be one ulp off: a couple of ulps of
``x``, tests/training/test_audioset_port.py).  Why not plain biases: the layout is then YAMNet's own (conv,
BN, ReLU), BN's scale and shift can be fine-tuned, and the converter folds BN back at export, so the device pays
nothing.  Fine-tune it in inference mode (``training=False``, as Keras' transfer-learning guide
says): in training mode BN would normalise by batch statistics that the folded weights never had.

Port check (tests/training/test_audioset_port.py, 12 ESC-50 windows): fed the log-mel patch of
``yamnet_waveform_in.tflite``, the Keras scores match that file's to 0.019 at most, 1.1e-4 on
average, same top-1 on all (50 windows: 0.036, 7e-5, 50/50).  The float layers agree to 1e-6; the
rest is the file's hybrid int8 kernels quantising activations on the fly (measured with
ai-edge-litert's default XNNPACK kernels; its reference kernels are coarser, up to 0.04).

Input: the front end's dB frames (``training.model.yamnet.YAMNET_FEATURES``), turned into YAMNet's
natural-log values by one ``Rescaling`` by ``ln(10)/20``; ``input_db_scale=None`` takes YAMNet's
``log(mel + 0.001)`` patch as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge.model.runtime import interpreter_class
from training.model.yamnet import BANDS, DB_TO_LN, PATCH_FRAMES, PEERS

_LOGGER = logging.getLogger(__name__)

WAVEFORM_MODEL = PEERS / "yamnet_waveform_in.tflite"
STEM_FILTERS = 32
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip
"""(pointwise filters, depthwise stride) of blocks ``layer2``..``layer14``."""
N_CLASSES = 521
EMBEDDING, LOGITS, SCORES = "embedding", "audioset_logits", "audioset"
BN_EPSILON = 1e-4
"""YAMNet's batch-norm epsilon."""

Floats = npt.NDArray[np.float32]
Activation = Literal["relu", "relu6"]
_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass(frozen=True)
class LayerWeights:
    """One layer's dequantised weights in Keras' layout."""

    name: str
    """Keras layer name, e.g. ``layer3_depthwise``."""
    kernel: Floats
    """Conv (kh, kw, in, out), depthwise (kh, kw, channels, 1) or dense (in, out)."""
    bias: Floats
    """(out,): the folded batch-norm shift (or the dense bias)."""


@dataclass(frozen=True)
class YamnetWeights:
    """Every weight of YAMNet's network, in network order."""

    layers: tuple[LayerWeights, ...]
    """27 convolutions, then ``audioset_logits``."""
    activation: Activation
    """The fused activation of every convolution."""
    source: Path


def conv_names() -> list[str]:
    """Names of the 27 convolutions in network order."""
    names = ["layer1_conv"]
    for block in range(2, len(BLOCKS) + 2):
        names += [f"layer{block}_depthwise", f"layer{block}_pointwise"]
    return names


def tflite_shapes() -> list[tuple[int, ...]]:
    """TFLite weight shapes of the 27 convolutions (OHWI; depthwise 1HWC), then the dense layer."""
    shapes: list[tuple[int, ...]] = [(STEM_FILTERS, 3, 3, 1)]
    channels = STEM_FILTERS
    for filters, _ in BLOCKS:
        shapes += [(1, 3, 3, channels), (filters, 1, 1, channels)]
        channels = filters
    return [*shapes, (N_CLASSES, channels)]


def read_yamnet_weights(path: Path) -> YamnetWeights:
    """Dequantised weights of a YAMNet TFLite file (either peer), checked against YAMNet's layout."""
    graph = _Graph(path)
    convs = graph.ops(*_CONV_OPS)
    dense = graph.ops("FULLY_CONNECTED")[-1:]  # the waveform file computes its DFT with FC ops before these
    _check_layout(path, [graph.shape(int(op["inputs"][1])) for op in convs + dense])
    layers = [
        LayerWeights(name, _to_keras(graph.value(int(op["inputs"][1])), op["op_name"]), graph.bias(op))
        for name, op in zip([*conv_names(), LOGITS], convs + dense, strict=True)
    ]
    activation = _activation([graph.name(int(op["outputs"][0])) for op in convs], path)
    _LOGGER.info("read YAMNet weights (%s) from %s", activation, path)
    return YamnetWeights(layers=tuple(layers), activation=activation, source=path)


def _check_layout(path: Path, found: list[tuple[int, ...]]) -> None:
    """Raise naming ``path`` and the first layer whose weights are not YAMNet's."""
    expected = tflite_shapes()
    if len(found) != len(expected):
        raise ValueError(f"{path}: not YAMNet's layout: {len(found)} conv + dense layers, expected {len(expected)}")
    for name, got, want in zip([*conv_names(), LOGITS], found, expected, strict=True):
        if got != want:
            raise ValueError(f"{path}: not YAMNet's layout: {name} weights {got}, expected {want}")


def build_yamnet(
    weights_path: Path | None,
    *,
    frames: int = PATCH_FRAMES,
    bands: int = BANDS,
    input_db_scale: float | None = DB_TO_LN,
) -> Any:
    """YAMNet's network as a Keras model: ``(frames, bands)`` input -> 521 sigmoid ``audioset`` scores.

    ``weights_path``: a YAMNet TFLite file to start from (None: random initialisation, ReLU).
    ``input_db_scale``: input units to YAMNet's natural log (``ln(10)/20`` for magnitude dB, the
    default); None takes YAMNet's ``log(mel + 0.001)`` patch directly.
    """
    import keras

    weights = read_yamnet_weights(weights_path) if weights_path is not None else None
    activation: Activation = weights.activation if weights is not None else "relu"
    inputs = keras.Input((frames, bands), name="log_mel_db" if input_db_scale is not None else "log_mel")
    x = inputs
    if input_db_scale is not None:
        x = keras.layers.Rescaling(input_db_scale, name="db_to_ln")(x)
    x = keras.layers.Reshape((frames, bands, 1), name="patch")(x)
    x = _conv_bn_act(keras.layers.Conv2D(STEM_FILTERS, 3, 2, padding="same", use_bias=False, name="layer1_conv"), x)
    for block, (filters, stride) in enumerate(BLOCKS, start=2):
        x = _separable(x, block, filters, stride, activation)
    x = keras.layers.GlobalAveragePooling2D(name=EMBEDDING)(x)
    logits = keras.layers.Dense(N_CLASSES, name=LOGITS)(x)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid", name=SCORES)(logits), name="yamnet")
    if weights is not None:
        set_yamnet_weights(model, weights)
    return model


def set_yamnet_weights(model: Any, weights: YamnetWeights) -> None:
    """Load ``weights`` into a model from :func:`build_yamnet`; each BN becomes ``x + bias`` (to float32 rounding)."""
    for layer in weights.layers:
        if layer.name == LOGITS:
            model.get_layer(LOGITS).set_weights([layer.kernel, layer.bias])
            continue
        model.get_layer(layer.name).set_weights([layer.kernel])
        model.get_layer(f"{layer.name}_bn").set_weights(_identity_bn(layer.bias))


def _identity_bn(bias: Floats) -> list[Floats]:
    """gamma, beta, moving mean, moving variance of a BN that adds ``bias`` and nothing else."""
    variance = np.float32(1.0 - BN_EPSILON)
    if variance + np.float32(BN_EPSILON) != np.float32(1.0):
        raise ValueError(f"BN_EPSILON {BN_EPSILON}: 1 - eps + eps is not exactly 1 in float32")
    ones = np.ones_like(bias, dtype=np.float32)
    return [ones, bias.astype(np.float32), np.zeros_like(ones), ones * variance]


def _separable(x: Any, block: int, filters: int, stride: int, activation: Activation) -> Any:
    import keras

    name = f"layer{block}"
    depthwise = keras.layers.DepthwiseConv2D(3, stride, padding="same", use_bias=False, name=f"{name}_depthwise")
    x = _conv_bn_act(depthwise, x, activation)
    pointwise = keras.layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{name}_pointwise")
    return _conv_bn_act(pointwise, x, activation)


def _conv_bn_act(conv: Any, x: Any, activation: Activation = "relu") -> Any:
    import keras

    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{conv.name}_bn")(conv(x))
    max_value = 6.0 if activation == "relu6" else None
    return keras.layers.ReLU(max_value=max_value, name=f"{conv.name}_relu")(x)


class _Graph:
    """A TFLite file's constant tensors, read through the interpreter, in op order."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"YAMNet weights: {path}: no such file")
        cls, _ = interpreter_class()
        self._interp = cls(model_path=str(path))
        self._interp.allocate_tensors()
        self._tensors = {d["index"]: d for d in self._interp.get_tensor_details()}
        if not hasattr(self._interp, "_get_ops_details"):  # private, but ai-edge-litert and tf.lite have it
            raise RuntimeError(f"{path}: this TFLite runtime cannot list a model's ops (need ai-edge-litert)")
        self._ops = [op for op in self._interp._get_ops_details() if op["op_name"] != "DELEGATE"]
        self._producers = {int(i): op for op in self._ops for i in op["outputs"]}

    def ops(self, *kinds: str) -> list[dict[str, Any]]:
        """The ops of these kinds, in execution order."""
        return [op for op in self._ops if op["op_name"] in kinds]

    def shape(self, index: int) -> tuple[int, ...]:
        return tuple(int(n) for n in self._tensors[index]["shape"])

    def name(self, index: int) -> str:
        return str(self._tensors[index]["name"])

    def value(self, index: int) -> npt.NDArray[np.float64]:
        """A constant tensor as float64, dequantised (through a DEQUANTIZE op when the graph has one)."""
        op = self._producers.get(index)
        if op is not None and op["op_name"] == "DEQUANTIZE":  # filled only at invoke: read its int8 input
            return self.value(int(op["inputs"][0]))
        return _dequantise(self._interp.get_tensor(index), self._tensors[index])

    def bias(self, op: dict[str, Any]) -> Floats:
        return self.value(int(op["inputs"][2])).astype(np.float32)


def _dequantise(values: npt.NDArray[Any], detail: dict[str, Any]) -> npt.NDArray[np.float64]:
    """Float weights as they are; int8/int32 with per-channel or per-tensor scales and zero points."""
    quant = detail["quantization_parameters"]
    scales = np.asarray(quant["scales"], dtype=np.float64)
    if np.issubdtype(values.dtype, np.floating) or scales.size == 0:
        return values.astype(np.float64)
    shape = [1] * values.ndim
    if scales.size > 1:
        shape[quant["quantized_dimension"]] = scales.size
    zero_points = np.asarray(quant["zero_points"], dtype=np.float64)
    zero = zero_points.reshape(shape) if zero_points.size == scales.size else zero_points.reshape(-1)[:1]
    return (values.astype(np.float64) - zero) * scales.reshape(shape)


def _to_keras(kernel: npt.NDArray[np.float64], op_name: str) -> Floats:
    """TFLite layout -> Keras: conv OHWI -> HWIO, depthwise 1HWC -> HWC1, dense (out, in) -> (in, out)."""
    if op_name == "FULLY_CONNECTED":
        return kernel.T.astype(np.float32)
    if op_name == "DEPTHWISE_CONV_2D":
        return np.asarray(kernel[0][..., None], dtype=np.float32)
    return kernel.transpose(1, 2, 3, 0).astype(np.float32)


def _activation(names: list[str], path: Path) -> Activation:
    """ReLU or ReLU6, read from the converter's names for the fused activation outputs."""
    kinds = {"relu6" if "relu6" in name.lower() else "relu" if "relu" in name.lower() else "?" for name in names}
    if len(kinds) != 1 or "?" in kinds:
        raise ValueError(f"{path}: cannot tell the activation from the conv outputs' names ({sorted(kinds)})")
    return "relu6" if kinds == {"relu6"} else "relu"
