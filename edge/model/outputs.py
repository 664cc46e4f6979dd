"""A model's output tensors: how one is quantised, and telling two apart.

A model has one output (its labels' scores) or two (its labels' and the 521 AudioSet
classes', edge/model/audioset.py).  The TFLite converter orders outputs as it likes
(a two-output Keras model came out AudioSet first here), so they are told apart by
size, never by position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge.schema import setting

Detail = Mapping[str, Any]
"""One entry of the interpreter's ``get_output_details()``."""


@dataclass(frozen=True, kw_only=True)
class OutputSpec:
    """A score tensor: float32 probabilities or int8 codes."""

    dtype: Literal["float32", "int8"] = "float32"
    scale: float = setting(1.0, lo=1e-12, hi=1e6, unit="int8 step")
    zero_point: int = setting(0, lo=-128, hi=127, unit="int8 code of 0.0")


class Dequantiser:
    """Output codes -> float32 scores, with the constants made once (it runs every hop)."""

    def __init__(self, spec: OutputSpec) -> None:
        self._int8 = spec.dtype == "int8"
        self._scale, self._zero = np.float32(spec.scale), np.float32(spec.zero_point)

    def __call__(self, raw: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """``raw`` as the model gives it, dequantised (a float32 model's scores as they are)."""
        if self._int8:
            scores: npt.NDArray[np.float32] = (raw.astype(np.float32) - self._zero) * self._scale
            return scores
        return raw.astype(np.float32, copy=False)


def size_of(detail: Detail) -> int:
    """Values in one output tensor."""
    return int(np.prod(detail["shape"]))


def describe(detail: Detail) -> str:
    """'<dtype> (scale, zero point)' of an output tensor, for error messages."""
    scale, zero = detail["quantization"]
    return f"{np.dtype(detail['dtype']).name} ({scale:g}, {zero})"


def by_size(details: Sequence[Detail], size: int) -> list[Detail]:
    """The outputs holding exactly ``size`` values."""
    return [d for d in details if size_of(d) == size]


def matches(detail: Detail, spec: OutputSpec) -> bool:
    """True when the tensor has the spec's dtype and, for int8, its scale and zero point."""
    if np.dtype(detail["dtype"]).name != spec.dtype:
        return False
    if spec.dtype == "float32":
        return True
    scale, zero = detail["quantization"]
    return bool(np.isclose(scale, spec.scale, rtol=1e-6)) and int(zero) == spec.zero_point


def spec_of(detail: Detail) -> OutputSpec:
    """What a manifest says of an interpreter's output tensor (training writes it into the bundle)."""
    dtype = np.dtype(detail["dtype"]).name
    if dtype != "int8":
        return OutputSpec(dtype="float32")
    scale, zero = detail["quantization"]
    return OutputSpec(dtype="int8", scale=float(scale), zero_point=int(zero))


def logit_scale(interpreter: Any, detail: Detail) -> float | None:
    """The int8 step of the logit an output is the sigmoid of: the input scale of the ``LOGISTIC`` op that
    writes it.  None when another op writes it, the logit is not int8, or the runtime cannot list its ops.

    One step of that logit moves a mid-range score by many output steps (a quarter of it: 21 of 256 at the
    AudioSet head's 0.334), and int8 kernels differ by a step or two of it (edge/model/selftest.py)."""
    ops = getattr(interpreter, "_get_ops_details", None)
    if ops is None:
        return None
    try:
        found = [op for op in ops() if detail["index"] in op["outputs"] and op["op_name"] == "LOGISTIC"]
        if len(found) != 1:  # a delegate's node writes it too; the graph's own op is what counts
            return None
        index = int(found[0]["inputs"][0])
        logit = next(t for t in interpreter.get_tensor_details() if t["index"] == index)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError, RuntimeError, StopIteration):
        return None
    scale = float(logit["quantization"][0])
    return scale if np.dtype(logit["dtype"]) == np.int8 and scale > 0 else None
