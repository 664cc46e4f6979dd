"""edge/learn/heads.py: a personal head from a few examples, its threshold from held-out negatives."""

from __future__ import annotations

import numpy as np
import pytest

from edge.learn.heads import MIN_THRESHOLD, TeachError, fit_head, rescale, sounding

D = 1024


def _cloud(rng: np.random.Generator, centre: np.ndarray, n: int, spread: float = 1.0) -> np.ndarray:
    return (centre + spread * rng.standard_normal((n, D))).astype(np.float32)


def test_a_head_from_five_examples_finds_its_sound_and_not_the_background() -> None:
    rng = np.random.default_rng(0)
    sound = rng.standard_normal(D) * 0.6
    head = fit_head("door", _cloud(rng, sound, 5 * 8), _cloud(rng, np.zeros(D), 1500))
    assert head.kind == "label" and head.examples == 40 and head.negatives == 1000
    assert MIN_THRESHOLD <= head.threshold < 1 and head.recall == 1.0
    assert (head.scores(_cloud(rng, sound, 200)) >= head.threshold).mean() > 0.9  # new instances of it
    assert (head.scores(_cloud(rng, np.zeros(D), 3000)) >= head.threshold).mean() < 0.005
    assert "held-out background windows" in head.measured and "unmeasured" in head.measured  # 500 cannot show 1/h


def test_not_this_teaches_the_difference() -> None:
    """A similar sound it was never shown fires; shown as "not door", it stops."""
    rng = np.random.default_rng(1)
    sound = rng.standard_normal(D) * 0.6
    similar = sound + rng.standard_normal(D) * 0.25
    background = _cloud(rng, np.zeros(D), 1500)
    plain = fit_head("door", _cloud(rng, sound, 40), background)
    told = fit_head("door", _cloud(rng, sound, 40), background, hard=_cloud(rng, similar, 40))
    probe = _cloud(rng, similar, 200)
    assert (plain.scores(probe) >= plain.threshold).mean() > 0.5
    assert (told.scores(probe) >= told.threshold).mean() < 0.1
    assert (told.scores(_cloud(rng, sound, 200)) >= told.threshold).mean() > 0.8


def test_nothing_to_learn_from_is_one_line() -> None:
    with pytest.raises(TeachError, match="door: no sounding window in the examples"):
        fit_head("door", np.zeros((0, D), np.float32), np.zeros((100, D), np.float32))
    with pytest.raises(TeachError, match=r"door: too few negatives \(3\)"):
        fit_head("door", np.ones((4, D), np.float32), np.zeros((3, D), np.float32))


def test_sounding_windows_and_rescaling() -> None:
    assert sounding([-60.0, -30.0, -45.0, -55.0]).tolist() == [False, True, True, False]
    p = np.array([0.0, 0.3, 0.6, 0.8, 1.0], dtype=np.float32)
    out = rescale(p, head_threshold=0.6, label_threshold=0.4)
    np.testing.assert_allclose(out, [0.0, 0.2, 0.4, 0.7, 1.0], atol=1e-6)
