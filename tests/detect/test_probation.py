"""A model on probation: what sends it back (edge/detect/probation.py); the pipeline hands it every inference."""

from __future__ import annotations

import numpy as np

from edge.detect.probation import SLOW_LIMIT, Probation


def test_probation_fails_on_nan_and_on_slowness() -> None:
    nan = Probation(60, budget_ms=10)
    nan.observe(np.array([0.1, np.nan], np.float32), 0.001)
    assert nan.failure == "non-finite scores" and not nan.expired()
    slow = Probation(60, budget_ms=10)
    for _ in range(SLOW_LIMIT - 1):
        slow.observe(np.zeros(2, np.float32), 0.050)  # 5x the budget
    assert slow.failure is None
    slow.observe(np.zeros(2, np.float32), 0.050)
    assert slow.failure is not None and "over 40 ms" in slow.failure
    assert Probation(0, budget_ms=10).expired()
