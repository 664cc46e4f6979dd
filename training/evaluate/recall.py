"""The evaluate stage's remembered inferences: a model's outputs by input window.

The stage runs the same audio through the same int8 model more than once: the validation clips for scores, the
rule's evidence and the unconfirmed labels, and the calibrate and held-out hours for the recipe's rule and then
for the network alone (training/rule.py).  The rule is NumPy after the interpreter, so an input seen before gives
the outputs it gave then: inside :func:`remembering`, :func:`wrapper` hands the device's classifier an
interpreter that runs each distinct window once.  Outputs are the runtime's own arrays, kept read-only, so every
figure is the one a fresh interpreter gives (tests/training/test_recall.py).  Nothing on the device uses it.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

MAX_WINDOWS = 250_000
"""Windows remembered over all models; past it a store runs the interpreter without remembering.  An int8 window
with the AudioSet head and the embedding keeps about 2 KB: 500 MB at most.  A whole evaluate stage of the shipped
recipe sees about 80 000 distinct windows."""

Outputs = dict[int, npt.NDArray[Any]]


@dataclass
class Store:
    """One evaluate stage's remembered outputs, per model (its SHA-256)."""

    by_model: dict[str, dict[bytes, Outputs]] = field(default_factory=dict)
    runs: int = 0
    """inferences the interpreter ran"""
    reused: int = 0
    """inferences answered from memory"""

    @property
    def windows(self) -> int:
        return sum(len(m) for m in self.by_model.values())


_ACTIVE: contextvars.ContextVar[Store | None] = contextvars.ContextVar("auricle_recall", default=None)


@contextlib.contextmanager
def remembering() -> Iterator[Store]:
    """Remember outputs for the classifiers that :func:`wrapper` equips inside the block; forgotten after it."""
    store = Store()
    token = _ACTIVE.set(store)
    try:
        yield store
    finally:
        _ACTIVE.reset(token)
        _LOGGER.info("remembered %d windows: %d inferences run, %d reused", store.windows, store.runs, store.reused)


def wrapper(model: bytes) -> Callable[[Any], Any] | None:
    """The ``wrap`` for :class:`edge.model.classifier.Classifier` around ``model`` (None outside
    :func:`remembering`: the interpreter as it is)."""
    store = _ACTIVE.get()
    if store is None:
        return None
    memory = store.by_model.setdefault(hashlib.sha256(model).hexdigest(), {})
    return lambda interp: Remembering(interp, memory, store)


class Remembering:
    """An interpreter that runs an input it has not seen and answers one it has from memory.

    Only what the classifier calls per window is answered here (``set_tensor``, ``invoke`` and ``get_tensor`` of an
    output); the rest is the interpreter's own.
    """

    def __init__(self, interp: Any, memory: dict[bytes, Outputs], store: Store) -> None:
        self._interp, self._memory, self._store = interp, memory, store
        self._outputs_at = [int(d["index"]) for d in interp.get_output_details()]
        self._pending: tuple[int, npt.NDArray[Any], bytes] | None = None
        self._latest: Outputs = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._interp, name)

    def set_tensor(self, index: int, value: npt.NDArray[Any]) -> None:
        key = index.to_bytes(4, "little") + hashlib.blake2b(np.ascontiguousarray(value).tobytes()).digest()
        self._pending = (index, value, key)

    def invoke(self) -> None:
        if self._pending is None:
            raise RuntimeError("invoke before set_tensor")
        index, value, key = self._pending
        found = self._memory.get(key)
        if found is None:
            found = self._run(index, value)
            if self._store.windows < MAX_WINDOWS:
                self._memory[key] = found
        else:
            self._store.reused += 1
        self._latest = found

    def _run(self, index: int, value: npt.NDArray[Any]) -> Outputs:
        self._interp.set_tensor(index, value)
        self._interp.invoke()
        self._store.runs += 1
        found = {i: np.array(self._interp.get_tensor(i)) for i in self._outputs_at}
        for array in found.values():
            array.setflags(write=False)
        return found

    def get_tensor(self, index: int) -> npt.NDArray[Any]:
        if index not in self._latest:
            raise KeyError(f"tensor {index}: not an output of the latest inference")
        return self._latest[index]
