"""The running model: which one starts, probation after a switch, and what ``model/state`` says.

Start-up order: the installed active version, then the installed previous one,
then the configured (or shipped) bundle; each is checked again before use (file
sha256, signature, validation, self-test scores).  When models were installed
here and none of them loads, the daemon runs without a model rather than not at
all, so that it stays reachable and takes the next good bundle it is sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.model.bundle import BundleError
from edge.schema import ConfigError
from edge.update.checks import Loaded
from edge.update.modelstore import Entry, ModelStore, Pointer, StoreError

_LOGGER = logging.getLogger(__name__)

SLOW_FACTOR = 4.0
"""An inference this many times over the latency budget counts as slow on probation."""
SLOW_LIMIT = 5
"""Slow inferences on probation before the model is rolled back."""


class Probation:
    """Watches a freshly switched model; :attr:`failure` says why it must go (worker thread only)."""

    def __init__(self, fallback: Loaded, seconds: float, budget_ms: float) -> None:
        self.fallback = fallback
        self.until = time.time() + seconds
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


def choose_startup(
    store: ModelStore, load_entry: Callable[[Entry], Loaded], load_configured: Callable[[], Loaded]
) -> tuple[Loaded | None, str | None]:
    """The model to start with and, when it is not the active one, why.

    Without installed models this is the configured one, and a bad configured bundle raises
    (a person must fix the config).  With installed models it never raises: (None, why) when
    nothing loads.
    """
    if not store.in_use():
        return load_configured(), None
    problems: list[str] = []
    try:
        pointer = store.pointer()
    except StoreError as exc:
        problems.append(str(exc))
        pointer = Pointer()
    candidates: list[Entry | None] = [pointer.active, pointer.previous, None]
    for entry in dict.fromkeys(candidates):  # each once, in order; None = the configured bundle
        try:
            model = load_entry(entry) if entry is not None else load_configured()
        except (BundleError, ConfigError, OSError) as exc:
            what = f"installed {entry.label()}" if entry is not None else "configured model"
            problems.append(f"{what}: {exc}")
            _LOGGER.error("models: %s unusable: %s", what, exc)
            continue
        return model, "; ".join(problems) or None
    return None, "no usable model: " + "; ".join(problems)


def state_document(
    running: Loaded | None,
    store: ModelStore,
    last: dict[str, Any] | None,
    problem: str | None,
    probation: Probation | None,
    fallback_origin: str,
    groups: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The ``model/state`` payload's fields (docs/ota.md)."""
    try:
        pointer = store.pointer()
    except StoreError as exc:
        pointer, problem = Pointer(), "; ".join(x for x in (problem, str(exc)) if x)
    previous: dict[str, Any] | None = None
    if pointer.previous is not None:
        previous = {"name": pointer.previous.name, "version": pointer.previous.version}
        previous |= {"sha256": pointer.previous.sha256, "origin": "installed"}
    elif pointer.active is not None:
        previous = {"origin": fallback_origin}
    return {
        "groups": list(groups),
        "active": running.describe() if running is not None else None,
        "previous": previous,
        "probation_until": round(probation.until, 3) if probation is not None else None,
        "problem": problem,
        "last": last,
    }
