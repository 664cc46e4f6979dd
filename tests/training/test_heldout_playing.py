"""Held-out false alarms say what was playing under each start: the file of the files back to back, the two
files and the level of a mixture's segment - with a real int8 tone model through the daemon's pipeline."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from support.daemon import tone_wav
from support.models import tone_bundle

from bench.heldout import playing_lines
from edge.audio.demo import write_wav
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from training.calibrate import replay
from training.calibrate.mixtures import mix
from training.evaluate.report import heldout_markdown

RATE = 16000


def _quiet(path: Path, seconds: float) -> Path:
    write_wav(path, 0.001 * np.random.default_rng(len(path.name)).standard_normal(round(seconds * RATE)))
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Classifier:
    return Classifier(read_bundle(tone_bundle(tmp_path_factory.mktemp("model") / "tones.auricle")))


def test_each_false_start_names_the_file_that_was_playing(classifier: Classifier, tmp_path: Path) -> None:
    folder = tmp_path / "corpus" / "noise"
    folder.mkdir(parents=True)
    paths = [
        _quiet(folder / "a.wav", 6.0),
        tone_wav(folder / "beep.wav", seconds=6.0, tone_s=(2.0, 4.0), hz=1000.0),
        _quiet(folder / "c.wav", 6.0),
    ]
    thresholds = {"quiet": 1.0, "tone_1000": 0.5, "tone_3000": 0.5}  # the quiet label never fires
    found = replay.heldout_false_alarms(classifier, paths, thresholds, mixture_s=120.0)
    assert found is not None
    plain = found["plain"]
    assert plain["false_events"] == plain["alarms"] == 1 and plain["per_label"] == {"tone_1000": 1}
    (event,) = plain["events"]
    assert event["playing"] == ["corpus/noise/beep.wav"] and 6.0 + 1.5 <= event["at_s"] <= 6.0 + 4.0
    mixed = found["mixtures"]
    assert mixed["false_events"] >= 1 and len(mixed["events"]) == mixed["false_events"]
    for e in mixed["events"]:  # only the beep has the tone: it plays in every segment a start falls in
        files, level = e["playing"][:-1], e["playing"][-1]
        assert "corpus/noise/beep.wav" in files and level.endswith(" dBFS"), e
    assert found["alarms"] == plain["alarms"] + mixed["alarms"] <= found["false_events"]
    text = "\n".join(heldout_markdown(found))
    assert f"| plain | {event['at_s']:.1f} | tone_1000 | alarm | corpus/noise/beep.wav |" in text
    assert f"{found['alarms']} of the {found['false_events']} starts are alarms" in text
    said = playing_lines(found)  # bench.heldout: the starts grouped by label and files
    assert "    tone_1000 x1 (1 alarms) in plain: corpus/noise/beep.wav" in said
    assert sum(int(line.split(" x")[1].split(" ")[0]) for line in said) == found["false_events"]


def test_the_segment_at_a_sample() -> None:
    t = np.arange(RATE) / RATE
    parts = [(0.1 * np.sin(2 * np.pi * hz * t)).astype(np.float32) for hz in (500, 2000)]
    mixture = mix(parts, 60.0, RATE)
    segments = mixture.segments
    assert segments[0].start == 0 and segments[-1].end == len(mixture.samples)
    assert all(a.end == b.start for a, b in itertools.pairwise(segments))
    assert mixture.at(0) == segments[0] and mixture.at(segments[1].start) == segments[1]
    assert mixture.at(segments[1].start - 1) == segments[0] and mixture.at(len(mixture.samples)) is None
    alone = next(s for s in segments if s.second is None)  # a segment of one part: its tone alone
    spectrum = np.abs(np.fft.rfft(mixture.samples[alone.start : alone.end]))
    peak_hz = np.fft.rfftfreq(alone.end - alone.start, 1 / RATE)[int(np.argmax(spectrum))]
    assert abs(peak_hz - (500, 2000)[alone.first]) < 5
    names = ["x/y/low.wav", "x/y/high.wav"]
    said = replay.playing_mixed(mixture, names, alone.start)
    assert said == [names[alone.first], f"{alone.level_dbfs:g} dBFS"]
    ends = np.cumsum([RATE, RATE])
    assert replay.playing_plain(ends, names, RATE - 1) == [names[0]]
    assert replay.playing_plain(ends, names, RATE) == [names[1]]
