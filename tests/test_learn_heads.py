"""edge/learn/heads.py: a personal head from a few examples, its threshold from held-out negatives."""

from __future__ import annotations

import numpy as np
import pytest

from edge.learn.heads import (
    MAX_THRESHOLD,
    MIN_THRESHOLD,
    SPREAD_FLOOR,
    Head,
    TeachError,
    ThresholdRule,
    fit_head,
    rescale,
    sounding,
    split_negatives,
    with_threshold,
)

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


def _head(d: int = 4) -> Head:
    w = np.zeros(d)
    w[0] = 1.0
    return Head(label="x", kind="label", weights=tuple(w), bias=0.0, threshold=1.0, examples=1, negatives=1)


def _rows(logits: list[float], d: int = 4) -> np.ndarray:
    rows = np.zeros((len(logits), d), np.float32)
    rows[:, 0] = logits
    return rows


def test_the_threshold_sits_above_every_held_out_negative_by_the_margin_in_logits() -> None:
    """Chosen on logits: the old rule (top score + 0.02, at most 0.99) sat below held-out scores of 0.99 and more."""
    held, budget = _rows([-3.0, 2.0, 6.5]), 1.0  # 1 window in 3 can show no less than 6000/h: none may pass
    plain = with_threshold(_head(), _rows([9.0]), held, budget, 18000.0, ThresholdRule(floor=0.5, margin=0.0))
    assert 0.998 < plain.threshold < 0.999 and plain.threshold > _head().scores(held).max()
    wider = with_threshold(_head(), _rows([9.0]), held, budget, 18000.0, ThresholdRule(floor=0.5, margin=2.0))
    assert np.log(wider.threshold / (1 - wider.threshold)) == pytest.approx(8.5, abs=1e-4)
    assert wider.recall == 1.0 and "unmeasured" in wider.measured
    low = with_threshold(_head(), _rows([9.0]), _rows([-5.0, -4.0]), budget, 18000.0, ThresholdRule(floor=0.9))
    assert low.threshold == pytest.approx(0.9, abs=1e-6)  # the floor


def test_a_head_that_cannot_tell_held_out_negatives_from_its_examples_says_so() -> None:
    held = _rows([20.0, 1.0])  # p rounds to 1.0 in float32: no threshold below 1 keeps it out
    head = with_threshold(_head(), _rows([30.0]), held, 1.0, 18000.0, ThresholdRule())
    assert head.threshold == pytest.approx(MAX_THRESHOLD) and head.threshold < 1.0
    assert head.scores(_rows([30.0]))[0] >= head.threshold  # its examples still pass: the cap is below 1
    assert "1 of 2 held-out background windows" in head.measured and "cannot tell them" in head.measured


def test_the_held_out_split_is_the_fits() -> None:
    negatives = np.arange(30, dtype=np.float32)[:, None].repeat(2, axis=1)
    fit_on, held = split_negatives(negatives, seed=0)
    assert len(held) == 10 and len(fit_on) == 20
    assert sorted({*fit_on[:, 0].tolist(), *held[:, 0].tolist()}) == list(range(30))
    head = fit_head("x", np.full((5, 2), 40.0, np.float32), negatives)
    assert head.negatives == 20


def test_a_value_that_hardly_moves_in_the_fit_gets_no_weight() -> None:
    """A sparse unit, 0 in every fitted window but two examples, would take a huge weight on standardised values;
    music that moves it would then score far above every window the threshold saw."""
    rng = np.random.default_rng(4)
    sound = rng.standard_normal(D) * 0.6
    positives, negatives = _cloud(rng, sound, 40), _cloud(rng, np.zeros(D), 1500)
    positives[:, 0], negatives[:, 0] = 0.0, 0.0
    positives[:2, 0] = 0.023  # one int8 step of the embedding
    probe = _cloud(rng, np.zeros(D), 200)
    probe[:, 0] = 3.0
    floored = fit_head("door", positives, negatives)
    assert floored.weights[0] == 0.0 and float(np.r_[positives[:, 0], negatives[:, 0]].std()) < SPREAD_FLOOR
    assert (floored.scores(probe) >= floored.threshold).mean() < 0.01
    loose = fit_head("door", positives, negatives, spread_floor=0.0)
    assert loose.weights[0] > 10 and (loose.scores(probe) >= loose.threshold).mean() > 0.5
