"""Recordings through the daemon's own pipeline and event logic, as fast as the CPU allows.

What ``auricle classify --events``, the event benchmarks (bench/events.py) and
threshold calibration in training use, so that a figure measured on a recording
is what the daemon would have reported live: same front end, same hop, same
gate, same detector, and the sample clock (events carry offsets into the
recording, ``start_offset_s``/``end_offset_s``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.audio.sources import FileSource
from edge.daemon.config import Config
from edge.detect.events import Event, EventDetector
from edge.detect.pipeline import Pipeline, ScoresHook
from edge.model.classifier import Classifier

Floats = npt.NDArray[np.float32]
BLOCK_SAMPLES = 4000
"""Replay block size: block sizes do not change results (tests/daemon/test_replay.py), big ones are faster."""


class EventLog:
    """A sink that keeps the events and ignores everything else."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish_event(self, event: Event) -> None:
        self.events.append(event)

    def publish_state(self, label: str, on: bool) -> None:
        del label, on

    def publish_scores(self, t: float, offset_s: float, top: Any) -> None:
        del t, offset_s, top

    def publish_level(self, t: float, offset_s: float, dbfs: float) -> None:
        del t, offset_s, dbfs


def detector_for(classifier: Classifier, config: Config) -> EventDetector:
    """The daemon's event detector for this model and config (bundle thresholds, config overrides)."""
    return EventDetector.for_model(classifier.manifest, config.events, config.mqtt.announce)


def pipeline_for(
    classifier: Classifier, config: Config, log: EventLog, on_scores: ScoresHook | None = None
) -> Pipeline:
    """The daemon's pipeline (hop, gate, detector) writing its events to ``log``."""
    return Pipeline(
        classifier,
        hop_frames=config.model.hop_frames,
        gate_dbfs=config.audio.gate_dbfs,
        detector=detector_for(classifier, config),
        sink=log,
        on_scores=on_scores,
    )


def replay_blocks(
    classifier: Classifier, blocks: Iterable[Floats], config: Config, on_scores: ScoresHook | None = None
) -> list[Event]:
    """Events (start and end messages) of one stream given as blocks at the model rate."""
    log = EventLog()
    pipeline = pipeline_for(classifier, config, log, on_scores)
    rate, n = pipeline.rate_hz, 0
    for block in blocks:
        n += len(block)
        pipeline.feed(block, (n - 1) / rate)
    pipeline.finish()
    return log.events


def stream_events(
    classifier: Classifier, samples: Floats, config: Config, on_scores: ScoresHook | None = None
) -> list[Event]:
    """Events of one stream of float32 samples at the model rate."""
    return replay_blocks(classifier, sample_blocks(samples), config, on_scores)


def sample_blocks(samples: Floats) -> Iterator[Floats]:
    """One stream of samples as replay blocks (``BLOCK_SAMPLES`` each, the last one shorter)."""
    return (samples[i : i + BLOCK_SAMPLES] for i in range(0, len(samples), BLOCK_SAMPLES))


def file_blocks(path: str | os.PathLike[str], rate_hz: int) -> Iterator[Floats]:
    """An audio file (any rate: resampled like the file source) as replay blocks; AudioError if unreadable."""
    source = FileSource(path, rate_hz, realtime=False, block_samples=BLOCK_SAMPLES)
    return (block.samples for block in source.blocks(threading.Event()))


def file_events(
    classifier: Classifier, path: str | os.PathLike[str], config: Config, on_scores: ScoresHook | None = None
) -> list[Event]:
    """Events of one audio file; AudioError if unreadable."""
    blocks = file_blocks(path, classifier.manifest.features.sample_rate)
    return replay_blocks(classifier, blocks, config, on_scores)


def hop_scores(
    classifier: Classifier, blocks: Iterable[Floats], config: Config | None = None
) -> tuple[npt.NDArray[np.float64], Floats]:
    """Offsets (s into the stream, the end of each hop) and scores of every inference the daemon makes on a
    stream given as blocks: ``(hops,)`` and ``(hops, labels)``.  ``config``: its hop and gate (a gated hop is
    not inferred); None is the built-in config, the bundle's hop without a gate."""
    times: list[float] = []
    rows: list[Floats] = []

    def keep(offset_s: float, scores: Floats) -> None:
        times.append(offset_s)
        rows.append(np.array(scores, dtype=np.float32))

    replay_blocks(classifier, blocks, config or Config(), keep)
    scores = np.stack(rows) if rows else np.zeros((0, len(classifier.labels)), dtype=np.float32)
    return np.array(times, dtype=np.float64), scores


def sounds(events: Iterable[Event]) -> list[Event]:
    """One entry per sound: its end message (start and end offsets, peak, mean), in start order.

    Every start has an end: the replay flushes running events at the end of the stream."""
    return sorted((e for e in events if e.kind == "end"), key=lambda e: (e.start_offset_s, e.label))
