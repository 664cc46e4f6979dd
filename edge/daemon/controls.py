"""Runtime controls: the ``set`` command (and Home Assistant's switches and numbers, which become one)
applied to the running model's event detector, and the changes kept across restarts.

The command's format and its checks are edge/detect/set_command.py; here it meets the daemon: the
detector a model runs with is the config's with the kept changes restored (:meth:`Controls.detector_for`),
and an accepted command changes that detector and is kept (:meth:`Controls.handle`).

A user who turns "Listen for dog" off or moves a threshold in Home Assistant means it to last: a power
cut or an update must not quietly undo it.  After every accepted change the labels whose listening or
threshold differ from what the config and the model alone give are written to
``<model.state_dir>/controls.json`` (temporary file, fsync, rename, as the model store writes), and a
new detector (at start, after an update or a rollback) gets them back before anything is published,
so the retained ``listen/*`` and ``threshold/*`` states say what is in force.

Which wins, the file or the config: the newer word.  Each saved value records what the config said
about that label then (its ``events.thresholds`` value; whether ``events.enabled`` or
``events.disabled`` named it); when the config says something else at start, the config was edited
since and wins for that label (logged).  A new model keeps the saved values of the labels it still
has; the others are dropped (logged).  A file that cannot be read or makes no sense never stops the
daemon: one line in the log, the file is moved aside (``controls.json.bad``) and the config rules.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.detect.events import EventDetector, EventParams
from edge.detect.set_command import ControlChange, ControlResult, handle_control
from edge.durable import write_durably
from edge.model.bundle import Manifest

_LOGGER = logging.getLogger(__name__)

FILE = "controls.json"
FORMAT = 1
"""``format`` of the file; another value is not read (moved aside)."""
Named = Literal["enabled", "disabled"] | None
"""What the config's lists say about a label: named in ``events.enabled``, in ``events.disabled``, or neither."""


@dataclass(frozen=True, kw_only=True)
class Saved:
    """One label's runtime values, each with what the config said about the label when it was set."""

    listen: bool | None = None
    """Listened for (True) or not; None: as the config and model say."""
    config_listen: Named = None
    threshold: float | None = None
    """The threshold set at runtime; None: as the config and model say."""
    config_threshold: float | None = None
    """The config's ``events.thresholds`` value for the label then (None: it had none)."""


def named(params: EventParams, label: str) -> Named:
    """Whether the config's ``events.enabled`` or ``events.disabled`` names ``label``."""
    if label in params.enabled:
        return "enabled"
    return "disabled" if label in params.disabled else None


class Controls:
    """The controls file, and what it holds now.  Thread-safe: commands arrive on paho's thread, models on the
    worker's."""

    def __init__(
        self, state_dir: str | os.PathLike[str], params: EventParams, announce: tuple[str, ...] | None = None
    ) -> None:
        """``params`` and ``announce``: the config's ``events`` and ``mqtt.announce``, what a change is measured
        against."""
        self.path = Path(state_dir) / FILE
        self._params = params
        self._announce = announce
        self._lock = threading.Lock()
        self._saved = self._load()

    def detector_for(self, manifest: Manifest) -> EventDetector:
        """The detector a model runs with: the config's (ConfigError when it does not fit the model), then
        what was changed at runtime and kept."""
        detector = EventDetector.for_model(manifest, self._params, self._announce)
        self.restore(detector)
        return detector

    def handle(self, payload: bytes, detector: EventDetector | None, manifest: Manifest | None) -> ControlResult:
        """A ``set`` command for the running model's detector (None: no model runs); kept when accepted.

        The publisher updates discovery and the retained states itself when the result is ok."""
        if detector is None or manifest is None:
            return ControlResult(ok=False, error="set: no model is running")
        result = handle_control(payload, detector)
        if result.ok:
            self.save(detector, manifest)
        return result

    def restore(self, detector: EventDetector) -> None:
        """Give a fresh detector (config and model only) the saved values that still apply."""
        with self._lock:
            kept = {x: self._still(x, s) for x, s in self._saved.items() if self._fits(x, detector.labels)}
            kept = {x: s for x, s in kept.items() if s != Saved()}
            listen = {x: s.listen for x, s in kept.items() if s.listen is not None}
            thresholds = {x: s.threshold for x, s in kept.items() if s.threshold is not None}
            if listen or thresholds:
                detector.apply(ControlChange(listen=listen, thresholds=thresholds))
                _LOGGER.info("controls: restored what was set at runtime (%s): %s", self.path, _describe(kept))
            if kept != self._saved:
                self._saved = kept
                self._write()

    def save(self, detector: EventDetector, manifest: Manifest) -> None:
        """After an accepted change: keep every label whose values differ from the config's and the model's."""
        baseline = EventDetector.for_model(manifest, self._params, self._announce)
        if baseline.labels != detector.labels:
            return  # the model changed under the command; the new detector was restored from the file
        base_on, on = set(baseline.enabled()), set(detector.enabled())
        base_thresholds, thresholds = baseline.thresholds(), detector.thresholds()
        saved = {}
        for label in detector.labels:
            listen = (label in on) if (label in on) != (label in base_on) else None
            threshold = thresholds[label] if thresholds[label] != base_thresholds[label] else None
            if listen is not None or threshold is not None:
                saved[label] = self._stamped(label, listen, threshold)
        with self._lock:
            if saved != self._saved:
                self._saved = saved
                self._write()

    def _stamped(self, label: str, listen: bool | None, threshold: float | None) -> Saved:
        return Saved(
            listen=listen,
            config_listen=named(self._params, label) if listen is not None else None,
            threshold=threshold,
            config_threshold=self._params.thresholds.get(label) if threshold is not None else None,
        )

    def _fits(self, label: str, labels: tuple[str, ...]) -> bool:
        if label in labels:
            return True
        _LOGGER.info("controls: %s was set at runtime, but this model has no such label: forgotten", label)
        return False

    def _still(self, label: str, saved: Saved) -> Saved:
        """``saved`` without the values the config has spoken about since (the newer word wins)."""
        listen, threshold = saved.listen, saved.threshold
        if listen is not None and named(self._params, label) != saved.config_listen:
            now = named(self._params, label)
            where = f"now in events.{now}" if now else "no longer in events.enabled/disabled"
            _LOGGER.info("controls: %s is %s in the config, which was edited after it was switched: config wins",
                         label, where)  # fmt: skip
            listen = None
        configured = self._params.thresholds.get(label)
        if threshold is not None and configured != saved.config_threshold:
            _LOGGER.info("controls: events.thresholds.%s is %s in the config, edited after it was set to %s: "
                         "config wins", label, configured, threshold)  # fmt: skip
            threshold = None
        if listen is None and threshold is None:
            return Saved()
        return self._stamped(label, listen, threshold)

    def _load(self) -> dict[str, Saved]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            self._set_aside(f"unreadable ({exc})")
            return {}
        try:
            return parse(text)
        except ValueError as exc:
            self._set_aside(str(exc))
            return {}

    def _set_aside(self, why: str) -> None:
        aside = self.path.with_name(FILE + ".bad")
        try:
            os.replace(self.path, aside)
            kept = f"moved to {aside.name}"
        except OSError as exc:
            kept = f"left in place ({exc.strerror or exc})"
        _LOGGER.warning("controls: %s: %s; starting from the config (the file is %s)", self.path, why, kept)

    def _write(self) -> None:
        labels = {x: _data(s) for x, s in self._saved.items()}
        data = {"format": FORMAT, "saved": round(time.time(), 3), "labels": labels}
        try:
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            write_durably(self.path, (json.dumps(data, indent=1) + "\n").encode())
        except OSError as exc:
            _LOGGER.warning("controls: cannot save to %s (%s): runtime changes last until the daemon restarts",
                            self.path, exc.strerror or exc)  # fmt: skip


def parse(text: str) -> dict[str, Saved]:
    """The labels of a ``controls.json``; ValueError with one line when it is not one."""
    data = json.loads(text, parse_constant=_refuse)  # json.JSONDecodeError is a ValueError
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("labels"), dict):
        raise ValueError(f"not a format {FORMAT} controls file")
    return {str(label): _entry(label, entry) for label, entry in data["labels"].items()}


def _entry(label: str, entry: Any) -> Saved:
    if not isinstance(entry, dict) or not set(entry) <= {"listen", "config_listen", "threshold", "config_threshold"}:
        raise ValueError(f"labels.{label}: expected an object of listen, threshold and what the config said")
    listen, config_listen = entry.get("listen"), entry.get("config_listen")
    threshold, config_threshold = entry.get("threshold"), entry.get("config_threshold")
    if (listen is not None and not isinstance(listen, bool)) or config_listen not in ("enabled", "disabled", None):
        raise ValueError(f"labels.{label}: listen must be true or false, config_listen enabled, disabled or null")
    for name, value in (("threshold", threshold), ("config_threshold", config_threshold)):
        if value is not None and not (_is_number(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"labels.{label}.{name}: expected a number 0..1 or null, got {value!r:.40}")
    return Saved(listen=listen, config_listen=config_listen, threshold=threshold, config_threshold=config_threshold)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not a number here")


def _data(saved: Saved) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if saved.listen is not None:
        data |= {"listen": saved.listen, "config_listen": saved.config_listen}
    if saved.threshold is not None:
        data |= {"threshold": saved.threshold, "config_threshold": saved.config_threshold}
    return data


def _describe(saved: Mapping[str, Saved]) -> str:
    parts = []
    for label, s in saved.items():
        if s.listen is not None:
            parts.append(f"{label} {'listened for' if s.listen else 'not listened for'}")
        if s.threshold is not None:
            parts.append(f"{label} threshold {s.threshold:g}")
    return ", ".join(parts)
