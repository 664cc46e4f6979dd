"""The worker's inner loop: samples -> front end -> window ring -> model -> events.

Each incoming block is cut at the exact sample where the frame of the next
decision completes, so decisions fall where :func:`edge.features.window_ends`
puts them (frame counts ``t >= window`` with ``t % hop == 0``; a stream shorter
than one window gets one decision at its end, see :meth:`Pipeline.finish`)
whatever the block sizes: ``auricle classify`` therefore reproduces the clip
aggregation used in training.  The last ``window`` frames live in a doubled
ring so the model reads a contiguous view without copying.

Per decision (a "hop"), the RMS level of the hop's samples is always computed
and handed to the sink; hops below ``gate_dbfs`` skip inference (counted) and
feed zeros to the event detector, so running events still end on time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.features import FrontEnd
from edge.model import Classifier
from edge.stats import PipelineStats

_LOGGER = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]
ScoresHook = Callable[[float, Floats], None]
REANCHOR_S = 0.1
"""Block times further than this from the sample clock re-anchor it (seconds)."""


class Detector(Protocol):
    """The event detector as the pipeline uses it (edge.events.EventDetector)."""

    def update(self, scores: npt.NDArray[np.floating], t: float) -> list[Any]: ...

    def flush(self, t: float) -> list[Any]: ...


class Sink(Protocol):
    """Where results go (edge.mqtt's Publisher satisfies this)."""

    def publish_event(self, event: Any) -> None: ...

    def publish_state(self, label: str, on: bool) -> None: ...

    def publish_scores(self, t: float, top: Any) -> None: ...

    def publish_level(self, t: float, dbfs: float) -> None: ...


class ClipRecorder(Protocol):
    """edge.recorder.Recorder as the pipeline uses it."""

    def feed(self, samples: Floats) -> None: ...

    def on_event(self, event: Any, sample_index: int) -> Any: ...

    def close(self) -> None: ...


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
    ) -> None:
        m = classifier.manifest
        self._classifier = classifier
        self._params = m.features
        self._window = m.window_frames
        self._hop = hop_frames or m.hop_frames
        self._gate = gate_dbfs
        self._detector, self._sink, self._recorder = detector, sink, recorder
        self._on_scores = on_scores
        self._labels = classifier.labels
        self._top_k = min(scores_top_k, len(self._labels))
        self._zeros = np.zeros(len(self._labels), dtype=np.float32)
        self.stats = PipelineStats()
        self._front = FrontEnd(self._params)
        self._ring = np.empty((2 * self._window, self._params.n_bands), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Start a new stream (after a source restart or a worker error)."""
        self._front.reset()
        self._ring.fill(self._params.db_floor)
        self._frames = 0
        self._samples = 0
        self._next_end = math.ceil(self._window / self._hop) * self._hop
        self._sumsq = 0.0
        self._count = 0
        self._decisions = 0
        self._t_last = 0.0
        self._anchor_t: float | None = None
        self._anchor_n = 0

    @property
    def rate_hz(self) -> int:
        """The sample rate the pipeline expects."""
        return self._params.sample_rate

    def feed(self, samples: Floats, t_end: float) -> None:
        """Process one block of mono samples whose last sample is at epoch ``t_end``."""
        started = time.perf_counter()
        n = len(samples)
        if self._recorder is not None:
            self._recorder.feed(samples)
        self._anchor_to(t_end, n)
        p = self._params
        pos = 0
        while pos < n:
            boundary = (self._next_end - 1) * p.hop_samples + p.window_samples
            take = min(n - pos, boundary - self._samples)
            self._consume(samples[pos : pos + take])
            pos += take
            if self._samples == boundary:
                self._decide(self._time_of(self._samples - 1))
                self._next_end += self._hop
        self._t_last = self._time_of(self._samples - 1)
        self.stats.add_audio(n / p.sample_rate, time.perf_counter() - started)

    def _anchor_to(self, t_end: float, n: int) -> None:
        """Keep sample times on one clock unless the source's clock disagrees (drops, drift)."""
        rate = self._params.sample_rate
        predicted = self._time_of(self._samples + n - 1)
        if self._anchor_t is None or abs(predicted - t_end) > REANCHOR_S:
            # rounded so that block sizes do not change the times by an ulp
            self._anchor_t = round(t_end - (n - 1) / rate, 6)
            self._anchor_n = self._samples

    def _time_of(self, sample: int) -> float:
        """Epoch seconds of absolute sample number ``sample``."""
        return (self._anchor_t or 0.0) + (sample - self._anchor_n) / self._params.sample_rate

    def _consume(self, chunk: Floats) -> None:
        x = chunk.astype(np.float64, copy=False)
        self._sumsq += float(np.dot(x, x))
        self._count += len(x)
        self._samples += len(x)
        w = self._window
        for frame in self._front.process_streaming(x):
            i = self._frames % w
            self._ring[i] = frame
            self._ring[i + w] = frame
            self._frames += 1
        self.stats.frames = self._frames

    def _decide(self, t: float) -> None:
        dbfs = 10.0 * math.log10(self._sumsq / max(self._count, 1) + 1e-20)
        self._sumsq, self._count = 0.0, 0
        self._decisions += 1
        self.stats.hops += 1
        if self._sink is not None:
            self._sink.publish_level(t, dbfs)
        if self._gate is not None and dbfs < self._gate:
            self.stats.gated += 1
            scores = self._zeros
        else:
            scores = self._infer(t)
        if self._detector is not None:
            for event in self._detector.update(scores, t):
                self._emit(event)

    def _infer(self, t: float) -> Floats:
        start = self._frames % self._window
        began = time.perf_counter()
        scores = self._classifier.scores(self._ring[start : start + self._window])
        self.stats.add_latency(time.perf_counter() - began)
        if self._on_scores is not None:
            self._on_scores(t, scores)
        if self._sink is not None and self._top_k:
            top = np.argsort(scores)[::-1][: self._top_k]
            self._sink.publish_scores(t, [(self._labels[i], round(float(scores[i]), 4)) for i in top])
        return scores

    def _emit(self, event: Any) -> None:
        if self._recorder is not None:
            event = self._recorder.on_event(event, self._samples)
        if self._sink is not None:
            self._sink.publish_event(event)
            self._sink.publish_state(event.label, event.kind == "start")

    def finish(self, t: float | None = None) -> None:
        """End of stream: the one decision of a short stream, then end running events."""
        t_end = self._t_last if t is None else t
        if self._decisions == 0 and self._frames > 0:
            self._decide(t_end)
        if self._detector is not None:
            for event in self._detector.flush(t_end):
                self._emit(event)
        if self._recorder is not None:
            self._recorder.close()
