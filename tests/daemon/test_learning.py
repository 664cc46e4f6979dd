"""edge/daemon/learning.py: the daemon's own background reservoir and its recent events, on the shipped model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edge.daemon import learning
from edge.daemon.learning import Learning, Reservoir
from edge.daemon.startup import default_model_path
from edge.detect.events import Event
from edge.features import compute, window_at
from edge.model import bundle
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from edge.update.checks import Loaded


def test_the_reservoir_is_a_bounded_uniform_sample() -> None:
    res = Reservoir(np.zeros((0, 4), np.float32), 0, capacity=100, seed=1)
    for i in range(10000):
        res.offer(np.full(4, i, np.float32))
    kept = res.array()[:, 0]
    assert kept.shape == (100,) and res.seen == 10000
    assert 3000 < kept.mean() < 7000 and kept.min() < 2000 and kept.max() > 8000  # from all of it, not the start


@pytest.fixture(scope="module")
def model() -> Loaded:
    path = default_model_path()
    b = read_bundle(path)
    return Loaded(bundle=b, classifier=Classifier(b), sha256=bundle.sha256(Path(path).read_bytes()), origin="shipped")


def _hop(clf: Classifier, seed: int) -> np.ndarray:
    noise = 0.01 * np.random.default_rng(seed).standard_normal(16000).astype(np.float32)
    frames = compute(noise, clf.manifest.features)
    return clf.scores(window_at(frames, len(frames), clf.manifest.window_frames, clf.manifest.features))


def test_quiet_hops_fill_the_reservoir_which_outlives_the_process(model: Loaded, tmp_path: Path) -> None:
    teacher = Learning(str(tmp_path))
    teacher.use(model)
    clf = model.classifier
    for i in range(12):
        scores = _hop(clf, i)
        teacher.hop(i * 5.0, np.zeros_like(scores), clf, quiet=True)  # one offered per SPACING_S of audio
        teacher.hop(i * 5.0 + 1, np.ones_like(scores), clf, quiet=True)  # a loud hop is never background
        teacher.hop(i * 5.0 + 2, np.zeros_like(scores), clf, quiet=False)  # nor one inside an event
    teacher.save()
    rows, seen = teacher.store.reservoir(model.sha256)
    assert rows.shape == (6, 1024) and seen == 6
    again = Learning(str(tmp_path))
    again.use(model)
    assert again._reservoir is not None and len(again._reservoir.rows) == 6


def test_an_events_embeddings_are_kept_for_a_verdict(model: Loaded, tmp_path: Path) -> None:
    teacher = Learning(str(tmp_path))
    teacher.use(model)
    clf = model.classifier
    for i in range(40):
        teacher.hop(i * 0.2, _hop(clf, i), clf, quiet=True)
    event = Event(id="ab" * 16, label="dog", kind="start", start=1e9, end=None, start_offset_s=5.0, end_offset_s=None,
                  peak=0.9, mean=0.8, hops=3, t_audio=1e9, offset_s=5.6)  # fmt: skip
    teacher.event(event)
    first = teacher.store.heard(event.id)
    assert first is not None and first.label == "dog" and first.model_sha256 == model.sha256
    span = (5.6 - (5.0 - learning.LEAD_S)) / 0.2  # hops from LEAD_S before the start to this message
    assert round(span) <= len(first.rows) <= round(span) + 1
    teacher.event(dataclasses.replace(event, kind="end", end=1e9 + 2, end_offset_s=7.0, offset_s=7.0))
    ended = teacher.store.heard("latest")
    assert ended is not None and ended.id == event.id and len(ended.rows) > len(first.rows)
