"""Replay equals live: the same recording gives the same events however its audio arrives.

One recording (the generated demo clip: a siren and alarm beeps with gaps, as
named by the shipped model) goes through the file source at full
speed, the file source paced in real time, stdin at full speed, and a scripted
live source with jittered block arrival and block sizes 1, 160, 321 and 4000.
Every path must give exactly the same events: label, start/end offsets, peak,
mean.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.audio.demo import demo_clip, demo_sounds, write_wav
from edge.audio.sources import FileSource, StdinSource, open_audio
from edge.daemon.config import Config
from edge.daemon.replay import EventLog, detector_for, file_events, sounds, stream_events
from edge.daemon.startup import default_model_path
from edge.detect.events import Event, EventParams
from edge.detect.pipeline import Pipeline
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier

RATE = 16000
CONFIG = Config(events=EventParams(hold_s=0.6, cooldown_s=0.4))


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(read_bundle(default_model_path()))


@pytest.fixture(scope="module")
def recording() -> Path:
    return Path(demo_clip())


@pytest.fixture(scope="module")
def samples(recording: Path) -> np.ndarray[Any, Any]:
    reader = open_audio(recording)
    try:
        return reader.read(10**8).astype(np.float32)
    finally:
        reader.close()


@pytest.fixture(scope="module")
def reference(classifier: Classifier, recording: Path) -> list[tuple[Any, ...]]:
    keys = _keys(file_events(classifier, recording, CONFIG))
    assert len({k[0] for k in keys}) >= 2, keys  # several sounds (the siren and the alarm beeps)
    return keys


def test_the_demo_raises_every_sound_it_promises_and_nothing_else(classifier: Classifier, recording: Path) -> None:
    """A user's first minute, at the daemon's defaults: one event per promised sound, each starting while
    it plays (or within a second of its end), in order, and no other event."""
    found = sounds(file_events(classifier, recording, Config()))
    promised = demo_sounds()
    assert [e.label for e in found] == [label for label, _, _ in promised], found
    for event, (label, start_s, end_s) in zip(found, promised, strict=True):
        assert start_s <= event.start_offset_s <= end_s + 1.0, (label, event.start_offset_s)


def _keys(events: list[Event]) -> list[tuple[Any, ...]]:
    return [(e.label, e.start_offset_s, e.end_offset_s, e.peak, e.mean, e.hops) for e in sounds(events)]


def _run(classifier: Classifier, blocks: Iterator[tuple[np.ndarray[Any, Any], float]], live: bool) -> list[Event]:
    log = EventLog()
    pipe = Pipeline(classifier, detector=detector_for(classifier, CONFIG), sink=log, live=live)
    for samples, t_end in blocks:
        pipe.feed(samples, t_end)
    pipe.finish()
    return log.events


def _source_blocks(source: Any) -> Iterator[tuple[np.ndarray[Any, Any], float]]:
    for block in source.blocks(threading.Event()):
        yield block.samples, block.t_end


def test_file_source_at_full_speed(classifier: Classifier, recording: Path, reference: list[Any]) -> None:
    source = FileSource(recording, RATE, realtime=False, block_samples=160)
    assert _keys(_run(classifier, _source_blocks(source), live=False)) == reference


def test_file_source_paced_in_real_time(classifier: Classifier, samples: np.ndarray[Any, Any], tmp_path: Path) -> None:
    short = tmp_path / "short.wav"
    write_wav(short, samples[: 8 * RATE].astype(np.float64))
    fast = _keys(file_events(classifier, short, CONFIG))
    began = time.monotonic()
    source = FileSource(short, RATE, realtime=True, block_samples=320)
    paced = _keys(_run(classifier, _source_blocks(source), live=False))
    assert time.monotonic() - began >= 7.5, "the file source did not pace itself"
    assert fast and paced == fast


def test_stdin_at_full_speed(classifier: Classifier, samples: np.ndarray[Any, Any], reference: list[Any]) -> None:
    pcm = np.clip(np.rint(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()
    read_fd, write_fd = os.pipe()

    def writer() -> None:
        with os.fdopen(write_fd, "wb") as out:
            for i in range(0, len(pcm), 7777):  # odd sizes: reads end between the bytes of a sample
                out.write(pcm[i : i + 7777])

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb") as stream:
        source = StdinSource(RATE, RATE, stream=stream, block_samples=1000)
        events = _run(classifier, _source_blocks(source), live=False)
    thread.join(10)
    # 16-bit PCM is the recording itself here: the WAV holds the same codes
    assert _keys(events) == reference


@pytest.mark.parametrize("size", [1, 160, 321, 4000])
def test_live_source_with_jittered_arrival(
    classifier: Classifier, samples: np.ndarray[Any, Any], reference: list[Any], size: int
) -> None:
    rng = np.random.default_rng(size)
    t0 = 1.7e9

    def blocks() -> Iterator[tuple[np.ndarray[Any, Any], float]]:
        for i in range(0, len(samples), size):
            block = samples[i : i + size]
            # arrival = the block's true end plus up to 60 ms of scheduling jitter
            yield block, t0 + (i + len(block) - 1) / RATE + float(rng.uniform(0.0, 0.06))

    log_events = _run(classifier, blocks(), live=True)
    assert _keys(log_events) == reference
    assert all(t0 <= e.t_audio <= t0 + 20 for e in log_events), "epoch times follow the live anchor"


def test_live_source_reanchors_after_dropped_audio(classifier: Classifier, samples: np.ndarray[Any, Any]) -> None:
    log = EventLog()
    pipe = Pipeline(classifier, detector=detector_for(classifier, CONFIG), sink=log, live=True)
    block = samples[:RATE]
    pipe.feed(block, 100.0)
    pipe.feed(block, 105.0)  # four seconds of audio were dropped between the two blocks
    assert pipe.stats.reanchors == 1
    assert pipe.offset_s == pytest.approx(2.0)
    assert pipe.epoch_of(pipe.offset_s) == pytest.approx(105.0, abs=1e-3)


def test_non_live_sources_never_reanchor(classifier: Classifier, samples: np.ndarray[Any, Any]) -> None:
    pipe = Pipeline(classifier, live=False)
    pipe.feed(samples[:RATE], 100.0)
    pipe.feed(samples[:RATE], 500.0)  # a pipe that stalled: the samples are the clock
    assert pipe.stats.reanchors == 0
    assert pipe.epoch_of(pipe.offset_s) == pytest.approx(100.0 + 1.0, abs=1e-3)


def test_stream_events_equals_file_events(
    classifier: Classifier, samples: np.ndarray[Any, Any], reference: list[Any]
) -> None:
    assert _keys(stream_events(classifier, samples, CONFIG)) == reference
