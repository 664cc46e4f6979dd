"""A bundle whose model has two outputs (label scores, 521 AudioSet scores): loading, scoring, the veto,
the optional labels, the self-test of both outputs, and every refusal of a malformed ``audioset`` section.

The models are real full-int8 TFLite files converted at test time (tests/support/models.py).
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.models import HEAD, MUSIC, SMOKE_ALARM, audioset_bundle, tone_bundle

from edge.daemon.config import Config
from edge.daemon.replay import sounds, stream_events
from edge.daemon.startup import default_model_path
from edge.features import compute, window_at
from edge.model import selftest
from edge.model.audioset import AUDIOSET_CLASSES, Confirm, info_lines
from edge.model.bundle import BundleError, read_bundle, write_bundle
from edge.model.classifier import Classifier
from edge.model.evidence import Evidence
from edge.model.outputs import OutputSpec, size_of
from edge.schema import build

RATE = 16000
OLD_BUNDLE = Path(__file__).resolve().parents[1] / "data" / "esc50-3.0.0.auricle"
OPTIONAL = ("smoke_alarm", "speech", "doorbell")


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return audioset_bundle(tmp_path_factory.mktemp("two") / "two.auricle")


@pytest.fixture(scope="module")
def clf(two: Path) -> Classifier:
    return Classifier(read_bundle(two))


def tones(*hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return sum((0.3 * np.sin(2 * np.pi * f * t) for f in hz), np.zeros_like(t)).astype(np.float32)


def scores_of(clf: Classifier, samples: np.ndarray) -> dict[str, float]:
    m = clf.manifest
    frames = compute(samples, m.features)
    got = clf.scores(window_at(frames, len(frames), m.window_frames, m.features))
    assert got.shape == (len(clf.labels),) and got.dtype == np.float32
    return {label: round(float(v), 2) for label, v in zip(clf.labels, got, strict=True)}


def test_scores_are_the_labels_then_the_optional_labels(clf: Classifier) -> None:
    assert clf.labels == ("tone_1000", "coughing", *OPTIONAL)
    assert clf.manifest.labels == ("tone_1000", "coughing")
    assert scores_of(clf, tones(1000)) == {"tone_1000": 1.0, "coughing": 0.0, "smoke_alarm": 0.0, "speech": 0.0,
                                           "doorbell": 0.0}  # fmt: skip
    assert scores_of(clf, tones(2000))["smoke_alarm"] == 0.99  # max of its classes 393 and 394
    audioset = clf.audioset_scores()
    assert audioset is not None and audioset.shape == (AUDIOSET_CLASSES,) and audioset.dtype == np.float32
    assert audioset[SMOKE_ALARM] > 0.9 and np.sort(audioset)[-2] < 0.05  # the raw 521, of the latest inference


def test_the_section_round_trips(two: Path) -> None:
    b = read_bundle(two)
    assert b.manifest.to_json() == b.manifest_bytes
    assert b.manifest.audioset == dataclasses.replace(HEAD, output=b.manifest.audioset.output)  # type: ignore[union-attr]
    assert b.manifest.score_thresholds == {"tone_1000": 0.5, "coughing": 0.5} | dict.fromkeys(OPTIONAL, 0.5)


def test_the_veto_silences_event_labels_but_not_exempt_or_optional_ones(clf: Classifier) -> None:
    vetoed = scores_of(clf, tones(1000, 500))  # 500 Hz lights Speech, a veto class
    assert vetoed["tone_1000"] == 0.0 and vetoed["speech"] == 1.0
    exempt = scores_of(clf, tones(3000, 500))
    assert exempt["coughing"] == 0.99 and exempt["speech"] == 1.0


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory: pytest.TempPathFactory) -> Classifier:
    """tone_1000 counts only where Music (a 5 kHz tone here) agrees; coughing has no AudioSet class; no veto."""
    head = dataclasses.replace(HEAD, veto=None, confirm=Confirm(threshold=0.5, classes={"tone_1000": (MUSIC,)}))
    path = audioset_bundle(tmp_path_factory.mktemp("confirmed") / "confirmed.auricle", head=head)
    return Classifier(read_bundle(path))


def test_the_confirmation_keeps_a_label_only_where_its_classes_agree(confirmed: Classifier) -> None:
    assert scores_of(confirmed, tones(1000))["tone_1000"] == 0.0  # Music silent: unconfirmed
    assert scores_of(confirmed, tones(1000, 5000))["tone_1000"] == 1.0
    assert scores_of(confirmed, tones(3000))["coughing"] == 0.99  # no AudioSet class: never silenced
    assert scores_of(confirmed, tones(2000, 5000))["smoke_alarm"] == 0.99  # optional labels untouched
    quiet = np.zeros(RATE, dtype=np.float32)
    parts = [quiet, tones(1000), quiet, tones(1000, 5000), quiet, tones(3000), quiet]
    config = build(Config, {"events": {"hold_s": 0.2}}, "test")
    found = [(e.label, int(e.start_offset_s)) for e in sounds(stream_events(confirmed, np.concatenate(parts), config))]
    assert found == [("tone_1000", 3), ("coughing", 5)]
    assert info_lines(confirmed.manifest.audioset)[1] == (  # type: ignore[arg-type]
        "confirm: 1 labels count only where their AudioSet classes reach 0.5"
    )


@pytest.fixture(scope="module")
def soft(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rule = Confirm(threshold=0.1, classes={"tone_1000": (MUSIC,)}, slope=2.0, keep_at=0.999)
    head = dataclasses.replace(HEAD, veto=None, confirm=rule)
    return audioset_bundle(tmp_path_factory.mktemp("soft") / "soft.auricle", head=head)


def test_the_soft_confirmation_weighs_a_score_by_its_evidence(soft: Path) -> None:
    b = read_bundle(soft)
    assert b.manifest.to_json() == b.manifest_bytes
    confirm = json.loads(b.manifest_bytes)["audioset"]["confirm"]
    assert (confirm["slope"], confirm["keep_at"]) == (2.0, 0.999)  # the bundle states the rule
    clf = Classifier(b)
    assert scores_of(clf, tones(1000, 5000))["tone_1000"] == 1.0  # Music heard: the score stands
    alone = scores_of(clf, tones(1000))["tone_1000"]  # Music silent: weighed down, not zeroed to a cliff
    assert alone < 0.05
    assert scores_of(clf, tones(3000))["coughing"] == 0.99  # no AudioSet class: untouched
    assert info_lines(clf.manifest.audioset)[1] == (  # type: ignore[arg-type]
        "confirm: 1 labels weighed by their AudioSet classes (half the score at 0.1, slope 2); "
        "a label head score >= 0.999 is kept"
    )


def test_the_soft_confirmation_is_continuous_and_keeps_a_sure_score() -> None:
    from edge.model.audioset import HeadScorer

    rule = Confirm(threshold=0.1, classes={"tone_1000": (MUSIC,)}, slope=2.0, keep_at=0.95)
    scorer = HeadScorer(dataclasses.replace(HEAD, veto=None, confirm=rule, labels=()), ("tone_1000", "coughing"))
    audioset = np.zeros(AUDIOSET_CLASSES, dtype=np.float32)

    def at(score: float, evidence: float) -> float:
        audioset[MUSIC] = evidence
        return float(scorer.combine(np.array([score, 0.5], dtype=np.float32), audioset)[0])

    assert at(0.8, 0.1) == pytest.approx(0.4)  # half the score at the threshold
    steps = [at(0.8, e) for e in np.arange(0.05, 0.15, 1 / 256)]  # one int8 step of evidence at a time
    assert np.all(np.diff(steps) > 0) and np.max(np.diff(steps)) < 0.05  # no cliff anywhere near the threshold
    assert at(0.8, 0.01) < 0.01 and at(0.8, 0.9) > 0.79
    assert at(0.96, 0.0) == pytest.approx(0.96)  # the label head is sure: kept whatever AudioSet says
    hard = HeadScorer(dataclasses.replace(HEAD, veto=None, confirm=dataclasses.replace(rule, slope=0.0), labels=()),
                      ("tone_1000", "coughing"))  # fmt: skip
    audioset[MUSIC] = 0.099
    assert hard.combine(np.array([0.8, 0.5], dtype=np.float32), audioset)[0] == 0.0  # slope 0: the old gate
    assert hard.combine(np.array([0.96, 0.5], dtype=np.float32), audioset)[0] == np.float32(0.96)  # kept there too
    gate = HeadScorer(dataclasses.replace(HEAD, veto=None, confirm=Confirm(threshold=0.1, classes=rule.classes),
                                          labels=()), ("tone_1000", "coughing"))  # fmt: skip
    assert gate.combine(np.array([1.0, 0.5], dtype=np.float32), audioset)[0] == 0.0  # keep_at 1: nothing kept


def test_a_hard_gate_writes_its_confirm_as_before(tmp_path: Path) -> None:
    head = dataclasses.replace(HEAD, veto=None, confirm=Confirm(threshold=0.5, classes={"tone_1000": (MUSIC,)}))
    b = read_bundle(audioset_bundle(tmp_path / "hard.auricle", head=head))
    assert set(json.loads(b.manifest_bytes)["audioset"]["confirm"]) == {"threshold", "classes"}


def test_outputs_are_found_by_size_in_either_order(clf: Classifier, tmp_path: Path) -> None:
    other = Classifier(read_bundle(audioset_bundle(tmp_path / "first.auricle", audioset_first=True, selftest=False)))
    orders = {tuple(size_of(d) for d in c._interp.get_output_details()) for c in (clf, other)}
    assert orders == {(2, AUDIOSET_CLASSES), (AUDIOSET_CLASSES, 2)}, "the converter should give both orders here"
    for sound in (tones(1000), tones(1000, 500), tones(2000)):
        assert scores_of(other, sound) == scores_of(clf, sound)


def test_replayed_events_follow_the_rule(clf: Classifier) -> None:
    quiet = np.zeros(RATE, dtype=np.float32)
    parts = [quiet, tones(1000), quiet, tones(1000, 500), quiet, tones(3000, 500), quiet, tones(2000), quiet]
    config = build(Config, {"events": {"hold_s": 0.2}}, "test")
    found = [(e.label, int(e.start_offset_s)) for e in sounds(stream_events(clf, np.concatenate(parts), config))]
    # each sound starts in the second it plays: tone_1000 alone, not under speech (vetoed); coughing under
    # speech (exempt); smoke_alarm (on by default).  speech and doorbell are off by default: never an event
    assert found == [("tone_1000", 1), ("coughing", 5), ("smoke_alarm", 7)]


def test_the_self_test_checks_both_outputs(two: Path, clf: Classifier) -> None:
    b = read_bundle(two)
    assert b.selftest is not None
    with zipfile.ZipFile(io.BytesIO(b.selftest)) as zf:
        assert sorted(zf.namelist()) == ["audioset.npy", "samples.npy", "scores.npy"]
    test = selftest.parse_selftest(b.selftest, b.manifest, b.path)
    assert test.audioset is not None and test.audioset.shape == (AUDIOSET_CLASSES,)
    assert selftest.run_selftest(clf, test, budget_ms=1000).max_diff_steps == 0.0
    wrong = test.audioset.copy()
    wrong[SMOKE_ALARM] += 0.5
    with pytest.raises(BundleError, match="stored ones: 'AudioSet class 393' by"):
        selftest.run_selftest(clf, dataclasses.replace(test, audioset=wrong), budget_ms=1000)
    without = selftest._npz({"samples.npy": (test.samples * 32768).astype(np.int16), "scores.npy": test.scores})
    with pytest.raises(BundleError, match=r"expected exactly samples\.npy, scores\.npy, audioset\.npy"):
        selftest.parse_selftest(without, b.manifest, b.path)


def test_info_lines_list_the_optional_labels(clf: Classifier) -> None:
    head = clf.manifest.audioset
    assert head is not None
    lines = info_lines(head)
    assert lines[0] == "AudioSet head: 521 scores, int8 (scale 0.00390625, zero point -128)"
    assert lines[1] == "veto: 0 Speech; 132 Music >= 0.5; exempt: coughing"
    assert lines[3] == "  smoke_alarm  0.50  on   393 Smoke detector, smoke alarm; 394 Fire alarm"
    assert lines[4] == "  speech       0.50  off  0 Speech"


def _section(two: Path) -> dict[str, Any]:
    with zipfile.ZipFile(two) as zf:
        section: dict[str, Any] = json.loads(zf.read("manifest.json"))["audioset"]
    return section


def _refusal(two: Path, tmp_path: Path, section: dict[str, Any]) -> str:
    """Write the two-output model with ``section`` (valid hashes) and return the one-line refusal."""
    b = read_bundle(two)
    data = json.loads(b.manifest_bytes)
    data["audioset"] = section
    with zipfile.ZipFile(two) as zf, zipfile.ZipFile(tmp_path / "bad.auricle", "w") as out:
        for name in zf.namelist():
            out.writestr(name, json.dumps(data) if name == "manifest.json" else zf.read(name))
    with pytest.raises(BundleError) as info:
        read_bundle(tmp_path / "bad.auricle")
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("labels", 0, "classes"), [393, 600], "labels[0].classes: expected AudioSet class indices 0..520, got 600"),
        (("veto", "classes"), [-1], "veto.classes: expected AudioSet class indices 0..520, got -1"),
        (("veto", "classes"), [], "veto.classes: expected at least one AudioSet class index"),
        (("veto", "threshold"), 1.5, "veto.threshold: expected a number 0..1 (score), got 1.5"),
        (("veto", "exempt"), ["coughing", "snoring"], "veto.exempt: not among the event labels: snoring"),
        (("labels", 1, "name"), "tone_1000", "labels[1].name: 'tone_1000' is already one of the model's labels"),
        (("labels", 2, "name"), "speech", "labels[2].name: 'speech' is given twice"),
        (("labels", 0, "name"), "Smoke Alarm", "labels[0].name: expected a snake_case name"),
        (("labels", 0, "threshold"), -0.1, "labels[0].threshold: expected a number 0..1"),
        (("labels", 1, "class_names"), ["Speech", "Talk"], "labels[1].class_names: expected one name per class (1)"),
        (("labels", 0, "enabled"), True, "labels[0].enabled: unknown key"),
        (("output", "dtype"), "uint8", "output.dtype: expected one of 'float32', 'int8'"),
        (("confirm",), {"threshold": 0.1, "classes": {"snoring": [0]}},
         "confirm.classes: not among the event labels: snoring"),
        (("confirm",), {"threshold": 0.1, "classes": {"coughing": [521]}},
         "confirm.classes.coughing: expected AudioSet class indices 0..520, got 521"),
        (("confirm",), {"threshold": 2, "classes": {}}, "confirm.threshold: expected a number 0..1 (score), got 2"),
    ],
)  # fmt: skip
def test_a_malformed_section_is_refused_naming_the_field(
    two: Path, tmp_path: Path, path: tuple[Any, ...], value: object, reason: str
) -> None:
    section = _section(two)
    node: Any = section
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert f"manifest.json: audioset.{reason}" in _refusal(two, tmp_path, section)


def test_the_second_output_must_be_there_as_declared(two: Path, tmp_path: Path) -> None:
    one = read_bundle(tone_bundle(tmp_path / "one.auricle", selftest=False))
    head = dataclasses.replace(HEAD, output=OutputSpec(dtype="int8", scale=1 / 256, zero_point=-128), veto=None)
    manifest = dataclasses.replace(one.manifest, audioset=head)
    write_bundle(tmp_path / "missing.auricle", manifest, one.model)  # the manifest alone is valid
    with pytest.raises(BundleError, match=r"audioset section needs two model outputs \(3 label scores and 521 Audio"):
        Classifier(read_bundle(tmp_path / "missing.auricle"))
    b = read_bundle(two)
    assert b.manifest.audioset is not None
    other = dataclasses.replace(b.manifest.audioset.output, scale=0.5)
    manifest = dataclasses.replace(b.manifest, audioset=dataclasses.replace(b.manifest.audioset, output=other))
    write_bundle(tmp_path / "scale.auricle", manifest, b.model)
    with pytest.raises(BundleError, match=r"AudioSet output is int8 \(0.00390625, -128\), not the manifest's audio"):
        Classifier(read_bundle(tmp_path / "scale.auricle"))


EVIDENCE = Evidence(
    classes={"tone_1000": (MUSIC,)},
    weights={"tone_1000": (1.0, 2.0, 0.0), "coughing": (2.0, 0.0, -1.0)},
    keep_at=0.95,
)


@pytest.fixture(scope="module")
def weighed(tmp_path_factory: pytest.TempPathFactory) -> Classifier:
    """``tone_1000`` weighed with Music's evidence (keep at 0.95), ``coughing`` calibrated on its own."""
    head = dataclasses.replace(HEAD, veto=None, evidence=EVIDENCE)
    return Classifier(read_bundle(audioset_bundle(tmp_path_factory.mktemp("evidence") / "ev.auricle", head=head)))


def _sigmoid(z: float) -> float:
    return float(1 / (1 + np.exp(-z)))


def _logit(p: float) -> float:
    q = min(max(p, 1 / 512), 1 - 1 / 512)
    return float(np.log(q / (1 - q)))


def test_the_evidence_is_the_fitted_combination_of_both_scores(weighed: Classifier) -> None:
    plain = Classifier(
        read_bundle(
            audioset_bundle(
                Path(weighed.bundle.path).parent / "plain.auricle", head=dataclasses.replace(HEAD, veto=None)
            )
        )
    )
    for hz in ((1000,), (1000, 5000), (3000,), (3000, 5000), (2000,)):
        frames = compute(tones(*hz), plain.manifest.features)
        window = window_at(frames, len(frames), plain.manifest.window_frames, plain.manifest.features)
        raw, got = plain.scores(window), weighed.scores(window)
        audioset = weighed.audioset_scores()
        assert audioset is not None
        s, e = float(raw[0]), float(audioset[MUSIC])
        expected = _sigmoid(_logit(s) + 2 * _logit(e))
        expected = max(expected, s) if s >= 0.95 else expected
        assert got[0] == pytest.approx(expected, abs=1e-5), hz
        assert got[1] == pytest.approx(_sigmoid(2 * _logit(float(raw[1])) - 1), abs=1e-5), hz  # on its own
        assert np.array_equal(got[2:], raw[2:]), hz  # optional labels untouched


def test_a_sure_label_keeps_its_score_where_audioset_does_not_know_the_sound(weighed: Classifier) -> None:
    """1 kHz alone: the label head is sure (1.0), Music is silent; the gate gave 0, the evidence keeps 1.0."""
    assert scores_of(weighed, tones(1000))["tone_1000"] == 1.0
    assert scores_of(weighed, tones(1000, 5000))["tone_1000"] == 1.0
    assert scores_of(weighed, tones(3000))["tone_1000"] < 0.01  # no sound, no evidence: lower than alone


def test_the_evidence_round_trips_and_says_what_it_does(weighed: Classifier) -> None:
    b = weighed.bundle
    assert b.manifest.to_json() == b.manifest_bytes
    assert b.manifest.audioset is not None and b.manifest.audioset.evidence == EVIDENCE
    assert b'"evidence"' in b.manifest_bytes
    assert (
        "evidence: 2 labels combine their score with AudioSet's (1 with AudioSet classes, the rest calibrated "
        "alone); a label head score >= 0.95 is kept"
    ) in info_lines(b.manifest.audioset)


@pytest.mark.parametrize(
    ("evidence", "reason"),
    [
        ({"classes": {"snoring": [0]}, "weights": {}}, "evidence.classes: not among the event labels: snoring"),
        ({"weights": {"coughing": [1, 2]}}, "evidence.weights.coughing: expected three finite numbers"),
        ({"weights": {"coughing": [1, 2, 0]}}, "evidence.weights.coughing: a weight on evidence, but the label has"),
        ({"classes": {"coughing": [600]}}, "evidence.classes.coughing: expected AudioSet class indices 0..520"),
        ({"weights": {"tone_1000": [1, "x", 0]}}, "evidence.weights.tone_1000[1]: expected a number"),
        ({"keep_at": 1.5}, "evidence.keep_at: expected a number 0..1"),
    ],
)
def test_a_malformed_evidence_is_refused_naming_the_field(
    two: Path, tmp_path: Path, evidence: dict[str, object], reason: str
) -> None:
    section = _section(two)
    section["evidence"] = evidence
    assert f"manifest.json: audioset.{reason}" in _refusal(two, tmp_path, section)


def test_confirm_and_evidence_together_are_refused(two: Path, tmp_path: Path) -> None:
    section = _section(two)
    section["confirm"] = {"threshold": 0.1, "classes": {}}
    section["evidence"] = {"weights": {}}
    assert "audioset.evidence: give either confirm or evidence, not both" in _refusal(two, tmp_path, section)


def test_old_bundles_read_and_write_as_before() -> None:
    old = read_bundle(OLD_BUNDLE)  # esc50 3.0.0, shipped before the AudioSet head existed
    assert old.manifest.version == "3.0.0" and old.manifest.audioset is None
    assert old.manifest.to_json() == old.manifest_bytes  # byte for byte
    assert old.manifest.score_labels == old.manifest.event_labels
    assert old.manifest.score_thresholds == old.manifest.thresholds
    assert b'"audioset"' not in old.manifest_bytes
    assert Classifier(old).audioset_scores() is None


def test_the_shipped_model_weighs_its_labels_by_the_audioset_head() -> None:
    shipped = read_bundle(default_model_path()).manifest
    head = shipped.audioset
    assert head is not None and head.confirm is not None and head.veto is None and head.evidence is None
    assert (head.confirm.threshold, head.confirm.slope, head.confirm.keep_at) == (0.03, 4.0, 0.97)  # fitted (5.2.0)
    assert head.on_by_default == ("smoke_alarm",)
    unconfirmed = sorted(set(shipped.event_labels) - set(head.confirm.classes))
    assert unconfirmed == ["can_opening", "drinking_sipping", "washing_machine"]  # AudioSet has no class for them
    assert min(shipped.thresholds.values()) >= 0.95  # calibration.min_threshold (5.3.0)


def test_model_info_shows_the_audioset_head(two: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli.main import main as cli_main

    assert cli_main(["model", "info", str(two)]) == 0
    out = capsys.readouterr().out
    assert "  AudioSet head: 521 scores, int8" in out and "    smoke_alarm  0.50  on" in out
