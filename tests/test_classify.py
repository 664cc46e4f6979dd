"""``auricle classify``: streaming pipeline per file, clip label = mean of hop scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.daemon import tone_wav
from support.models import tone_bundle

from edge.bundle import read_bundle
from edge.features import compute, window_at, window_ends
from edge.model import Classifier


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
