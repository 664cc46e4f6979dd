"""The ``set`` command (runtime control): validate its payload and apply it to the event detector.

Anything can arrive on the control topic, so :func:`parse_control` accepts
bytes and either returns a validated :class:`ControlChange` or raises
:class:`~edge.schema.ConfigError` with one line; it never executes or imports
anything named in the payload.  :func:`handle_control` wraps that for the
publisher: it always returns a :class:`ControlResult`, ok or not.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from edge.schema import ConfigError, build

_LOGGER = logging.getLogger(__name__)

MAX_CONTROL_BYTES = 16 * 1024
"""Larger payloads are refused before parsing."""
MAX_ID_CHARS = 64
SOURCE = "set"
"""Prefix of every control error line (the topic's last level)."""


@dataclass(frozen=True, kw_only=True)
class ControlChange:
    """A validated runtime change; fields left out change nothing."""

    id: str | None = None
    """Request id chosen by the sender, echoed in the result."""
    thresholds: dict[str, float] = field(default_factory=dict, metadata={"lo": 0.0, "hi": 1.0, "unit": "score"})
    """Per-label threshold overrides (merged into the current ones)."""
    enabled: tuple[str, ...] | None = None
    """New allow list (replaces the current one; empty = all labels)."""
    disabled: tuple[str, ...] | None = None
    """New deny list (replaces the current one)."""
    listen: dict[str, bool] = field(default_factory=dict)
    """Labels switched on (true) or off (false), applied after ``enabled``/``disabled``: off adds the
    label to the deny list; on takes it off the deny list and adds it to a non-empty allow list."""

    def __post_init__(self) -> None:
        if self.id is not None and len(self.id) > MAX_ID_CHARS:
            raise ValueError(f"id: at most {MAX_ID_CHARS} characters")
        if not self.thresholds and self.enabled is None and self.disabled is None and not self.listen:
            raise ValueError("nothing to change: give thresholds, enabled, disabled or listen")


@dataclass(frozen=True, kw_only=True)
class ControlResult:
    """What a control request did, published on ``set/result``."""

    ok: bool
    error: str | None = None
    """The one-line reason when not ok."""
    id: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    """Thresholds in force after the request."""
    enabled: tuple[str, ...] = ()
    """Labels that raise events after the request."""


class Controllable(Protocol):
    """What :func:`handle_control` needs from the event detector."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    def apply(self, change: ControlChange) -> None: ...

    def thresholds(self) -> dict[str, float]: ...

    def enabled(self) -> tuple[str, ...]: ...


def parse_control(payload: bytes, labels: Sequence[str]) -> ControlChange:
    """Validate a raw ``set`` payload against the model's labels."""
    if len(payload) > MAX_CONTROL_BYTES:
        raise ConfigError(f"{SOURCE}: payload of {len(payload)} bytes exceeds {MAX_CONTROL_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{SOURCE}: payload is not UTF-8 (byte {exc.start})") from None
    data = _load_json(text)
    change = build(ControlChange, data, SOURCE)
    check_labels(change, labels, SOURCE)
    return change


def _load_json(text: str) -> Any:
    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        return json.loads(text, parse_constant=no_constant)
    except RecursionError:  # deep nesting: refuse it instead of dying
        raise ConfigError(f"{SOURCE}: payload is nested too deeply") from None
    except ValueError as exc:
        raise ConfigError(f"{SOURCE}: payload is not valid JSON: {exc}") from None


def check_labels(change: ControlChange, labels: Sequence[str], source: str) -> None:
    """Raise ConfigError naming the first label that the model does not have."""
    for key, names in (
        ("thresholds", tuple(change.thresholds)),
        ("enabled", change.enabled or ()),
        ("disabled", change.disabled or ()),
        ("listen", tuple(change.listen)),
    ):
        for name in names:
            if name not in labels:
                raise ConfigError(f"{source}: {key}: {unknown_label(name, labels)}")


def unknown_label(name: str, labels: Sequence[str]) -> str:
    """'unknown label ...' with a did-you-mean hint when one is close."""
    close = difflib.get_close_matches(name, list(labels), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    shown = name if len(name) <= 40 else name[:37] + "..."
    return f"unknown label {shown!r}{hint}"


def handle_control(payload: bytes, detector: Controllable) -> ControlResult:
    """Parse and apply one request; a bad one changes nothing and says why."""
    try:
        change = parse_control(payload, detector.labels)
        detector.apply(change)
    except ConfigError as exc:
        _LOGGER.warning("control request refused: %s", exc)
        return _result(detector, ok=False, error=str(exc), request_id=request_id(payload))
    _LOGGER.info("control request applied: %s", change)
    return _result(detector, ok=True, error=None, request_id=change.id)


def _result(detector: Controllable, *, ok: bool, error: str | None, request_id: str | None) -> ControlResult:
    return ControlResult(
        ok=ok, error=error, id=request_id, thresholds=detector.thresholds(), enabled=detector.enabled()
    )


def request_id(payload: bytes) -> str | None:
    """Best-effort id of a refused request, so the sender can match the error."""
    if len(payload) > MAX_CONTROL_BYTES:
        return None
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=lambda _n: None)
    except (ValueError, RecursionError):
        return None
    found = data.get("id") if isinstance(data, Mapping) else None
    return found if isinstance(found, str) and len(found) <= MAX_ID_CHARS else None


def entity_command(kind: EntityKind, label: str, payload: bytes) -> bytes:
    """A Home Assistant ``number`` or ``switch`` command as the ``set`` request it stands for.

    ``threshold``: the payload is the number (``0.6``); ``listen``: ``ON`` or ``OFF``.  Anything
    else is passed on as a string, so :func:`parse_control` refuses it with the usual one line.
    """
    text = payload[:MAX_CONTROL_BYTES].decode("utf-8", errors="replace").strip()
    value: Any = text
    if kind == "listen" and text in _SWITCH:
        value = _SWITCH[text]
    elif kind == "threshold":
        value = _number(text)
    key = "thresholds" if kind == "threshold" else "listen"
    request = {"id": f"{kind}/{label}"[:MAX_ID_CHARS], key: {label: value}}
    return json.dumps(request, allow_nan=False).encode()


EntityKind = Literal["threshold", "listen"]
_SWITCH = {"ON": True, "OFF": False}


def _number(text: str) -> Any:
    """``text`` as a finite JSON number, or ``text`` itself."""
    try:
        value = json.loads(text, parse_constant=lambda _name: None)
    except ValueError:
        return text
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if is_number else text


def result_data(result: ControlResult) -> dict[str, Any]:
    """The result as plain data (for the ``set/result`` payload)."""
    data = dataclasses.asdict(result)
    data["enabled"] = list(result.enabled)
    return data
