"""Keras model -> TFLite bytes (float32 or full-integer int8) -> bundle.

The conversion goes through ``TFLiteConverter.from_keras_model``: the
``export(..., "tf_saved_model")`` + ``from_saved_model`` path converts without
error but can trace BatchNorm in training mode (see docs/training.md), so
:func:`check_ops` rejects graphs that carry training-only ops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from edge import features
from edge.features import FeatureParams, InputSpec
from edge.model.outputs import OutputSpec

_LOGGER = logging.getLogger(__name__)

FORBIDDEN_OPS = ("ASSIGN_VARIABLE", "VAR_HANDLE", "READ_VARIABLE", "FlexDelegate")


def to_tflite(
    model: Any,
    representative: Callable[[], Iterable[np.ndarray]] | None = None,
) -> bytes:
    """Convert ``model``; with ``representative`` (float inputs) make it all-int8."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

        def dataset() -> Iterator[list[np.ndarray]]:
            for x in representative():
                yield [np.asarray(x, dtype=np.float32)]

        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    data: bytes = converter.convert()
    check_ops(data)
    return data


def op_names(model_bytes: bytes) -> list[str]:
    """Builtin/custom op names used by a TFLite flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    names = []
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for code in m.operatorCodes:
        op = max(code.builtinCode, code.deprecatedBuiltinCode)
        names.append(code.customCode.decode() if code.customCode else builtin.get(op, str(op)))
    return names


def check_ops(model_bytes: bytes) -> None:
    """Refuse graphs with training-only or non-builtin ops."""
    bad = sorted({n for n in op_names(model_bytes) if any(f in n for f in FORBIDDEN_OPS)})
    if bad:
        raise ValueError(f"converted model contains training-only ops: {', '.join(bad)}")


def int8_input_spec(
    model_bytes: bytes, base: InputSpec, n_scores: int | None = None
) -> tuple[InputSpec, dict[str, Any]]:
    """Read the input/output quantisation the converter chose (the output of ``n_scores`` values, else the first)."""
    from edge.model.outputs import by_size
    from edge.model.runtime import interpreter_class

    cls, _ = interpreter_class()
    interp = cls(model_content=model_bytes)
    outputs = interp.get_output_details()
    found = by_size(outputs, n_scores) if n_scores is not None else []
    inp, out = interp.get_input_details()[0], (found or outputs)[0]
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    dtype = np.dtype(inp["dtype"]).name
    spec = InputSpec(
        frames=base.frames,
        bands=base.bands,
        channels=base.channels,
        channel_mode=base.channel_mode,
        dtype=dtype,
        scale=float(in_scale) if dtype == "int8" else 1.0,
        zero_point=int(in_zero) if dtype == "int8" else 0,
    )
    output = {
        "dtype": np.dtype(out["dtype"]).name,
        "scale": float(out_scale) if np.dtype(out["dtype"]).name == "int8" else 1.0,
        "zero_point": int(out_zero) if np.dtype(out["dtype"]).name == "int8" else 0,
    }
    return spec, output


def audioset_output(model_bytes: bytes) -> OutputSpec | None:
    """The quantisation of the model's 521-score AudioSet output (None: the model has none)."""
    from edge.model.audioset import AUDIOSET_CLASSES
    from edge.model.outputs import by_size, spec_of
    from edge.model.runtime import interpreter_class

    cls, _ = interpreter_class()
    found = by_size(cls(model_content=model_bytes).get_output_details(), AUDIOSET_CLASSES)
    return spec_of(found[0]) if len(found) == 1 else None


def calibration_inputs(windows: Iterable[np.ndarray], params: FeatureParams, spec: InputSpec) -> Iterator[np.ndarray]:
    """Float model inputs for calibration, made by the front end's own mapping."""
    for w in windows:
        yield features.normalise(w, params, spec)


FLOAT_FILE, INT8_FILE = "model_float.tflite", "model_int8.tflite"


def calibration_windows(
    frames: list[np.ndarray], clips: Iterable[int], window: int, params: FeatureParams, count: int, seed: int
) -> list[np.ndarray]:
    """``count`` un-augmented windows from ``clips`` (training clips only), skipping digital silence."""
    from training.data.augment import active_ends

    rng = np.random.default_rng(seed)
    pool = list(clips)
    order = rng.permutation(len(pool))
    out = []
    for i in range(count):
        c = pool[order[i % len(pool)]]
        ends = active_ends(frames[c], window, params.db_floor)
        out.append(features.window_at(frames[c], int(rng.choice(ends)), window, params))
    return out


def verify_loads(model_bytes: bytes) -> str:
    """Load and run the model once in the device runtime; return the runtime's name."""
    from edge.model.runtime import interpreter_class

    cls, runtime = interpreter_class()
    interp = cls(model_content=model_bytes)
    interp.allocate_tensors()
    detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
    interp.invoke()
    return str(runtime)


def export_pair(
    model: Any, windows: list[np.ndarray], params: FeatureParams, spec: InputSpec, int8_model: Any | None = None
) -> tuple[bytes, bytes]:
    """(float32, int8) TFLite bytes; int8 (from ``int8_model``, e.g. quantisation-aware weights,
    else ``model``) calibrated on ``windows`` via the front end's mapping."""
    float_bytes = to_tflite(model)
    source = model if int8_model is None else int8_model
    int8_bytes = to_tflite(source, lambda: calibration_inputs(windows, params, spec))
    runtime = verify_loads(int8_bytes)
    _LOGGER.info("int8 model loads and runs in %s", runtime)
    return float_bytes, int8_bytes
