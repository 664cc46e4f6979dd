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
    """Above NEWTON_MAX_FEATURES the accelerated gradient runs; its optimum is Newton's (forced for the check)."""
    x, y, _ = _data(80, 3000, 1)
    weight = np.where(y == 1, 2.0, 1.0)
    fast = logistic.fit(x, y, weight, l2=5.0)
    exact = logistic._newton(x, y, weight, 5.0)
    p_fast, p_exact = logistic.sigmoid(x @ fast[:-1] + fast[-1]), logistic.sigmoid(x @ exact[:-1] + exact[-1])
    assert np.abs(p_fast - p_exact).max() < 0.02
    np.testing.assert_allclose(fast, exact, atol=0.02)


def test_bad_shapes_are_one_line() -> None:
    with pytest.raises(ValueError, match=r"expected x \(n, d\), y \(n,\)"):
        logistic.fit(np.zeros(3), np.zeros(3))
