"""``auricle teach``: a sound taught from real examples on the shipped model's embedding, through the real CLI.

What a user does on the device: five recordings of a sound, one command, and the sound is a label; ``--not``
silences what it names; bad input is one line and changes nothing.  The events are checked with ``auricle
classify --events``, the daemon's own pipeline and event logic with the same state dir.
"""

from __future__ import annotations

import csv
import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.daemon import write_config
from support.shared import shared_dir

from edge.audio.demo import write_wav as _write
from edge.learn.store import TaughtStore

ESC50 = shared_dir() / "data" / "esc50"
BACKGROUND = shared_dir() / "data" / "background"


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    _write(path, np.asarray(samples, dtype=np.float64), rate)
    return path


def _clips(category: str, fold: int, n: int) -> list[Path]:
    with (ESC50 / "esc50.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["category"] == category and r["fold"] == str(fold)]
    return [ESC50 / "audio" / r["filename"] for r in rows[:n]]


def _speech(n: int) -> list[Path]:
    with (BACKGROUND / "background.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["kind"] == "speech" and r["split"] == "calibrate"]
    return [BACKGROUND / r["filename"] for r in rows[:n]]


def _run(*args: str, limit_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    def limited() -> None:  # a full disk, as a write sees it: EFBIG beyond limit_bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))  # type: ignore[arg-type]

    return subprocess.run(
        [sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=300,
        preexec_fn=limited if limit_bytes else None,
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "auricle.yaml", {"model": {"state_dir": str(tmp_path / "state")}})


def _events(config: Path, files: list[Path], *extra: str) -> list[list[str]]:
    """Per file, the labels of its events (classify --events --json: a line per event, then a summary)."""
    done = _run("classify", "--events", "--json", "--config", str(config), *extra, *map(str, files))
    assert done.returncode == 0, done.stderr
    by_file: dict[str, list[str]] = {str(f): [] for f in files}
    for row in map(json.loads, done.stdout.splitlines()):
        if "label" in row:
            by_file[row["file"]].append(row["label"])
    return [by_file[str(f)] for f in files]


def _state(config: Path) -> TaughtStore:
    return TaughtStore(config.parent / "state")


def test_a_taught_sound_fires_on_new_instances_and_not_on_silence_or_speech(config: Path, tmp_path: Path) -> None:
    examples, withheld = _clips("rooster", 1, 5), _clips("rooster", 2, 4)
    done = _run("teach", "-c", str(config), "my_rooster", *map(str, examples))
    assert done.returncode == 0, done.stderr
    assert "kept 5 examples of my_rooster" in done.stdout and "my_rooster (new label)" in done.stdout
    silence = write_wav(tmp_path / "silence.wav", np.zeros(16000 * 5))
    heard = _events(config, [*withheld, *_speech(3), silence])
    assert sum("my_rooster" in x for x in heard[:4]) >= 3, heard  # new instances of it
    assert not any("my_rooster" in x for x in heard[4:]), heard  # speech, silence
    assert not any("my_rooster" in x for x in _events(config, withheld, "--untaught"))
    listed = _run("teach", "-c", str(config), "--list")
    assert listed.returncode == 0 and "my_rooster" in listed.stdout and "new label" in listed.stdout
    assert [e.path.name for e in _state(config).examples("my_rooster")][:1] == ["yes-001.wav"]
    forgot = _run("teach", "-c", str(config), "--forget", "my_rooster")
    assert forgot.returncode == 0 and "5 example(s) deleted" in forgot.stdout
    assert not any("my_rooster" in x for x in _events(config, withheld))


def test_not_silences_a_model_label_on_what_it_names(config: Path) -> None:
    dogs = _clips("dog", 2, 4)
    before = _events(config, dogs)
    assert sum("dog" in x for x in before) >= 3, before
    done = _run("teach", "-c", str(config), "--not", "dog", *map(str, _clips("dog", 1, 5)))
    assert done.returncode == 0, done.stderr
    assert "dog (correction)" in done.stdout
    after = _events(config, dogs)
    assert sum("dog" in x for x in after) <= 1, after


def _one_line(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], done.stderr


def test_bad_input_is_one_line_and_changes_nothing(config: Path, tmp_path: Path) -> None:
    good = _clips("rooster", 1, 2)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000 * 3))
    short = write_wav(tmp_path / "short.wav", 0.3 * np.sin(np.arange(4000) / 3))
    cases = [
        (("my_rooster", *map(str, good), str(silent)), 2, "silent.wav: silent"),
        (("my_rooster", str(short)), 2, "short.wav: 0.25 s, shorter than one window"),
        (("my_rooster", str(tmp_path / "missing.wav")), 2, "missing.wav"),
        (("Front Door", *map(str, good)), 2, "use 1-48 lowercase letters"),
        (("problem", *map(str, good)), 2, "clashes with the device's Problem sensor"),
        (("--not", "roostr", *map(str, good)), 2, "did you mean 'rooster'"),
        (("--forget", "nothing_taught",), 2, "nothing_taught"),
        (("my_rooster",), 2, "give LABEL and at least one FILE"),
    ]  # fmt: skip
    for args, code, text in cases:
        _one_line(_run("teach", "-c", str(config), *args), code, text)
    assert _state(config).examples() == []
    without = str(Path("tests/data/esc50-3.0.0.auricle").resolve())  # esc50 3.0.0: no embedding output
    old = write_config(tmp_path / "old.yaml", {"model": {"state_dir": str(tmp_path / "state"), "path": without}})
    _one_line(_run("teach", "-c", str(old), "my_rooster", *map(str, good)), 2, "has no embedding output")
    _one_line(_run("teach", "-c", str(config), "my_rooster", *map(str, good), limit_bytes=20000), 1, "cannot keep it")
    assert _state(config).examples() == []  # the failed write took its examples with it


def test_another_rate_is_resampled(config: Path, tmp_path: Path) -> None:
    import soundfile

    files = []
    for i, clip in enumerate(_clips("rooster", 1, 3)):
        samples, rate = soundfile.read(clip)
        t = np.arange(round(len(samples) * 44100 / rate))
        files.append(write_wav(tmp_path / f"r{i}.wav", np.interp(t * rate / 44100, np.arange(len(samples)), samples),
                               44100))  # fmt: skip
    done = _run("teach", "-c", str(config), "my_rooster", *map(str, files))
    assert done.returncode == 0, done.stderr
    stored = _state(config).examples("my_rooster")
    assert len(stored) == 3 and _state(config).read_audio(stored[0])[1] == 16000


def test_a_kill_during_a_teach_leaves_a_store_that_works(config: Path) -> None:
    examples = list(map(str, _clips("rooster", 1, 5)))
    for delay in (0.6, 1.2):
        proc = subprocess.Popen([sys.executable, "-m", "edge", "teach", "-c", str(config), "my_rooster", *examples],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        listed = _run("teach", "-c", str(config), "--list")
        assert listed.returncode == 0, listed.stderr
    done = _run("teach", "-c", str(config), "my_rooster", *examples)
    assert done.returncode == 0, done.stderr
    store = _state(config)
    n = len(store.examples("my_rooster"))
    assert n >= 5 and f"{n:>8}" in _run("teach", "-c", str(config), "--list").stdout


def test_feedback_on_an_event_the_daemon_heard(config: Path) -> None:
    """What the daemon keeps of an event (its hops' embeddings, recording off) becomes a 'not' example."""
    from edge.daemon.startup import default_model_path
    from edge.detect.teaching import clip_windows, read_clip
    from edge.learn.store import Heard
    from edge.model import bundle
    from edge.model.bundle import read_bundle
    from edge.model.classifier import Classifier

    path = default_model_path()
    clf = Classifier(read_bundle(path))
    rows = clip_windows(clf, read_clip(_clips("crying_baby", 1, 1)[0], 16000)).rows
    heard = Heard(id="c0ffee" * 5 + "00", label="cat", start=1e9, model_sha256=bundle.sha256(Path(path).read_bytes()),
                  rows=rows)  # fmt: skip
    _state(config).keep_event(heard)
    done = _run("feedback", heard.id, "wrong", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "(cat at" in done.stdout and "kept its embeddings (no clip: recording is off)" in done.stdout
    assert "correction threshold" in done.stdout
    assert [e.path.name for e in _state(config).examples("cat")] == ["not-001.emb.npz"]
    _one_line(_run("feedback", heard.id, "wrong", "-c", str(config)), 2, "not among the last 64 events")  # used
    _one_line(_run("feedback", "nope", "right", "-c", str(config)), 2, "event 'nope': not among the last 64")
