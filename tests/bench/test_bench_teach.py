"""bench/teach.py: the tiny case end to end, and that the benchmark's fit and replay are the device's own (the
fit of ``auricle teach``/a verdict, the events of the daemon's pipeline with the heads applied)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from bench import streams, teach
from bench import teach_material as tm
from bench import teach_record as tr
from bench.event_scoring import Detection, Span
from edge.daemon.config import Config
from edge.daemon.replay import stream_events
from edge.detect import teaching
from edge.detect.events import EventParams
from edge.learn.store import TaughtStore
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from edge.model.embedding import background_embeddings
from edge.model.outputs import OutputSpec

MODEL = streams.ROOT / "models" / "esc50.auricle"
RATE = 16000


def _needs_shared() -> Classifier:
    needed = [streams.SHARED / "peers" / "yamnet_spectra_in.tflite", streams.ESC50_CSV, tm.MORE_CSV, MODEL]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f"needs the shared material and the shipped model: missing {missing}")
    clf = Classifier(read_bundle(MODEL))
    if not clf.has_embedding:
        pytest.skip("the shipped model has no embedding output (esc50 4.1.0 or later)")
    return clf


def test_scoring_counts_heard_sounds_and_every_other_start_as_false() -> None:
    spans = [Span("a", "knock", 10.0, 12.0), Span("b", "knock", 30.0, 31.0), Span("c", "flush", 50.0, 55.0)]
    found = [
        Detection("knock", 9.6, 10.2),  # 0.4 s early: heard
        Detection("knock", 11.0, 11.2),  # a second start on the same sound: not a false event either
        Detection("flush", 31.5, 32.0),  # near a knock: a wrong label, false
        Detection("knock", 40.0, 40.2),  # in the bed: false
    ]
    s = teach.score(spans, found, ["knock", "flush"])
    assert s["per_label"] == {"knock": {"sounds": 2, "heard": 1}, "flush": {"sounds": 1, "heard": 0}}
    assert s["false"] == 2 and sorted(s["false_labels"]) == ["flush", "knock"]


def test_a_verdict_keeps_the_events_hops_from_a_second_before_its_start_to_its_end() -> None:
    t = np.arange(0.2, 10.01, 0.2)
    codes = np.arange(len(t), dtype=np.int8)[:, None].repeat(3, axis=1)
    spec = OutputSpec(dtype="int8", scale=1.0, zero_point=0)
    hops = tr.Hops(t, codes, np.zeros((len(t), 0), np.float32), spec, 10.0)
    rows = teach.verdict_rows(hops, [(Detection("dog", 3.0, 3.4), 4.0), (Detection("dog", 8.0, 8.4), 8.2)])
    kept = [round(float(v) * 0.2 + 0.2, 1) for v in rows[:, 0]]
    assert kept == [2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.2, 3.4, 3.6, 3.8, 4.0, 7.0, 7.2, 7.4, 7.6, 7.8, 8.0, 8.2]


def test_the_benchmarks_fit_is_the_devices(tmp_path: Path) -> None:
    """fit_like_device on the same windows gives the heads edge.detect.teaching.fit_all stores: a new label, and a
    correction of a model label from a verdict's embeddings, against the bundle's set and the reservoir."""
    clf = _needs_shared()
    rng = np.random.default_rng(3)
    spec = clf.manifest.embedding
    assert spec is not None and clf.bundle.background
    shipped = background_embeddings(clf.bundle.background, spec, "bundle")
    pick = rng.permutation(len(shipped))
    reservoir, knock, dog_not = shipped[pick[:40]] * 1.1, shipped[pick[40:60]] + 0.5, shipped[pick[60:70]] + 0.3
    store, sha = TaughtStore(tmp_path), clf.bundle.manifest.model_sha256
    store.add_embeddings("my_knock", "yes", knock.astype(np.float32), sha)
    store.add_embeddings("dog", "not", dog_not.astype(np.float32), sha)
    store.save_reservoir(sha, reservoir.astype(np.float32), 40)
    device = teaching.fit_all(store, clf, sha).heads
    common = np.concatenate([shipped, store.reservoir(sha)[0]])
    ours = tm.fit_like_device(
        {"my_knock": knock.astype(np.float32)}, {"dog": dog_not.astype(np.float32)}, common, clf.labels
    )
    assert [(h.label, h.kind) for h in device] == [("dog", "correction"), ("my_knock", "label")]
    assert ours == list(device)


def test_the_benchmarks_replay_is_the_daemons() -> None:
    """A recording replayed through Personal and the detector gives the events the daemon's pipeline gives on the
    same samples with the heads applied (classifier.taught), with and without a correction."""
    clf = _needs_shared()
    plan = dataclasses.replace(teach.PLANS["tiny"], sound_fold=4)
    items = tm.withheld(plan, ["dog", "rooster"], RATE, 2)
    samples, spans = streams.build_stream(items, 1.0, RATE, 1)
    hops = tr.record(clf, samples, spans)
    dogs = tm.withheld(dataclasses.replace(plan, sound_fold=1), ["dog"], RATE, 2)
    rows = np.concatenate([tr.record(clf, x).embeddings() for _, _, x in dogs])
    spec = clf.manifest.embedding
    assert spec is not None and clf.bundle.background
    heads = tm.fit_like_device({}, {"dog": rows}, background_embeddings(clf.bundle.background, spec, "b"), clf.labels)
    every = dataclasses.replace(Config(), events=EventParams(listening="all"))
    dogs_heard = []
    for taught in (clf.taught(()), clf.taught(heads)):
        live = [(e.label, e.start_offset_s) for e in stream_events(taught, samples, every) if e.kind == "start"]
        personal = taught.personal
        ours = [(d.label, d.start_s) for d, _ in tm.replay(hops, personal, teach.model_detector(clf, personal))]
        assert ours == sorted(live, key=lambda x: x[1])
        dogs_heard.append(sum(x == "dog" for x, _ in ours))
    assert dogs_heard[0] > dogs_heard[1]  # the correction silenced dogs it was not shown


def test_the_tiny_case_runs_and_says_what_it_measured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _needs_shared()
    out = tmp_path / "teach.json"
    assert teach.main(["--tiny", "--cache", str(tmp_path / "cache"), "--json-out", str(out)]) == 0
    report = json.loads(out.read_text())
    fs, fb = report["fewshot"], report["feedback"]
    assert [r["k"] for r in fs["rows"]] == [1, 3] and fs["home"]["sounds"] == 6
    for r in fs["rows"]:
        assert r["sounds"] == 6 and 0 <= r["heard"] <= 6 and r["recall"] == pytest.approx(r["heard"] / 6, abs=1e-3)
        assert r["background_false"] >= 0 and r["home_false_per_h"] >= 0
        assert all(0.5 <= t < 1 for t in r["threshold_min_median_max"])
    assert max(r["recall"] for r in fs["rows"]) >= 0.5  # toilet flushes and knocks from 1-3 examples
    assert sorted(fs["yamnet"]["labels"]) == ["door_wood_knock", "toilet_flush"] and fs["yamnet"]["sounds"] == 6
    assert [r["n"] for r in fb["rows"]] == [0, 1, 3, 5]
    assert len({r["instances"] for r in fb["rows"]}) == 1 and all(r["sounds"] == 4 for r in fb["rows"])
    assert 0 < report["cost"]["per_hop"]["share"] < 1
    printed = capsys.readouterr().out
    assert "FEW-SHOT" in printed and "FEEDBACK" in printed and "TARGETS (issue 25):" in printed
    assert (tmp_path / "cache").is_dir()  # embeddings and heads cached: a second run reads them

    knock = tmp_path / "knock.json"
    case = ["--part", "feedback", "--confusion", "footsteps", "door_wood_knock"]
    assert teach.main(["--tiny", *case, "--cache", str(tmp_path / "cache"), "--json-out", str(knock)]) == 0
    other = json.loads(knock.read_text())["feedback"]
    assert (other["sound"], other["label"]) == ("footsteps", "door_wood_knock") != (fb["sound"], fb["label"])
    assert "footsteps taken for door_wood_knock" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("case", "says"),
    [
        (["footstep", "door_wood_knock"], "no ESC-50 clip of 'footstep'"),
        (["footsteps", "door_knock"], "'door_knock' is not a label of esc50"),
    ],
)
def test_a_misspelled_feedback_case_is_refused(
    tmp_path: Path, case: list[str], says: str, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "teach.json"
    argv = ["--tiny", "--part", "feedback", "--confusion", *case, "--json-out", str(out)]
    assert teach.main([*argv, "--cache", str(tmp_path / "cache")]) == 2
    assert says in caplog.text and not out.exists()


@pytest.mark.parametrize(
    ("model", "says"),
    [
        (streams.ROOT / "tests" / "data" / "esc50-3.0.0.auricle", "esc50 3.0.0 has no embedding output, which --part"),
        (Path("no/such/bundle.auricle"), "bench.teach --model: "),
    ],
)
def test_a_bundle_it_cannot_teach_on_is_one_line_and_exit_2(
    tmp_path: Path, model: Path, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "teach.json"
    argv = ["--tiny", "--part", "cost", "--model", str(model), "--json-out", str(out)]
    assert teach.main([*argv, "--cache", str(tmp_path / "cache")]) == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and says in errors[0].getMessage() and "\n" not in errors[0].getMessage()
    assert not out.exists()
