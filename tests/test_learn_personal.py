"""edge/learn/personal.py and edge/learn/store.py: heads applied to a model's scores, and what is kept on disk."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edge.learn.heads import Head
from edge.learn.personal import TAUGHT_THRESHOLD, Personal
from edge.learn.store import RECENT, Fitted, Heard, StoreError, TaughtStore, check_label

D = 8


def _head(label: str, axis: int, kind: str = "label", threshold: float = 0.7) -> Head:
    w = np.zeros(D)
    w[axis] = 10.0
    return Head(label=label, kind=kind, weights=tuple(w), bias=-5.0, threshold=threshold, examples=5, negatives=100)


def _e(axis: int | None) -> np.ndarray:
    e = np.zeros(D, np.float32)
    if axis is not None:
        e[axis] = 1.0
    return e


def test_a_new_label_is_appended_and_its_threshold_lands_on_the_default() -> None:
    personal = Personal([_head("kettle", 0)], ("dog", "cat"), {"dog": 0.4, "cat": 0.8})
    assert personal.labels == ("dog", "cat", "kettle") and personal.added == ("kettle",)
    base = np.array([0.1, 0.2], np.float32)
    on = personal.apply(base, _e(0))
    off = personal.apply(base, _e(None))
    assert on[:2].tolist() == pytest.approx([0.1, 0.2]) and on[2] > TAUGHT_THRESHOLD > off[2]
    at_threshold = Personal([_head("kettle", 0, threshold=float(personal.raw(_e(0))[0]))], ("dog",), {})
    assert at_threshold.apply(np.zeros(1, np.float32), _e(0))[1] == pytest.approx(TAUGHT_THRESHOLD, abs=1e-6)


def test_no_heads_change_nothing() -> None:
    personal = Personal([], ("dog",), {})
    assert personal.labels == ("dog",) and personal.size == 0
    assert personal.apply(np.array([0.3], np.float32), _e(0)).tolist() == pytest.approx([0.3])


def test_a_model_label_head_adds_and_a_correction_silences() -> None:
    heads = [_head("dog", 1), _head("cat", 2, kind="correction")]
    personal = Personal(heads, ("dog", "cat"), {"dog": 0.4, "cat": 0.8})
    assert personal.labels == ("dog", "cat")
    scores = np.array([0.1, 0.9], np.float32)
    added = personal.apply(scores, _e(1))
    assert added[0] > 0.4 and added[1] == pytest.approx(0.9)  # the dog head adds, above dog's threshold
    silenced = personal.apply(scores, _e(2))
    assert silenced[1] == 0.0 and silenced[0] == pytest.approx(0.1)
    assert personal.corrected(_e(2)) == ("cat",) and personal.corrected(_e(1)) == ()
    assert personal.apply(scores, _e(None)).tolist() == pytest.approx(scores.tolist())  # neither fires
    with pytest.raises(ValueError, match="corrections of labels the model does not have: bird"):
        Personal([_head("bird", 0, kind="correction")], ("dog",), {})


def test_the_store_keeps_examples_heads_reservoir_and_recent_events(tmp_path: Path) -> None:
    store = TaughtStore(tmp_path)
    assert store.examples() == [] and store.generation() == 0 and store.fitted("a" * 64) is None
    tone = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    first = store.add_audio("kettle", "yes", tone, 16000)
    second = store.add_audio("kettle", "not", tone, 16000)
    store.add_embeddings("cat", "not", np.ones((3, D), np.float32), "b" * 64)
    assert [e.path.name for e in store.examples()] == ["not-001.emb.npz", "not-001.wav", "yes-001.wav"]
    assert store.labels() == {"cat": {"yes": 0, "not": 1}, "kettle": {"yes": 1, "not": 1}}
    samples, rate = store.read_audio(first)
    assert rate == 16000 and np.abs(samples - tone).max() < 1e-4
    assert store.add_audio("kettle", "yes", tone, 16000).path.name == "yes-002.wav" and second.path.exists()
    heads = (_head("kettle", 0),)
    store.save(Fitted("a" * 64, heads, ("a line",), "now", ("kettle/yes-001.wav",)))
    got = store.fitted("a" * 64)
    assert got is not None and got.heads == heads and got.examples == ("kettle/yes-001.wav",)
    assert store.fitted("c" * 64) is None
    store.save_reservoir("a" * 64, np.ones((4, D), np.float32), seen=40)
    rows, seen = store.reservoir("a" * 64)
    assert rows.shape == (4, D) and seen == 40
    before = store.generation()
    store.touch()
    assert store.generation() != before
    assert store.forget("kettle") == 3 and "kettle" not in store.labels()
    store.prune({"b" * 64})
    assert store.fitted("a" * 64) is None and store.reservoir("a" * 64)[1] == 0


def test_recent_events_are_bounded_and_found_by_id_or_latest(tmp_path: Path) -> None:
    store = TaughtStore(tmp_path)
    for i in range(RECENT + 3):
        store.keep_event(Heard(id=f"{i:032x}", label="cat", start=float(i), model_sha256="a" * 64,
                               rows=np.full((2, D), i, np.float32)))  # fmt: skip
    assert len(list((store.root / "recent").glob("*.npz"))) == RECENT
    assert store.heard(f"{0:032x}") is None  # the oldest went
    latest = store.heard("latest")
    assert latest is not None and latest.id == f"{RECENT + 2:032x}" and latest.rows.shape == (2, D)
    assert store.heard("../../etc/passwd") is None and store.heard("") is None
    store.used(latest.id)
    assert store.heard(latest.id) is None


def test_a_label_must_be_a_name() -> None:
    assert check_label("front_door2") == "front_door2"
    for bad in ("Front door", "", "a/b", "_x", "x" * 49, "\n"):
        with pytest.raises(StoreError, match="use 1-48 lowercase letters"):
            check_label(bad)


def test_a_bundle_never_carries_taught_labels(tmp_path: Path) -> None:
    from edge.daemon.startup import default_model_path
    from edge.model.bundle import BundleError, parse_manifest, read_bundle

    manifest = read_bundle(default_model_path()).manifest
    taught = dataclasses.replace(manifest, taught=("kettle",))
    assert taught.score_labels[-1] == "kettle" and taught.score_thresholds["kettle"] == TAUGHT_THRESHOLD
    assert taught.to_json() == manifest.to_json()  # the device's labels are never written into a bundle
    data = json.loads(manifest.to_json()) | {"taught": ["kettle"]}
    with pytest.raises(BundleError, match="'taught' is the device's own labels"):
        parse_manifest(json.dumps(data).encode(), "x.auricle")
