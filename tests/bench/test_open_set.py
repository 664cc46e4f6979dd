"""bench/open_set.py: a recording of both outputs through the daemon's pipeline, replayed under rules with the
device's own HeadScorer and EventDetector, on a real two-output int8 model (tests/support/models.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from support.models import MUSIC, audioset_bundle

from bench import open_set, streams
from bench.event_scoring import Span
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from edge.model.evidence import Evidence

RATE = 16000


def tones(*hz: float, seconds: float = 1.5) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return sum((0.3 * np.sin(2 * np.pi * f * t) for f in hz), np.zeros_like(t)).astype(np.float32)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[open_set.Recording, Classifier]:
    bundle = read_bundle(audioset_bundle(tmp_path_factory.mktemp("open_set") / "two.auricle", selftest=False))
    bare = open_set._without_rule(bundle.manifest)  # the test model's veto (Speech) is left out
    clf = Classifier(dataclasses.replace(bundle, manifest=bare))
    spans = [Span("a", "tone_1000", 1.0, 2.5), Span("b", "tone_1000", 3.5, 5.0)]
    return open_set.record(clf, _samples(), spans), clf


def _samples() -> np.ndarray:
    quiet = np.zeros(RATE, dtype=np.float32)
    return np.concatenate([quiet, tones(1000, 500), quiet, tones(1000, 5000), quiet])


def test_both_outputs_are_recorded_at_every_hop(recorded: tuple[open_set.Recording, Classifier]) -> None:
    rec, clf = recorded
    assert rec.events.shape == (len(rec.t), 2) and rec.audioset.shape == (len(rec.t), 521)
    assert rec.seconds == pytest.approx(6.0) and np.all(np.diff(rec.t) > 0)
    assert rec.events[:, 0].max() > 0.9  # tone_1000 under speech too: no veto in the recording
    assert rec.audioset[:, MUSIC].max() > 0.9 and clf.manifest.audioset is not None


def test_a_rule_is_replayed_through_the_device_code(recorded: tuple[open_set.Recording, Classifier]) -> None:
    rec, clf = recorded
    thresholds = {"tone_1000": 0.3, "coughing": 0.3}
    mapping = {"tone_1000": [MUSIC]}
    plain = open_set.Rule(clf.manifest, mapping, 0.0, 0.05, thresholds).starts(rec)
    assert [(d.label, round(d.start_s)) for d in plain] == [("tone_1000", 1), ("tone_1000", 4)]
    confirmed = open_set.Rule(clf.manifest, mapping, 0.5, 0.05, thresholds).starts(rec)
    assert [(d.label, round(d.start_s)) for d in confirmed] == [("tone_1000", 4)]  # only where Music agrees
    floored = open_set.Rule(clf.manifest, mapping, 0.5, 0.6, thresholds)
    assert floored.thresholds == {"tone_1000": 0.6, "coughing": 0.6}


def test_a_recording_is_cached_with_its_spans(
    recorded: tuple[open_set.Recording, Classifier], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec, _ = recorded
    monkeypatch.setattr(open_set, "CACHE", tmp_path)
    made = []
    first = open_set._cached("k", lambda: made.append(1) or rec)
    again = open_set._cached("k", lambda: made.append(1) or rec)
    assert made == [1] and again.spans == rec.spans == first.spans
    assert np.array_equal(again.audioset, rec.audioset) and again.seconds == rec.seconds


def test_figures_name_the_labels_of_the_false_events(recorded: tuple[open_set.Recording, Classifier]) -> None:
    rec, clf = recorded
    one_sound = dataclasses.replace(rec, spans=rec.spans[:1])  # the second tone is not a placed sound: false
    rule = open_set.Rule(clf.manifest, {"tone_1000": [MUSIC]}, 0.0, 0.05, {"tone_1000": 0.3, "coughing": 0.3})
    got = open_set.figures(rule, {"home": [one_sound], "background": [rec], "fold": [rec]})
    assert got["home_false_labels"] == {"tone_1000": 1} and got["background_false_events"] == 2
    assert open_set.figures(rule, {"home": [rec], "background": [rec], "fold": [rec]})["home_false_labels"] == {}


def test_a_bundles_evidence_is_left_out_of_the_recording(
    recorded: tuple[open_set.Recording, Classifier], tmp_path: Path
) -> None:
    """An evidence bundle's recording holds the network's own scores, so ``--evidence`` applies its rule once
    (it was applied twice: the recording already weighed, then the replay again)."""
    rec, clf = recorded
    head = clf.manifest.audioset
    assert head is not None
    fitted = Evidence(classes={"tone_1000": (MUSIC,)}, weights={"tone_1000": (1.0, 2.0, -3.0)})
    bundle = read_bundle(audioset_bundle(tmp_path / "ev.auricle", head=dataclasses.replace(head, evidence=fitted)))
    assert bundle.manifest.audioset is not None and bundle.manifest.audioset.evidence == fitted
    bare = open_set._without_rule(bundle.manifest)
    assert bare.audioset is not None and bare.audioset.evidence is None
    again = open_set.record(Classifier(dataclasses.replace(bundle, manifest=bare)), _samples(), rec.spans)
    assert np.allclose(again.events, rec.events, atol=1 / 128)  # the network's scores, as without the evidence
    weighed = open_set.record(Classifier(bundle), _samples(), rec.spans)
    assert np.abs(weighed.events[:, 0] - rec.events[:, 0]).max() > 0.1  # what the old recording held


def test_another_bed_is_cached_apart() -> None:
    """The hour in a home from another corpus (``--bed``) never reuses the default bed's recording."""
    default = open_set.parse_args(["--model", "x.auricle"])
    more = open_set.parse_args(["--model", "x.auricle", "--bed", "../shared/data/background_more/background_more.csv"])
    assert default.bed == streams.BACKGROUND_CSV
    assert open_set.home_key("m-calibrate-1-7", default.bed) == "m-calibrate-1-7-home"  # the caches kept so far
    assert open_set.home_key("m-calibrate-1-7", more.bed) == "m-calibrate-1-7-home-background_more"
