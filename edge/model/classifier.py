"""Run a bundle's model: the interpreter is created once, tensors are reused.

A model with an AudioSet head (edge/model/audioset.py) has two outputs, told apart by
size (one score per label, 521 AudioSet scores), never by position.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge import features
from edge.model.audioset import AUDIOSET_CLASSES, HeadScorer
from edge.model.bundle import Bundle, BundleError, Manifest
from edge.model.outputs import Dequantiser, Detail, by_size, describe, matches, size_of
from edge.model.runtime import interpreter_class

_LOGGER = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class _Head:
    """The AudioSet output of a loaded model and what turns it into scores."""

    index: int
    """Tensor index of the 521 scores."""
    dequantise: Dequantiser
    scorer: HeadScorer


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
        self._output, audioset = _outputs(self._interp.get_output_details(), self.manifest, bundle.path)
        self._check_tensors()
        background = set(self.manifest.background_labels)
        self._keep = np.array([i for i, x in enumerate(self.manifest.labels) if x not in background])
        self._dequantise = Dequantiser(self.manifest.output)
        head = self.manifest.audioset
        self._head = None
        if head is not None and audioset is not None:
            scorer = HeadScorer(head, self.manifest.event_labels)
            self._head = _Head(int(audioset["index"]), Dequantiser(head.output), scorer)

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
        """The labels of :meth:`scores`: the event labels (background outputs left out), then the optional
        AudioSet labels (``Manifest.score_labels``)."""
        return self.manifest.score_labels

    def scores(self, window_db: F32) -> F32:
        """Scores (0..1) of :attr:`labels` for a ``(window_frames, n_bands)`` dB window.

        With an AudioSet head: the event labels' scores after the veto, then the optional labels' scores.
        """
        tensor = features.to_input(window_db, self.manifest.features, self.manifest.input)
        kept: F32 = self.invoke(tensor)[self._keep]
        head = self._head
        if head is None:
            return kept
        return head.scorer.combine(kept, self._audioset(head))

    def audioset_scores(self) -> F32 | None:
        """The 521 AudioSet scores (dequantised) of the latest inference (:meth:`scores`, :meth:`invoke` or
        :meth:`raw`); None for a model without an AudioSet head."""
        return None if self._head is None else self._audioset(self._head)

    def _audioset(self, head: _Head) -> F32:
        return head.dequantise(self._interp.get_tensor(head.index).reshape(-1))

    def raw(self, tensor: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Run one prepared input tensor; the label output as the model gives it."""
        self._interp.set_tensor(self._input["index"], tensor)
        self._interp.invoke()
        out: npt.NDArray[Any] = self._interp.get_tensor(self._output["index"])
        return out.reshape(-1)

    def invoke(self, tensor: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Run one prepared input tensor and return every label output, dequantised (background ones too)."""
        return self._dequantise(self.raw(tensor))


def _outputs(details: Sequence[Detail], manifest: Manifest, name: str) -> tuple[Detail, Detail | None]:
    """The label output and the AudioSet output (None without an ``audioset`` section), told apart by size."""
    n, head = len(manifest.labels), manifest.audioset
    labels = by_size(details, n)
    if head is None:  # a one-output model as before; a second output is not used
        return (labels[0] if len(labels) == 1 else details[0]), None
    audioset = by_size(details, AUDIOSET_CLASSES)
    if len(details) != 2 or len(labels) != 1 or len(audioset) != 1:
        sizes = " and ".join(str(size_of(d)) for d in details)
        raise BundleError(
            f"{name}: the manifest's audioset section needs two model outputs ({n} label scores and "
            f"{AUDIOSET_CLASSES} AudioSet scores); the model's hold {sizes} values"
        )
    if not matches(audioset[0], head.output):
        raise BundleError(f"{name}: the AudioSet output is {describe(audioset[0])}, not the manifest's audioset.output")
    return labels[0], audioset[0]
