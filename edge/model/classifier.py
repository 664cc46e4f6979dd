"""Run a bundle's model: the interpreter is created once, tensors are reused."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from edge import features
from edge.model.bundle import Bundle, BundleError
from edge.model.runtime import interpreter_class

_LOGGER = logging.getLogger(__name__)


class Classifier:
    """Scores for one window of dB frames, through the bundle's TFLite model."""

    def __init__(self, bundle: Bundle, threads: int = 1) -> None:
        cls, self.runtime = interpreter_class()
        self.bundle = bundle
        self.manifest = bundle.manifest
        try:
            self._interp = cls(model_content=bundle.model, num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{bundle.path}: model does not load: {exc}") from None
        self._input = self._interp.get_input_details()[0]
        self._output = self._interp.get_output_details()[0]
        self._check_tensors()
        out = self.manifest.output
        background = set(self.manifest.background_labels)
        self._keep = np.array([i for i, x in enumerate(self.manifest.labels) if x not in background])
        self._out_scale, self._out_zero = np.float32(out.scale), np.float32(out.zero_point)

    def _check_tensors(self) -> None:
        spec, name = self.manifest.input, self.bundle.path
        shape = tuple(int(d) for d in self._input["shape"])
        if shape != spec.shape:
            raise BundleError(f"{name}: model input shape {list(shape)} != manifest {list(spec.shape)}")
        if np.dtype(self._input["dtype"]).name != spec.dtype:
            raise BundleError(
                f"{name}: model input dtype {np.dtype(self._input['dtype']).name} != manifest {spec.dtype}"
            )
        if spec.dtype == "int8":
            scale, zero = self._input["quantization"]
            if not np.isclose(scale, spec.scale, rtol=1e-6) or zero != spec.zero_point:
                raise BundleError(f"{name}: model input quantisation ({scale}, {zero}) != manifest")
        n_out = int(np.prod(self._output["shape"]))
        if n_out != len(self.manifest.labels):
            raise BundleError(
                f"{name}: model has {n_out} outputs but the manifest lists {len(self.manifest.labels)} labels"
            )
        if np.dtype(self._output["dtype"]).name != self.manifest.output.dtype:
            raise BundleError(f"{name}: model output dtype != manifest {self.manifest.output.dtype}")

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels that raise events (background outputs left out), in score order."""
        return self.manifest.event_labels

    def scores(self, window_db: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Scores (0..1) of :attr:`labels` for a ``(window_frames, n_bands)`` dB window."""
        tensor = features.to_input(window_db, self.manifest.features, self.manifest.input)
        kept: npt.NDArray[np.float32] = self.invoke(tensor)[self._keep]
        return kept

    def raw(self, tensor: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Run one prepared input tensor; the output tensor as the model gives it."""
        self._interp.set_tensor(self._input["index"], tensor)
        self._interp.invoke()
        out: npt.NDArray[Any] = self._interp.get_tensor(self._output["index"])
        return out.reshape(-1)

    def invoke(self, tensor: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Run one prepared input tensor and return every output, dequantised (background ones too)."""
        raw = self.raw(tensor)
        if self.manifest.output.dtype == "int8":
            return (raw.astype(np.float32) - self._out_zero) * self._out_scale
        return raw.astype(np.float32, copy=False)
