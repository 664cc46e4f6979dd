"""The running model: which one starts, and what ``model/state`` says (its probation: edge/detect/probation.py).

Start-up order: the installed active version, then the installed previous one,
then the configured (or shipped) bundle; each is checked again before use (file
sha256, signature, validation, self-test scores).  When models were installed
here and none of them loads, the daemon runs without a model rather than not at
all, so that it stays reachable and takes the next good bundle it is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from edge.model.bundle import BundleError
from edge.schema import ConfigError
from edge.update.checks import Loaded
from edge.update.modelstore import Entry, ModelStore, Pointer, StoreError

_LOGGER = logging.getLogger(__name__)


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
    probation_until: float | None,
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
        "runtime": running.classifier.runtime_text if running is not None else None,
        "previous": previous,
        "probation_until": round(probation_until, 3) if probation_until is not None else None,
        "problem": problem,
        "last": last,
    }
