"""Why the device is degraded, gathered from its parts into one retained reason.

The microphone (lost, silent, reopening) and the model slot (no usable model, or
a fallback after an installed model failed to load) each report their own
problem; the ``status/reason`` topic, and with it Home Assistant's Problem
sensor, carries all current ones joined, and ``null`` once none is left.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

PARTS = ("audio", "model")
"""The parts that report, in the order their problems are joined."""


class Problems:
    """Current problems by part; publishes the joined reason whenever it changes."""

    def __init__(self, publish: Callable[[str | None], None]) -> None:
        self._publish = publish
        self._now: dict[str, str] = {}
        self._lock = threading.Lock()

    def reporter(self, part: str) -> Callable[[str | None], None]:
        """A callback for one part: its problem, or None once it is over."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}")
        return lambda reason: self.set(part, reason)

    def set(self, part: str, reason: str | None) -> None:
        """Record ``part``'s problem (None: it has none) and publish when the joined reason changes."""
        with self._lock:
            before = self.reason()
            if reason:
                self._now[part] = reason
            else:
                self._now.pop(part, None)
            after = self.reason()
            if after != before:
                self._publish(after)

    def has(self, part: str) -> bool:
        """Whether ``part`` reports a problem now."""
        with self._lock:
            return part in self._now

    def reason(self) -> str | None:
        """Every current problem (each names its part itself), joined by '; '; None when there is none."""
        return "; ".join(self._now[p] for p in PARTS if p in self._now) or None
