"""bench/events.py: scoring on hand-built cases, YAMNet's Frigate-style events, and one small real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from support.shared import ROOT, shared_dir

from bench import event_scoring as scoring
from bench import events, streams
from bench.event_scoring import HOME_LABELS, Detection, Span
from edge.model.bundle import read_bundle
from training.model import yamnet
from training.model.yamnet import read_class_names

SHARED = shared_dir()
MODEL = ROOT / "models" / "esc50.auricle"

SPANS = [Span("a.flac", "dog", 3.0, 8.0), Span("b.flac", "siren", 11.0, 16.0), Span("c.flac", "dog", 19.0, 24.0)]


def test_recall_wrong_labels_latency_and_gaps_on_a_hand_built_case() -> None:
    found = [
        Detection("dog", 2.6, 3.4),  # 0.4 s before clip a: inside its 0.5 s lead
        Detection("dog", 5.0, 5.5),  # a second dog start in a: recall counts once, latency the first
        Detection("cat", 4.0, 4.2),  # wrong label in a
        Detection("siren", 17.2, 17.5),  # 1.2 s after b ended: too late
        Detection("dog", 18.0, 18.3),  # 1 s before c: too early, and in no window (a gap)
        Detection("dog", 25.0, 25.0),  # exactly 1 s after c ended: counts
    ]
    report = scoring.recall(SPANS, found, ["dog", "siren", "cat"])
    assert report["per_label"]["dog"] == {
        "clips": 2,
        "recalled": 2,
        "recall": 1.0,
        "wrong_per_clip": 0.5,
        "latency_p50_s": 3.2,
        "latency_p95_s": 5.72,
    }
    assert report["per_label"]["siren"]["recall"] == 0.0 and report["per_label"]["siren"]["latency_p50_s"] is None
    assert "cat" not in report["per_label"]  # no clips of it
    assert report["total"]["recall"] == round(2 / 3, 4) and report["total"]["wrong_per_clip"] == round(1 / 3, 4)
    assert report["events_in_gaps"] == 2  # the late siren and the early dog


def test_only_the_labels_a_detector_can_name_are_scored() -> None:
    report = scoring.recall(SPANS, [Detection("dog", 4.0, 4.0)], ["dog"])
    assert report["total"]["clips"] == 2 and report["total"]["recall"] == 0.5


def test_false_alarms_count_every_start_per_hour_of_audio() -> None:
    found = [Detection("dog", 4.0, 4.0), Detection("dog", 12.0, 12.0), Detection("cat", 8.5, 8.5)]
    report = scoring.false_alarms(SPANS, found, audio_s=900.0)  # a quarter of an hour
    assert report["total"] == {"events": 3, "per_hour": 12.0}
    assert report["per_label"] == {"cat": {"events": 1, "per_hour": 4.0}, "dog": {"events": 2, "per_hour": 8.0}}
    assert report["per_file"] == {"a.flac": 2, "b.flac": 1}


HOME_FOUND = {
    "ours": [
        Detection("dog", 3.5, 4.0),  # hit on a (home)
        Detection("cow", 4.0, 4.2),  # wrong label on a, not a home label: all view only
        Detection("glass_breaking", 12.0, 12.5),  # wrong label on b, a home label: both views
        Detection("cow", 27.5, 28.0),  # hit on the cow clip: all view only
        Detection("siren", 11.5, 12.0),  # hit on b
    ],
    "yamnet": [Detection("siren", 11.7, 11.7), Detection("frog", 20.0, 20.0)],  # hit on b; wrong on c, not home
}
HOME_SPANS = [*SPANS, Span("d.flac", "cow", 27.0, 32.0)]


def test_home_totals_count_home_clips_and_only_home_label_starts() -> None:
    labels = {"ours": ["cow", "dog", "frog", "glass_breaking", "siren"], "yamnet": ["dog", "frog", "siren"]}
    rec = events.recall_scores(HOME_SPANS, HOME_FOUND, labels, named=labels["yamnet"])
    assert rec["ours"]["total"]["clips"] == 4 and rec["ours"]["total"]["recalled"] == 3
    assert rec["ours"]["home"]["total"]["clips"] == 3 and rec["ours"]["home"]["total"]["recalled"] == 2
    assert rec["ours"]["total"]["wrong_per_clip"] == 0.5  # cow on a, glass on b: 2 in 4 clips
    assert rec["ours"]["home"]["total"]["wrong_per_clip"] == round(1 / 3, 4)  # only glass_breaking counts
    assert rec["ours"]["home"]["total_yamnet_labels"]["clips"] == 3  # dog and siren clips; cow is no home label
    assert rec["yamnet"]["total"]["wrong_per_clip"] == round(1 / 3, 4) and rec["yamnet"]["home"]["total"] == {
        "clips": 3,
        "recalled": 1,
        "recall": round(1 / 3, 4),
        "wrong_per_clip": 0.0,
        "latency_p50_s": 0.7,
        "latency_p95_s": 0.7,
    }
    fa = events.false_alarm_scores(SPANS, HOME_FOUND, audio_s=900.0)
    assert fa["ours"]["total"]["events"] == 5 and fa["ours"]["home"]["total"] == {"events": 3, "per_hour": 12.0}
    assert fa["yamnet"]["home"]["total"] == {"events": 1, "per_hour": 4.0}


def test_the_table_prints_total_and_home_rows_side_by_side() -> None:
    labels = {"ours": ["cow", "dog", "frog", "glass_breaking", "siren"], "yamnet": ["dog", "frog", "siren"]}
    report = {
        "yamnet_unmapped_labels": ["cow", "glass_breaking"],
        "home_labels": list(HOME_LABELS),
        "recall": events.recall_scores(HOME_SPANS, HOME_FOUND, labels, named=labels["yamnet"]),
        "false_alarms": {"files": 3, "audio_h": 0.25} | events.false_alarm_scores(SPANS, HOME_FOUND, 900.0),
    }
    lines = {line[:22].strip(): line[22:].split() for line in events.table(report).splitlines()}
    assert lines["total"] == ["4", "75", "-", "0.50", "-", "20.0", "8.0"]
    assert lines["home labels"] == ["3", "67", "-", "0.33", "-", "12.0", "4.0"]
    assert lines["home, YAMNet's labels"][:5] == ["3", "67", "33", "0.33", "0.00"]
    assert lines["dog *"][:2] == ["2", "50"] and "cow" in lines
    text = events.table(report)
    assert "p50 / p95, home labels: ours" in text and "(3 of home labels)" in text


def test_stream_places_items_between_quiet_gaps() -> None:
    ones = np.ones(8000, dtype=np.float32)
    stream, spans = streams.build_stream([("x", "dog", ones), ("y", "cat", ones)], gap_s=2.0, rate=16000)
    assert len(stream) == 3 * 32000 + 2 * 8000
    assert spans == [Span("x", "dog", 2.0, 2.5), Span("y", "cat", 4.5, 5.0)]
    assert np.array_equal(stream[32000:40000], ones)
    gap_dbfs = 10 * np.log10(np.mean(stream[:32000].astype(np.float64) ** 2))
    assert gap_dbfs == pytest.approx(-70.0, abs=0.2)


class ScriptedPeer:
    """Stands in for training.model.yamnet.Yamnet: scores per call from a script."""

    def __init__(self, dog_scores: list[float]) -> None:
        self._dog = iter(dog_scores)

    def infer(self, patch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        assert patch.shape == (96, 64)
        scores = np.zeros(521, dtype=np.float32)
        scores[70] = next(self._dog)  # Bark
        return scores, np.zeros(1024, dtype=np.float32)


def test_yamnet_calls_every_0975_s_and_merges_consecutive_firings() -> None:
    samples = np.zeros(6 * 15600 + 100, dtype=np.float32)  # the partial last chunk is never scored
    peer = ScriptedPeer([0.9, 0.95, 0.1, 0.85, 0.79, 0.8])
    found = streams.yamnet_detections(peer, samples, {"dog": [69, 70]}, threshold=0.8)  # type: ignore[arg-type]
    assert found == [Detection("dog", 0.975, 0.975), Detection("dog", 3.9, 3.9), Detection("dog", 5.85, 5.85)]


def _skip_without_shared() -> None:
    needed = [SHARED / "peers" / "yamnet_spectra_in.tflite", streams.ESC50_CSV, streams.BACKGROUND_CSV, MODEL]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f"needs the shared material and the shipped model: missing {missing}")


def test_mapping_names_real_yamnet_classes_for_the_shipped_labels() -> None:
    _skip_without_shared()
    names = read_class_names(SHARED / "peers" / "yamnet_class_map.csv")
    mapping = yamnet.read_mapping(streams.MAPPING_CSV, names)
    assert names[70] == "Bark" and 70 in mapping["dog"]
    assert set(mapping) == {*read_bundle(MODEL).manifest.event_labels} - {
        "can_opening",
        "drinking_sipping",
        "washing_machine",
    }


@pytest.mark.slow
def test_small_run_writes_the_report(tmp_path: Path) -> None:
    _skip_without_shared()
    out = tmp_path / "events.json"
    assert events.main(["--limit", "4", "--gap-s", "1", "--json-out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["fold"] == 4 and report["recall"]["clips"] == 4 and report["false_alarms"]["files"] == 4
    for side in ("ours", "yamnet"):
        assert set(report["recall"][side]) >= {"per_label", "total", "events_in_gaps"}
        assert set(report["false_alarms"][side]) == {"per_label", "per_file", "total", "home"}
        assert set(report["false_alarms"][side]["home"]) == {"per_label", "per_file", "total"}
        assert report["recall"][side]["home"]["total"]["clips"] <= report["recall"][side]["total"]["clips"]
        assert 0.0 <= report["recall"][side]["total"]["recall"] <= 1.0
    assert report["false_alarms"]["audio_h"] > 0
