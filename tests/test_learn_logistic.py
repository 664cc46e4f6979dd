"""edge/learn/logistic.py: both solvers find the maximum of the penalised likelihood."""

from __future__ import annotations

import numpy as np
import pytest

from edge.learn import logistic


def _data(d: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=d) * (rng.random(d) < 0.2)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.normal(size=d)
    y = (rng.random(n) < logistic.sigmoid(x @ truth - 0.5)).astype(float)
    return x, y, truth


def test_newton_finds_the_coefficients_it_was_drawn_from() -> None:
    x, y, truth = _data(3, 20000, 0)
    beta = logistic.fit(x, y, l2=0.0)
    np.testing.assert_allclose(beta, [*truth, -0.5], atol=0.08)


def test_gradient_descent_reaches_newtons_optimum() -> None:
    """Above NEWTON_MAX_FEATURES the accelerated gradient runs, penalising the standardised weights; its optimum
    is Newton's on the standardised features (forced for the check), mapped back."""
    x, y, _ = _data(80, 3000, 1)
    weight = np.where(y == 1, 2.0, 1.0)
    fast = logistic.fit(x, y, weight, l2=5.0)
    mean, spread = x.mean(axis=0), x.std(axis=0) + 1e-6
    on_z = logistic._newton((x - mean) / spread, y, weight, 5.0)
    w = on_z[:-1] / spread
    exact = np.append(w, on_z[-1] - w @ mean)
    p_fast, p_exact = logistic.sigmoid(x @ fast[:-1] + fast[-1]), logistic.sigmoid(x @ exact[:-1] + exact[-1])
    assert np.abs(p_fast - p_exact).max() < 0.02
    np.testing.assert_allclose(fast, exact, atol=0.02)


def test_a_feature_of_tiny_spread_does_not_stall_the_descent() -> None:
    """An embedding has near-silent units (spread 1e-4): the fit still separates what is separable."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 100)) * 0.1
    x[:, :10] *= 1e-3
    y = (np.arange(400) < 40).astype(float)
    x[:40, 50] += 1.0
    beta = logistic.fit(x, y, np.where(y == 1, 9.0, 1.0), l2=1.0)
    z = x @ beta[:-1] + beta[-1]
    assert z[:40].min() > 0 > z[40:].max()


def test_bad_shapes_are_one_line() -> None:
    with pytest.raises(ValueError, match=r"expected x \(n, d\), y \(n,\)"):
        logistic.fit(np.zeros(3), np.zeros(3))
