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

    def publish_scores(self, t: float, offset_s: float, top: Any) -> None: ...

    def publish_level(self, t: float, offset_s: float, dbfs: float) -> None: ...


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
        live: bool = False,
    ) -> None:
        """``on_scores(offset_s, scores)`` sees every inferred hop; ``live``: see the module doc."""
        m = classifier.manifest
        self._classifier = classifier
        self._params = m.features
        self._window = m.window_frames
        self._hop = hop_frames or m.hop_frames
        self._gate = gate_dbfs
        self._detector, self._sink, self._recorder = detector, sink, recorder
        self._on_scores = on_scores
        self._live = live
        self._origin = 0
        self._samples = 0
        self._anchor_t: float | None = None
        self._anchor_n = 0
        self._labels = classifier.labels
        self._top_k = min(scores_top_k, len(self._labels))
        self._zeros = np.zeros(len(self._labels), dtype=np.float32)
        self.stats = PipelineStats()
        self._front = FrontEnd(self._params)
        self._ring = np.empty((2 * self._window, self._params.n_bands), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Start afresh after a worker error: new front end and window; the clock runs on."""
        self._origin += self._samples
        self._front.reset()
        self._ring.fill(self._params.db_floor)
        self._frames = 0
        self._samples = 0
        self._next_end = math.ceil(self._window / self._hop) * self._hop
        self._sumsq = 0.0
        self._count = 0
        self._decisions = 0

    @property
    def rate_hz(self) -> int:
        """The sample rate the pipeline expects."""
        return self._params.sample_rate

    @property
    def offset_s(self) -> float:
        """Seconds of audio since the stream started (the sample clock)."""
        return (self._origin + self._samples) / self._params.sample_rate

    def epoch_of(self, offset_s: float) -> float:
        """Epoch seconds of a stream offset, on the current anchor."""
        rate = self._params.sample_rate
        return (self._anchor_t or 0.0) + offset_s - self._anchor_n / rate

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
                self._decide(self._offset_of_last())
                self._next_end += self._hop
        self.stats.add_audio(n / p.sample_rate, time.perf_counter() - started)

    def _anchor_to(self, t_end: float, n: int) -> None:
        """Anchor the sample clock to the first block; a live source re-anchors when its clock disagrees."""
        rate = self._params.sample_rate
        first = self._origin + self._samples
        if self._anchor_t is None:
            self._anchor_t, self._anchor_n = round(t_end - (n - 1) / rate, 6), first
        elif self._live and abs(self.epoch_of((first + n - 1) / rate) - t_end) > REANCHOR_S:
            self._anchor_t, self._anchor_n = round(t_end - (n - 1) / rate, 6), first
            self.stats.reanchors += 1
            _LOGGER.info("re-anchored the sample clock to the source's (dropped audio or clock drift)")

    def _offset_of_last(self) -> float:
        """Stream seconds of the last sample consumed."""
        return (self._origin + self._samples - 1) / self._params.sample_rate

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
        start = self._frames % self._window
        began = time.perf_counter()
        scores = self._classifier.scores(self._ring[start : start + self._window])
        self.stats.add_latency(time.perf_counter() - began)
        if self._on_scores is not None:
            self._on_scores(offset, scores)
        if self._sink is not None and self._top_k:
            top = np.argsort(scores)[::-1][: self._top_k]
            ranked = [(self._labels[i], round(float(scores[i]), 4)) for i in top]
            self._sink.publish_scores(round(self.epoch_of(offset), 6), offset, ranked)
        return scores

    def _emit(self, event: Any) -> None:
        event = event.on_clock(self.epoch_of)
        if self._recorder is not None:
            event = self._recorder.on_event(event, self._origin + self._samples)
        if self._sink is not None:
            self._sink.publish_event(event)
            self._sink.publish_state(event.label, event.kind == "start")

    def finish(self) -> None:
        """End of stream: the one decision of a short stream, then end running events."""
        offset = max(self._offset_of_last(), 0.0)
        if self._decisions == 0 and self._frames > 0:
            self._decide(offset)
        if self._detector is not None:
            for event in self._detector.flush(offset):
                self._emit(event)
        if self._recorder is not None:
            self._recorder.close()
