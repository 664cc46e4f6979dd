"""Remembered inferences (training/evaluate/recall.py): a real int8 two-head model gives exactly the figures a
fresh interpreter gives, runs each distinct window once inside ``remembering`` and never outside it."""

from __future__ import annotations

import numpy as np
import pytest
from support.models import audioset_bundle

from edge.model.bundle import Bundle, read_bundle
from edge.model.classifier import Classifier
from training.evaluate import evaluate, recall


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return read_bundle(audioset_bundle(tmp_path_factory.mktemp("recall") / "two.auricle", selftest=False))


def _windows(bundle: Bundle, n: int) -> list[np.ndarray]:
    m = bundle.manifest
    rng = np.random.default_rng(3)
    shape = (m.window_frames, m.features.n_bands)
    return [rng.uniform(m.features.db_floor, m.features.db_ceiling, shape).astype(np.float32) for _ in range(n)]


def _outputs(clf: Classifier, windows: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    found = []
    for w in windows:
        scores = clf.scores(w)
        audioset = clf.audioset_scores()
        assert audioset is not None
        found.append((scores, audioset))
    return found


def test_remembered_outputs_are_the_interpreters_own_and_each_window_runs_once(bundle: Bundle) -> None:
    distinct = _windows(bundle, 6)
    windows = distinct + distinct[::-1] + distinct[:2]
    fresh = _outputs(Classifier(bundle), windows)
    with recall.remembering() as store:
        first = _outputs(Classifier(bundle, wrap=recall.wrapper(bundle.model)), windows)
        assert (store.runs, store.reused, store.windows) == (6, 8, 6)
        again = _outputs(Classifier(bundle, wrap=recall.wrapper(bundle.model)), distinct)  # another classifier
        assert (store.runs, store.reused) == (6, 14)
    for (s, a), (s1, a1) in zip(fresh, first, strict=True):
        np.testing.assert_array_equal(s, s1)
        np.testing.assert_array_equal(a, a1)
    for (s, a), (s2, a2) in zip(fresh[:6], again, strict=True):
        np.testing.assert_array_equal(s, s2)
        np.testing.assert_array_equal(a, a2)
    assert len({s.tobytes() for s, _ in fresh}) == 6  # the windows do give different scores


def test_outside_remembering_the_interpreter_is_as_it_is(bundle: Bundle) -> None:
    assert recall.wrapper(bundle.model) is None
    with recall.remembering():
        assert recall.wrapper(bundle.model) is not None
    assert recall.wrapper(bundle.model) is None


def test_a_remembered_output_cannot_be_changed_in_place(bundle: Bundle) -> None:
    with recall.remembering():
        wrap, made = recall.wrapper(bundle.model), []
        assert wrap is not None
        clf = Classifier(bundle, wrap=lambda interp: made.append(wrap(interp)) or made[-1])
        clf.scores(_windows(bundle, 1)[0])
        raw = made[0].get_tensor(made[0].get_output_details()[0]["index"])
        with pytest.raises(ValueError, match="read-only"):
            raw[0] = 0


def test_memory_is_bounded_and_past_the_bound_windows_still_run(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recall, "MAX_WINDOWS", 2)
    windows = _windows(bundle, 4)
    fresh = _outputs(Classifier(bundle), windows)
    with recall.remembering() as store:
        clf = Classifier(bundle, wrap=recall.wrapper(bundle.model))
        found = _outputs(clf, windows + windows)
        assert store.windows == 2 and (store.runs, store.reused) == (6, 2)
    for (s, a), (s1, a1) in zip(fresh + fresh, found, strict=True):
        np.testing.assert_array_equal(s, s1)
        np.testing.assert_array_equal(a, a1)


def test_a_latency_is_measured_on_the_interpreter_not_the_memory(bundle: Bundle) -> None:
    from training.recipe.config import TrainConfig, WindowConfig

    cfg = TrainConfig(window=WindowConfig(window_frames=bundle.manifest.window_frames, hop_frames=4))
    labels = list(bundle.manifest.event_labels)
    with recall.remembering() as store:
        remembered = evaluate.classifier(cfg, labels, bundle.model, "int8")
        evaluate.latency_ms(remembered, runs=5)
        assert (store.runs, store.reused) == (1, 14)  # what a latency would be with the memory in the way
        store.runs = store.reused = 0
        clf = evaluate.classifier(cfg, labels, bundle.model, "int8", remember=False)
        assert evaluate.latency_ms(clf, runs=5) > 0.0
        assert (store.runs, store.reused) == (0, 0)
