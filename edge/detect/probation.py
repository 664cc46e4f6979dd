"""Probation: a freshly switched model's first minutes, watched for the failures that send it back.

The pipeline hands every inference of the model on probation (its scores and latency) to
:meth:`Probation.observe`, and the worker every error it raised; between blocks the daemon's model slot
(edge/daemon/slot.py) reads :attr:`Probation.failure` and rolls back to the previous model, or keeps the
new one once the probation has :meth:`~Probation.expired`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

SLOW_FACTOR = 4.0
"""An inference this many times over the latency budget counts as slow on probation."""
SLOW_LIMIT = 5
"""Slow inferences on probation before the model is rolled back."""


class Probation:
    """Watches a freshly switched model; :attr:`failure` says why it must go (worker thread only)."""

    def __init__(self, seconds: float, budget_ms: float) -> None:
        self.until = time.time() + seconds
        """Epoch seconds the probation ends (``model/state``'s ``probation_until``)."""
        self._deadline = time.monotonic() + seconds
        self._slow_s = SLOW_FACTOR * budget_ms / 1000.0
        self._slow = 0
        self.failure: str | None = None

    def observe(self, scores: npt.NDArray[np.floating[Any]], latency_s: float) -> None:
        """One inference of the model on probation."""
        if self.failure is None and not np.all(np.isfinite(scores)):
            self.failure = "non-finite scores"
        if latency_s > self._slow_s:
            self._slow += 1
            if self._slow >= SLOW_LIMIT and self.failure is None:
                self.failure = f"{SLOW_LIMIT} inferences over {self._slow_s * 1000:g} ms"

    def error(self, exc: BaseException) -> None:
        """The pipeline raised while this model ran."""
        if self.failure is None:
            self.failure = f"error: {type(exc).__name__}: {exc}"[:200]

    def expired(self) -> bool:
        """True once the model has served its probation."""
        return time.monotonic() >= self._deadline
