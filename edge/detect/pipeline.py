"""The worker's inner loop: samples -> front end -> window ring -> model -> events.

Each incoming block is cut at the exact sample where the frame of the next
decision completes, so decisions fall where :func:`edge.features.window_ends`
puts them (frame counts ``t >= window`` with ``t % hop == 0``; a stream shorter
than one window gets one decision at its end, see :meth:`Pipeline.finish`)
whatever the block sizes: ``auricle classify`` therefore reproduces the clip
aggregation used in training.  The last ``window`` frames live in a doubled
ring so the model reads a contiguous view without copying.

One clock, the samples: every decision is timed by its stream offset
(absolute sample count / rate, never reset) and the event detector runs on
those offsets, so events do not depend on how fast audio arrives.  Epoch times
(``t`` in payloads) are ``anchor + offset``; the anchor is the first block's
time.  A live source (``live=True``, the microphone) re-anchors when its block
times stray more than :data:`REANCHOR_S` from the sample clock (dropped blocks,
device clock drift) and counts it in ``stats.reanchors``; file and stdin
sources never re-anchor.

Per decision (a "hop"), the RMS level of the hop's samples is always computed
and handed to the sink; hops below ``gate_dbfs`` skip inference (counted) and
feed zeros to the event detector, so running events still end on time.
Non-finite scores (a broken model) are counted and treated as zeros.

:meth:`Pipeline.swap` changes the model between hops without losing audio:
running events are ended, and either the window carries over at once (same
front end, a window no longer than the current one) or a second front end
warms up on the incoming samples while the current model keeps deciding, and
takes over at its first full window.  Either way no hop is skipped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.detect.clips import ClipRecorder
from edge.detect.probation import Probation
from edge.detect.stats import PipelineStats
from edge.features import FeatureParams, FrontEnd
from edge.model.classifier import Classifier

_LOGGER = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]
ScoresHook = Callable[[float, Floats], None]
REANCHOR_S = 0.1
"""Block times further than this from the sample clock re-anchor it (seconds)."""


class Detector(Protocol):
    """The event detector as the pipeline uses it (edge.detect.events.EventDetector)."""

    def update(self, scores: npt.NDArray[np.floating], t: float) -> list[Any]: ...

    def flush(self, t: float) -> list[Any]: ...


class Sink(Protocol):
    """Where results go (edge.publish.mqtt's Publisher satisfies this)."""

    def publish_event(self, event: Any) -> None: ...

    def publish_state(self, label: str, on: bool) -> None: ...

    def publish_scores(self, t: float, offset_s: float, top: Any) -> None: ...

    def publish_level(self, t: float, offset_s: float, dbfs: float) -> None: ...


@dataclass(frozen=True)
class Swap:
    """A model to switch to between hops (see :meth:`Pipeline.swap`)."""

    classifier: Classifier
    detector: Detector | None
    hop_frames: int | None = None
    """Frames between inferences; None = the bundle's."""
    on_switch: Callable[[], None] | None = None
    """Called on the worker thread once the old model's events are ended, before the new model's first hop."""


class _Window:
    """One model's view of the stream: front end, window ring and decision cadence (frames since reset)."""

    def __init__(self, classifier: Classifier, hop_frames: int | None) -> None:
        m = classifier.manifest
        self.params: FeatureParams = m.features
        self.size = m.window_frames
        self.hop = hop_frames or m.hop_frames
        self.front = FrontEnd(self.params)
        self.ring = np.empty((2 * self.size, self.params.n_bands), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self.front.reset()
        self.ring.fill(self.params.db_floor)
        self.frames = 0
        self.samples = 0
        self.next_end = math.ceil(self.size / self.hop) * self.hop

    def to_boundary(self) -> int:
        """Samples still needed to complete the frame of the next decision."""
        p = self.params
        return p.frames_end(self.next_end) - self.samples

    def consume(self, x: npt.NDArray[np.float64]) -> None:
        self.samples += len(x)
        w = self.size
        for frame in self.front.process_streaming(x):
            i = self.frames % w
            self.ring[i] = frame
            self.ring[i + w] = frame
            self.frames += 1

    def view(self) -> Floats:
        """The last ``size`` frames, oldest first, without copying."""
        start = self.frames % self.size
        return self.ring[start : start + self.size]

    def take_over(self, old: _Window) -> None:
        """Continue ``old``'s stream (same front end parameters): its front end, frames and latest window."""
        self.front, self.frames, self.samples = old.front, old.frames, old.samples
        rows = old.view()[-min(self.size, old.frames, old.size) :] if old.frames else old.view()[:0]
        for j, row in enumerate(rows, start=self.frames - len(rows)):
            self.ring[j % self.size] = row
            self.ring[j % self.size + self.size] = row
        self.next_end = max(math.ceil(self.size / self.hop), self.frames // self.hop + 1) * self.hop


class Pipeline:
    """Streaming classification of one audio stream; not thread-safe (one worker)."""

    def __init__(
        self,
        classifier: Classifier,
        *,
        hop_frames: int | None = None,
        gate_dbfs: float | None = None,
        detector: Detector | None = None,
        sink: Sink | None = None,
        recorder: ClipRecorder | None = None,
        on_scores: ScoresHook | None = None,
        scores_top_k: int = 0,
        live: bool = False,
    ) -> None:
        """``on_scores(offset_s, scores)`` sees every inferred hop; ``live``: see the module doc."""
        self._params = classifier.manifest.features
        self._gate = gate_dbfs
        self._sink, self._recorder = sink, recorder
        self._on_scores = on_scores
        self._scores_top_k = scores_top_k
        self._live = live
        self._origin = 0
        self._anchor_t: float | None = None
        self._anchor_n = 0
        self._warm: tuple[_Window, Swap] | None = None
        self.stats = PipelineStats()
        self.nonfinite = 0
        """Inferences whose scores were not all finite (treated as zeros)."""
        self.last_latency_s = 0.0
        """Duration of the latest inference."""
        self.probation: Probation | None = None
        """The model deciding now is on probation (set by the daemon's model slot): it sees every inference."""
        self._use(classifier, detector)
        self._win = _Window(classifier, hop_frames)
        self.reset()

    def _use(self, classifier: Classifier, detector: Detector | None) -> None:
        self._classifier = classifier
        self._detector = detector
        self._labels = classifier.labels
        self._top_k = min(self._scores_top_k, len(self._labels))
        self._zeros = np.zeros(len(self._labels), dtype=np.float32)

    def reset(self) -> None:
        """Start afresh after a worker error: new front end and window; the clock runs on."""
        self._origin += self._win.samples
        self._win.reset()
        self._sumsq = 0.0
        self._count = 0
        self._decisions = 0

    @property
    def classifier(self) -> Classifier:
        """The model deciding now."""
        return self._classifier

    @property
    def rate_hz(self) -> int:
        """The sample rate the pipeline expects."""
        return self._params.sample_rate

    @property
    def offset_s(self) -> float:
        """Seconds of audio since the stream started (the sample clock)."""
        return (self._origin + self._win.samples) / self._params.sample_rate

    def epoch_of(self, offset_s: float) -> float:
        """Epoch seconds of a stream offset, on the current anchor."""
        rate = self._params.sample_rate
        return (self._anchor_t or 0.0) + offset_s - self._anchor_n / rate

    def swap(self, swap: Swap) -> None:
        """Switch models between hops (worker thread, between :meth:`feed` calls); see the module doc."""
        params = swap.classifier.manifest.features
        if params.sample_rate != self._params.sample_rate:
            rates = f"{params.sample_rate} Hz model into a {self._params.sample_rate} Hz stream"
            raise ValueError(f"cannot swap a {rates}")
        incoming = _Window(swap.classifier, swap.hop_frames)
        if params == self._win.params and incoming.size <= self._win.size:
            self._warm = None
            incoming.take_over(self._win)
            self._switch(incoming, swap)
        else:
            self._warm = (incoming, swap)

    @property
    def swapping(self) -> bool:
        """True while a new model's front end warms up."""
        return self._warm is not None

    def _switch(self, incoming: _Window, swap: Swap) -> None:
        self._end_events(self._offset_of_last())
        self._origin += self._win.samples - incoming.samples
        self._win = incoming
        self._use(swap.classifier, swap.detector)
        if swap.on_switch is not None:
            swap.on_switch()

    def feed(self, samples: Floats, t_end: float) -> None:
        """Process one block of mono samples whose last sample is at epoch ``t_end``."""
        started = time.perf_counter()
        n = len(samples)
        if self._recorder is not None:
            self._recorder.feed(samples)
        self._anchor_to(t_end, n)
        pos = 0
        while pos < n:
            take = min(n - pos, self._win.to_boundary())
            if self._warm is not None:
                take = min(take, self._warm[0].to_boundary())
            self._consume(samples[pos : pos + take])
            pos += take
            if self._warm is not None and self._warm[0].to_boundary() == 0:
                self._switch(*self._warm)
                self._warm = None
            if self._win.to_boundary() == 0:
                self._decide(self._offset_of_last())
                self._win.next_end += self._win.hop
        self.stats.add_audio(n / self._params.sample_rate, time.perf_counter() - started)

    def _anchor_to(self, t_end: float, n: int) -> None:
        """Anchor the sample clock to the first block; a live source re-anchors when its clock disagrees."""
        rate = self._params.sample_rate
        first = self._origin + self._win.samples
        if self._anchor_t is None:
            self._anchor_t, self._anchor_n = round(t_end - (n - 1) / rate, 6), first
        elif self._live and abs(self.epoch_of((first + n - 1) / rate) - t_end) > REANCHOR_S:
            self._anchor_t, self._anchor_n = round(t_end - (n - 1) / rate, 6), first
            self.stats.reanchors += 1
            _LOGGER.info("re-anchored the sample clock to the source's (dropped audio or clock drift)")

    def _offset_of_last(self) -> float:
        """Stream seconds of the last sample consumed."""
        return (self._origin + self._win.samples - 1) / self._params.sample_rate

    def _consume(self, chunk: Floats) -> None:
        x = chunk.astype(np.float64, copy=False)
        self._sumsq += float(np.dot(x, x))
        self._count += len(x)
        self._win.consume(x)
        if self._warm is not None:
            self._warm[0].consume(x)
        self.stats.frames = self._win.frames

    def _decide(self, offset: float) -> None:
        dbfs = 10.0 * math.log10(self._sumsq / max(self._count, 1) + 1e-20)
        self._sumsq, self._count = 0.0, 0
        self._decisions += 1
        self.stats.hops += 1
        if self._sink is not None:
            self._sink.publish_level(round(self.epoch_of(offset), 6), offset, dbfs)
        if self._gate is not None and dbfs < self._gate:
            self.stats.gated += 1
            scores = self._zeros
        else:
            scores = self._infer(offset)
        if self._detector is not None:
            for event in self._detector.update(scores, offset):
                self._emit(event)

    def _infer(self, offset: float) -> Floats:
        began = time.perf_counter()
        scores = self._classifier.scores(self._win.view())
        self.last_latency_s = time.perf_counter() - began
        self.stats.add_latency(self.last_latency_s)
        if self.probation is not None:
            self.probation.observe(scores, self.last_latency_s)
        if self._on_scores is not None:
            self._on_scores(offset, scores)
        if not np.all(np.isfinite(scores)):
            self.nonfinite += 1
            return self._zeros
        if self._sink is not None and self._top_k:
            top = np.argsort(scores)[::-1][: self._top_k]
            ranked = [(self._labels[i], round(float(scores[i]), 4)) for i in top]
            self._sink.publish_scores(round(self.epoch_of(offset), 6), offset, ranked)
        return scores

    def _emit(self, event: Any) -> None:
        event = event.on_clock(self.epoch_of)
        if self._recorder is not None:
            event = self._recorder.on_event(event, self._origin + self._win.samples)
        if self._sink is not None:
            self._sink.publish_event(event)
            self._sink.publish_state(event.label, event.kind == "start")

    def _end_events(self, offset: float) -> None:
        if self._detector is not None:
            for event in self._detector.flush(offset):
                self._emit(event)

    def finish(self) -> None:
        """End of stream: the one decision of a short stream, then end running events."""
        offset = max(self._offset_of_last(), 0.0)
        if self._decisions == 0 and self._win.frames > 0:
            self._decide(offset)
        self._end_events(offset)
        if self._recorder is not None:
            self._recorder.close()
