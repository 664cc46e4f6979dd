"""``auricle classify``: streaming pipeline per file, clip label = mean of hop scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.daemon import tone_wav
from support.models import audioset_bundle, tone_bundle

from edge.features import compute, window_at, window_ends
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_bundle(tmp_path_factory.mktemp("model") / "tones.auricle")


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audio")
    tone_wav(root / "a_tone1000.wav", seconds=2.0, tone_s=(0.0, 2.0), hz=1000.0)
    (root / "sub").mkdir()
    tone_wav(root / "sub" / "b_tone3000.wav", seconds=1.5, tone_s=(0.0, 1.5), hz=3000.0)
    (root / "notes.txt").write_text("not audio")  # ignored in a directory
    return root


def _classify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "classify", *args], capture_output=True, text=True, timeout=120
    )


def test_directory_json(model: Path, audio: Path) -> None:
    done = _classify(str(audio), "--model", str(model), "--json", "--top", "2")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(r["file"]).name for r in rows] == ["a_tone1000.wav", "b_tone3000.wav"]
    assert [r["label"] for r in rows] == ["tone_1000", "tone_3000"]
    for r in rows:
        assert set(r) == {"file", "label", "score", "top"}
        assert len(r["top"]) == 2
        assert r["top"][0] == [r["label"], r["score"]]


def test_score_is_mean_of_training_windows(model: Path, audio: Path) -> None:
    """The clip score equals training's aggregation: mean over window_ends windows."""
    path = audio / "a_tone1000.wav"
    done = _classify(str(path), "--model", str(model), "--json", "--hops", "--top", "3")
    row = json.loads(done.stdout)
    classifier = Classifier(read_bundle(model))
    m = classifier.manifest
    import wave

    with wave.open(str(path)) as wav:
        x = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    frames = compute(x, m.features)
    ends = window_ends(len(frames), m.window_frames, m.hop_frames)
    mean = np.mean([classifier.scores(window_at(frames, e, m.window_frames, m.features)) for e in ends], axis=0)
    assert len(row["hops"]) == len(ends)
    assert row["score"] == pytest.approx(float(mean.max()), abs=1e-4)
    last = (ends[-1] - 1) * m.features.hop_samples + m.features.window_samples - 1
    assert row["hops"][-1]["t"] == pytest.approx(last / m.features.sample_rate, abs=1e-3)


def test_unreadable_file_reported_and_run_goes_on(model: Path, audio: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF nonsense")
    missing = tmp_path / "missing.flac"
    done = _classify(str(bad), str(audio / "a_tone1000.wav"), str(missing), "--model", str(model))
    assert done.returncode == 1
    assert done.stdout.startswith(f"{audio / 'a_tone1000.wav'}: tone_1000 ")
    errors = [line for line in done.stderr.splitlines() if line.startswith("auricle:")]  # not TFLite's INFO
    assert len(errors) == 2, done.stderr
    assert errors[0].startswith(f"auricle: {bad}: cannot read audio")
    assert errors[1] == f"auricle: {missing}: cannot read audio: no such file"


def test_text_hops(model: Path, audio: Path) -> None:
    done = _classify(str(audio / "sub"), "--model", str(model), "--hops")
    lines = done.stdout.splitlines()
    assert lines[0].startswith(str(audio / "sub" / "b_tone3000.wav") + ": tone_3000")
    assert len(lines) > 5
    assert all(" s  " in line for line in lines[1:])


def test_bad_model_exits_2(audio: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.auricle"
    fake.write_bytes(b"not a zip")
    done = _classify(str(audio), "--model", str(fake))
    assert done.returncode == 2
    assert done.stderr.strip() == f"auricle: {fake}: not a bundle (not a zip file)"


# --- --events: the daemon's own pipeline and event logic ------------------------------------


@pytest.fixture(scope="module")
def two_tones(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 kHz tone at 1.0-2.0 s and a 3 kHz tone at 3.0-3.6 s in quiet noise (FLAC)."""
    import soundfile

    rate = 16000
    t = np.arange(5 * rate) / rate
    x = 0.001 * np.random.default_rng(3).standard_normal(len(t))
    x = np.where((t >= 1.0) & (t < 2.0), 0.3 * np.sin(2 * np.pi * 1000 * t), x)
    x = np.where((t >= 3.0) & (t < 3.6), 0.3 * np.sin(2 * np.pi * 3000 * t), x)
    path = tmp_path_factory.mktemp("events") / "two_tones.flac"
    soundfile.write(str(path), x, rate, subtype="PCM_16")
    return path


def _config_file(folder: Path, events: dict[str, object]) -> Path:
    import yaml

    path = folder / "auricle.yaml"
    path.write_text(yaml.safe_dump({"events": {"disabled": ["quiet"], **events}}))
    return path


def test_events_json_have_offsets_in_the_file(model: Path, two_tones: Path, tmp_path: Path) -> None:
    config = _config_file(tmp_path, {"hold_s": 0.2})
    done = _classify(str(two_tones), "--model", str(model), "--events", "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    *rows, summary = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["tone_1000", "tone_3000"]
    assert summary == summary | {"file": str(two_tones), "duration_s": 5.0, "events": 2}, summary
    assert summary["top_label"] in ("tone_1000", "tone_3000") and summary["top_score"] >= summary["top_threshold"]
    for r, (on, off) in zip(rows, [(1.0, 2.0), (3.0, 3.6)], strict=True):
        assert set(r) == {"file", "label", "start_s", "end_s", "peak", "mean"}
        assert on - 0.1 <= r["start_s"] <= on + 1.0, r
        assert off - 0.1 <= r["end_s"] <= off + 1.0, r
        assert 0.5 <= r["mean"] <= r["peak"] <= 1.0


def test_events_follow_the_config(model: Path, two_tones: Path, tmp_path: Path) -> None:
    """A threshold in the config is the daemon's: raising tone_3000's above 1 silences it."""
    config = _config_file(tmp_path, {"hold_s": 0.2, "thresholds": {"tone_3000": 1.0}})
    done = _classify(str(two_tones), "--model", str(model), "--events", "--json", "-c", str(config))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["label"] for r in rows if "label" in r] == ["tone_1000"] and rows[-1]["events"] == 1


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ({}, ["tone_1000"]),  # the default listening set: the bundle's alert label
        ({"enabled": ["tone_3000"]}, ["tone_1000", "tone_3000"]),  # a label off by default is added
        ({"enabled": ["tone_1000"]}, ["tone_1000"]),  # a default one named: the list narrows to it
        ({"listening": "all"}, ["tone_1000", "tone_3000"]),
    ],
)
def test_events_listen_to_the_default_set_unless_switched_on(
    two_tones: Path, tmp_path: Path, events: dict[str, object], expected: list[str]
) -> None:
    """As the daemon: only the labels Home Assistant shows enabled raise events, until a config adds others."""
    model = tone_bundle(tmp_path / "alerting.auricle", alert_labels=("tone_1000",), selftest=False)
    config = _config_file(tmp_path, {"hold_s": 0.2, **events})
    done = _classify(str(two_tones), "--model", str(model), "--events", "--json", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert [r["label"] for r in map(json.loads, done.stdout.splitlines()) if "label" in r] == expected


def test_the_clip_decision_ranks_labels_off_by_default(audio: Path, tmp_path: Path) -> None:
    """The clip label is not an event: a label that raises no events by default still wins its clip."""
    model = tone_bundle(tmp_path / "alerting.auricle", alert_labels=("tone_1000",), selftest=False)
    done = _classify(str(audio / "sub" / "b_tone3000.wav"), "--model", str(model), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == "tone_3000"


def test_the_clip_decision_never_names_an_optional_label_that_is_off(tmp_path: Path) -> None:
    """A 500 Hz tone lights the two-head model's Speech class: ``speech`` (off by default) would win the clip;
    it is never named until a config switches it on."""
    model = audioset_bundle(tmp_path / "two_heads.auricle", selftest=False)
    tone_wav(tmp_path / "talk.wav", seconds=2.0, tone_s=(0.0, 2.0), hz=500.0)
    done = _classify(str(tmp_path / "talk.wav"), "--model", str(model), "--json", "--top", "9")
    assert done.returncode == 0, done.stderr
    named = [label for label, _ in json.loads(done.stdout)["top"]]
    assert "speech" not in named and "doorbell" not in named and "smoke_alarm" in named, named
    (tmp_path / "speech.yaml").write_text("events:\n  enabled: [speech]\n")
    done = _classify(str(tmp_path / "talk.wav"), "--model", str(model), "--json", "-c", str(tmp_path / "speech.yaml"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == "speech"


def test_events_table_for_people(model: Path, two_tones: Path, tmp_path: Path) -> None:
    config = _config_file(tmp_path, {"hold_s": 0.2})
    done = _classify(str(two_tones), "--model", str(model), "--events", "--config", str(config))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{two_tones}: 2 events in 5.0 s; highest smoothed score tone_"), lines[0]
    assert lines[1].split() == ["start", "end", "label", "peak", "mean"]
    assert lines[2].split()[2] == "tone_1000" and lines[2].split()[0].startswith("0:01.")


def test_events_bad_config_is_one_line(model: Path, two_tones: Path, tmp_path: Path) -> None:
    config = _config_file(tmp_path, {"hold_s": -1})
    done = _classify(str(two_tones), "--model", str(model), "--events", "--config", str(config))
    assert done.returncode == 2
    assert "hold_s" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_file_without_events_still_says_what_it_heard(model: Path, tmp_path: Path) -> None:
    """Processed but quiet: one summary per file (duration, no events, the label nearest to one and its
    threshold), so a file without events never looks like a skipped one."""
    quiet = tone_wav(tmp_path / "quiet.wav", seconds=2.0, tone_s=(0.0, 0.0))
    config = _config_file(tmp_path, {"thresholds": {"tone_1000": 0.9, "tone_3000": 0.9}})
    done = _classify(str(quiet), "--model", str(model), "--events", "--json", "-c", str(config))
    assert done.returncode == 0, done.stderr
    (summary,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert set(summary) == {
        "file",
        "duration_s",
        "hops",
        "events",
        "top_label",
        "top_score",
        "top_peak",
        "top_threshold",
    }
    assert (summary["file"], summary["duration_s"], summary["events"]) == (str(quiet), 2.0, 0)
    assert summary["hops"] > 0 and summary["top_label"] in ("tone_1000", "tone_3000"), "quiet is disabled"
    assert summary["top_score"] <= summary["top_peak"] and summary["top_score"] < summary["top_threshold"] == 0.9
    table = _classify(str(quiet), "--model", str(model), "--events", "-c", str(config))
    assert table.returncode == 0 and table.stdout.splitlines() == [
        f"{quiet}: 0 events in 2.0 s; highest smoothed score {summary['top_label']} {summary['top_score']:.2f} "
        f"(one hop {summary['top_peak']:.2f}), below its threshold 0.90"
    ]
