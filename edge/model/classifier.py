"""Run a bundle's model: the interpreter is created once, tensors are reused.

A model with an AudioSet head (edge/model/audioset.py) has two outputs, told apart by
size (one score per label, 521 AudioSet scores), never by position.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge import features
from edge.learn.heads import Head
from edge.learn.personal import Personal
from edge.model.audioset import AUDIOSET_CLASSES, HeadScorer
from edge.model.bundle import Bundle, BundleError, Manifest
from edge.model.embedding import NoEmbedding
from edge.model.outputs import Dequantiser, Detail, by_size, describe, logit_scale, matches, size_of
from edge.model.runtime import Kernels, interpreter_class, runtime_line

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

    def __init__(
        self, bundle: Bundle, threads: int = 1, kernels: Kernels = "xnnpack", wrap: Callable[[Any], Any] | None = None
    ) -> None:
        """``kernels``: edge/model/runtime.py :data:`KERNELS`.  ``wrap`` is given the loaded interpreter and
        returns the one to run (training's evaluate stage remembers outputs by input: training/evaluate/recall.py)."""
        cls, self.runtime = interpreter_class(kernels)
        self.kernels = kernels
        self.bundle = bundle
        self.manifest = bundle.manifest
        try:
            interp = cls(model_content=bundle.model, num_threads=threads)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{bundle.path}: model does not load: {exc}") from None
        self._interp = interp if wrap is None else wrap(interp)
        self._input = self._interp.get_input_details()[0]
        found = _outputs(self._interp.get_output_details(), self.manifest, bundle.path)
        self._output, audioset = found.labels, found.audioset
        self._graph = (interp, audioset)  # read by the logit scales, only when a self-test asks
        self._check_tensors()
        background = set(self.manifest.background_labels)
        self._keep = np.array([i for i, x in enumerate(self.manifest.labels) if x not in background])
        self._dequantise = Dequantiser(self.manifest.output)
        head = self.manifest.audioset
        self._head = None
        if head is not None and audioset is not None:
            scorer = HeadScorer(head, self.manifest.event_labels)
            self._head = _Head(int(audioset["index"]), Dequantiser(head.output), scorer)
        emb = self.manifest.embedding
        self._embedding = None
        if emb is not None and found.embedding is not None:
            self._embedding = (int(found.embedding["index"]), Dequantiser(emb.output))
        self._personal: Personal | None = None

    def taught(self, heads: Sequence[Head]) -> Classifier:
        """This model with the device's personal heads (edge/learn/personal.py) applied to every hop: its labels
        are the model's score labels, then the new ones.  The returned classifier shares this one's interpreter
        (one worker uses either, never both); no heads gives the model as shipped."""
        if heads and self._embedding is None:
            self.embedding()  # raises NoEmbedding with its one line
        base = self.bundle.manifest
        other = copy.copy(self)
        other._personal = Personal(heads, base.score_labels, base.score_thresholds) if heads else None
        added = other._personal.added if other._personal else ()
        other.manifest = dataclasses.replace(base, taught=added)
        if other._personal is not None and other._personal.size != base.embedding.size:  # type: ignore[union-attr]
            raise NoEmbedding(
                f"personal heads read {other._personal.size} values, the model's embedding has "
                f"{base.embedding.size}: refit them for this model"  # type: ignore[union-attr]
            )
        return other

    @functools.cached_property
    def logit_scale(self) -> float | None:
        """The int8 step of the logit the label scores are the sigmoid of (None: not a sigmoid of an int8 logit).
        Read from the graph on first use (a few ms): only the self-test compares in logit steps."""
        return logit_scale(self._graph[0], self._output)

    @functools.cached_property
    def audioset_logit_scale(self) -> float | None:
        """The same for the AudioSet scores (None without them)."""
        interp, audioset = self._graph
        return None if audioset is None else logit_scale(interp, audioset)

    @property
    def personal(self) -> Personal | None:
        """The personal heads applied to every hop (None: the model as shipped)."""
        return self._personal

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
    def runtime_text(self) -> str:
        """The runtime, its release, the machine and the kernels, as ``auricle run --check``, ``model/state`` and
        ``auricle model push`` say them (which devices raise the same events: README "Supported platforms")."""
        return runtime_line(self.runtime, self.kernels)

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels of :meth:`scores`: the event labels (background outputs left out), then the optional
        AudioSet labels (``Manifest.score_labels``)."""
        return self.manifest.score_labels

    def scores(self, window_db: F32) -> F32:
        """Scores (0..1) of :attr:`labels` for a ``(window_frames, n_bands)`` dB window.

        With an AudioSet head: the event labels' scores after the veto, then the optional labels' scores.  With
        personal heads (:meth:`taught`): those, corrected and added to, then the new labels' scores.
        """
        tensor = features.to_input(window_db, self.manifest.features, self.manifest.input)
        kept: F32 = self.invoke(tensor)[self._keep]
        head = self._head
        scores = kept if head is None else head.scorer.combine(kept, self._audioset(head))
        if self._personal is None:
            return scores
        return self._personal.apply(scores, self.embedding())

    def audioset_scores(self) -> F32 | None:
        """The 521 AudioSet scores (dequantised) of the latest inference (:meth:`scores`, :meth:`invoke` or
        :meth:`raw`); None for a model without an AudioSet head."""
        return None if self._head is None else self._audioset(self._head)

    def embedding(self) -> F32:
        """The embedding (dequantised) of the latest inference; :class:`NoEmbedding` for a model without one."""
        if self._embedding is None:
            raise NoEmbedding(
                f"{self.bundle.path}: model {self.manifest.name} {self.manifest.version} has no embedding output: "
                "teaching needs a bundle that declares one (esc50 4.1.0 or later)"
            )
        index, dequantise = self._embedding
        return dequantise(self._interp.get_tensor(index).reshape(-1))

    @property
    def has_embedding(self) -> bool:
        """True when the model declares an embedding output (:meth:`embedding`)."""
        return self._embedding is not None

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


@dataclass(frozen=True)
class _Found:
    """The model's output tensors, told apart by size."""

    labels: Detail
    audioset: Detail | None
    embedding: Detail | None


def _outputs(details: Sequence[Detail], manifest: Manifest, name: str) -> _Found:
    """The label output, the AudioSet output (None without an ``audioset`` section) and the embedding output
    (None without an ``embedding`` section), told apart by size, never by position."""
    n, head, emb = len(manifest.labels), manifest.audioset, manifest.embedding
    labels = by_size(details, n)
    if head is None and emb is None:  # a one-output model as before; other outputs are not used
        return _Found(labels[0] if len(labels) == 1 else details[0], None, None)
    want = {"label scores": n} | ({"AudioSet scores": AUDIOSET_CLASSES} if head else {})
    want |= {"embedding values": emb.size} if emb else {}
    found = {what: by_size(details, size) for what, size in want.items()}
    if len(details) != len(want) or any(len(x) != 1 for x in found.values()):
        sizes = " and ".join(str(size_of(d)) for d in details)
        needed = " and ".join(f"{size} {what}" for what, size in want.items())
        section = "audioset section" if head and not emb else "embedding section" if not head else "sections"
        count = {2: "two", 3: "three"}[len(want)]
        raise BundleError(
            f"{name}: the manifest's {section} needs {count} model outputs ({needed}); the model's hold {sizes} values"
        )
    audioset = found["AudioSet scores"][0] if head else None
    if head is not None and audioset is not None and not matches(audioset, head.output):
        raise BundleError(f"{name}: the AudioSet output is {describe(audioset)}, not the manifest's audioset.output")
    embedding = found["embedding values"][0] if emb else None
    if emb is not None and embedding is not None and not matches(embedding, emb.output):
        raise BundleError(f"{name}: the embedding output is {describe(embedding)}, not the manifest's embedding.output")
    return _Found(found["label scores"][0], audioset, embedding)
