"""The streaming pipeline with a real int8 TFLite model: invariance, cadence, gate, clips."""

from __future__ import annotations

import dataclasses
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.models import tone_bundle

from edge.detect.clips import ClipRecorder, RecordingParams
from edge.detect.events import EventDetector, EventParams
from edge.detect.pipeline import Pipeline
from edge.features import compute, window_at, window_ends
from edge.model.bundle import Bundle, read_bundle
from edge.model.classifier import Classifier

RATE = 16000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return read_bundle(tone_bundle(tmp_path_factory.mktemp("model") / "tones.auricle"))


@pytest.fixture(scope="module")
def classifier(bundle: Bundle) -> Classifier:
    return Classifier(bundle)


def signal(seconds: float = 4.0) -> np.ndarray[Any, Any]:
    """Noise with a 1 kHz tone from 1.0 to 2.2 s and a 3 kHz tone from 2.5 to 3.2 s."""
    t = np.arange(round(seconds * RATE)) / RATE
    x = 0.002 * np.random.default_rng(7).standard_normal(len(t))
    x = np.where((t >= 1.0) & (t < 2.2), 0.3 * np.sin(2 * np.pi * 1000 * t), x)
    x = np.where((t >= 2.5) & (t < 3.2), 0.3 * np.sin(2 * np.pi * 3000 * t), x)
    return x.astype(np.float32)


class Collect:
    """A Sink that keeps everything."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.states: list[tuple[str, bool]] = []
        self.levels: list[float] = []
        self.scores: list[Any] = []

    def publish_event(self, event: Any) -> None:
        self.events.append(event)

    def publish_state(self, label: str, on: bool) -> None:
        self.states.append((label, on))

    def publish_scores(self, t: float, offset_s: float, top: Any) -> None:
        self.scores.append(top)

    def publish_level(self, t: float, offset_s: float, dbfs: float) -> None:
        self.levels.append(dbfs)


def run(classifier: Classifier, x: np.ndarray[Any, Any], sizes: list[int], **kwargs: Any) -> tuple[Any, Collect, Any]:
    hops: list[tuple[float, np.ndarray[Any, Any]]] = []
    sink = Collect()
    detector = EventDetector(classifier.labels, classifier.manifest.thresholds, EventParams(hold_s=0.2))
    pipe = Pipeline(
        classifier, detector=detector, sink=sink, on_scores=lambda t, s: hops.append((t, s.copy())), **kwargs
    )
    pos, k = 0, 0
    while pos < len(x):
        n = sizes[k % len(sizes)]
        block = x[pos : pos + n]
        pos += len(block)
        pipe.feed(block, 1000.0 + (pos - 1) / RATE)
        k += 1
    pipe.finish()
    return hops, sink, pipe


def _event_keys(sink: Collect) -> list[tuple[Any, ...]]:
    return [(e.label, e.kind, e.end is None, e.peak, e.mean, e.hops) for e in sink.events]


def _event_times(sink: Collect) -> list[float]:
    return [x for e in sink.events for x in (e.start, e.end or 0.0, e.t_audio)]


def test_chunk_size_invariance(classifier: Classifier) -> None:
    x = signal()
    random_sizes = [int(n) for n in np.random.default_rng(3).integers(1, 5000, 200)]
    ref_hops, ref_sink, _ = run(classifier, x, [1600])
    assert {e.label for e in ref_sink.events} >= {"tone_1000", "tone_3000"}
    for sizes in ([1], [160], [321], [4000], random_sizes):
        hops, sink, _ = run(classifier, x, sizes)
        assert len(hops) == len(ref_hops)
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(hops, ref_hops, strict=True)), sizes[:3]
        assert np.allclose([t for t, _ in hops], [t for t, _ in ref_hops], atol=1e-6)
        assert _event_keys(sink) == _event_keys(ref_sink), sizes[:3]
        assert np.allclose(_event_times(sink), _event_times(ref_sink), atol=1e-6)
        assert np.allclose(sink.levels, ref_sink.levels, atol=1e-6)


def test_cadence_is_window_ends_and_matches_batch(classifier: Classifier) -> None:
    x = signal(2.0)
    hops, _, pipe = run(classifier, x, [777])
    m = classifier.manifest
    frames = compute(x, m.features)
    ends = window_ends(len(frames), m.window_frames, m.hop_frames)
    assert pipe.stats.hops == len(ends) == len(hops)
    batch = [classifier.scores(window_at(frames, e, m.window_frames, m.features)) for e in ends]
    assert all(np.array_equal(a, s) for a, (_, s) in zip(batch, hops, strict=True))
    # each hop's time is its last sample: frame e ends at sample (e-1)*hop + window
    last = [(e - 1) * m.features.hop_samples + m.features.window_samples - 1 for e in ends]
    assert np.allclose([t for t, _ in hops], [s / RATE for s in last], atol=1e-6)


def test_inference_hop_override(classifier: Classifier) -> None:
    x = signal(2.0)
    hops, _, _ = run(classifier, x, [1600], hop_frames=1)
    m = classifier.manifest
    assert len(hops) == len(window_ends(len(compute(x, m.features)), m.window_frames, 1))


def test_short_signal_gets_one_padded_inference(classifier: Classifier) -> None:
    m = classifier.manifest
    x = signal(0.2)  # 18 frames < 48-frame window
    hops, _, _ = run(classifier, x, [1000])
    frames = compute(x, m.features)
    assert window_ends(len(frames), m.window_frames, m.hop_frames) == [len(frames)]
    assert len(hops) == 1
    assert np.array_equal(hops[0][1], classifier.scores(window_at(frames, len(frames), m.window_frames, m.features)))


def test_gate_skips_quiet_hops_and_events_still_end(classifier: Classifier) -> None:
    x = signal()
    hops, sink, pipe = run(classifier, x, [1600], gate_dbfs=-40.0)
    stats = pipe.stats.snapshot()
    assert stats["gated"] > 0
    assert stats["inferences"] == len(hops) == stats["hops"] - stats["gated"]
    assert stats["gated"] == sum(level < -40.0 for level in sink.levels)
    starts = [e.label for e in sink.events if e.kind == "start"]
    ends = [e.label for e in sink.events if e.kind == "end"]
    assert "tone_1000" in starts
    assert sorted(starts) == sorted(ends)


def test_level_is_rms_dbfs(classifier: Classifier) -> None:
    t = np.arange(RATE) / RATE
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    _, sink, _ = run(classifier, x, [1600])
    assert sink.levels[-1] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.05)


def test_stats_snapshot(classifier: Classifier) -> None:
    _, _, pipe = run(classifier, signal(2.0), [1600])
    stats = pipe.stats.snapshot()
    assert stats["audio_s"] == pytest.approx(2.0)
    assert 0 < stats["latency_ms_p50"] <= stats["latency_ms_p95"]
    assert 0 < stats["rtf"] < 1


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as wav:
        return wav.getnframes() / wav.getframerate()


def test_recorder_writes_clip_with_pre_and_post_roll(classifier: Classifier, tmp_path: Path) -> None:
    params = RecordingParams(enabled=True, dir=str(tmp_path / "clips"), pre_roll_s=0.5, post_roll_s=0.5)
    x = signal()
    _, sink, _ = run(classifier, x, [1600], recorder=ClipRecorder(params, RATE))
    tone = [e for e in sink.events if e.label == "tone_1000"]
    assert [e.kind for e in tone] == ["start", "end"]
    assert tone[0].clip == tone[1].clip is not None
    clip = Path(tone[0].clip)
    assert clip.is_file()
    expected = (tone[1].end - tone[0].start) + 1.0  # pre + post roll
    assert _wav_seconds(clip) == pytest.approx(expected, abs=0.25)
    assert not list(clip.parent.glob("*.part"))


def test_recorder_retention_by_count(classifier: Classifier, tmp_path: Path) -> None:
    params = RecordingParams(enabled=True, dir=str(tmp_path), pre_roll_s=0.1, post_roll_s=0.1, max_files=2)
    recorder = ClipRecorder(params, RATE)
    x = signal()
    for _ in range(2):  # 4 events per pass (tone_1000, tone_3000, quiet twice)
        run(classifier, x, [1600], recorder=recorder)
    assert len(list(tmp_path.glob("auricle-*.wav"))) == 2


def test_recorder_failure_does_not_stop_events(classifier: Classifier, tmp_path: Path) -> None:
    params = RecordingParams(enabled=True, dir=str(tmp_path / "clips"))
    recorder = ClipRecorder(params, RATE)
    (tmp_path / "clips").chmod(0o500)
    try:
        _, sink, _ = run(classifier, signal(), [1600], recorder=recorder)
    finally:
        (tmp_path / "clips").chmod(0o700)
    assert {e.label for e in sink.events} >= {"tone_1000"}


def test_event_detector_gets_zero_scores_when_gated(classifier: Classifier) -> None:
    seen: list[np.ndarray[Any, Any]] = []

    class Spy:
        def update(self, scores: Any, t: float) -> list[Any]:
            seen.append(np.array(scores))
            return []

        def flush(self, t: float) -> list[Any]:
            return []

    pipe = Pipeline(classifier, gate_dbfs=-30.0, detector=Spy())
    pipe.feed(np.zeros(RATE, dtype=np.float32), 1.0)
    assert seen
    assert all(not s.any() for s in seen)
    assert dataclasses.asdict(classifier.manifest.input)["dtype"] == "int8"
