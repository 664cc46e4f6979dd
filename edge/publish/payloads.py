"""The MQTT contract: topic names, payload builders and the Publisher protocol.

Every JSON payload carries ``schema`` (:data:`SCHEMA_VERSION`) and
``model_version``.  docs/mqtt.md documents each one, and a test checks its
examples against these builders, so change both together (and bump the
schema version when a field changes meaning or goes away).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edge.detect.events import Event
from edge.detect.set_command import ControlResult, EntityKind, result_data

SCHEMA_VERSION = 2
"""2: events, scores and level carry ``offset_s`` (stream seconds); events ``start_offset_s``/``end_offset_s``."""
ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"
ControlHandler = Callable[[bytes], ControlResult]
ModelHandler = Callable[[str, bytes, bool], None]
"""Called with ('install' | 'rollback', raw payload, retained flag) for each model command."""
FeedbackHandler = Callable[[bytes], str | None]
"""Called with each raw ``feedback`` payload: the one-line error for a bad one, None once it is queued (its
outcome comes later, through :meth:`Publisher.publish_feedback_result`)."""
FEEDBACK_WRONG_LATEST = '{"id":"latest","verdict":"wrong"}'
"""What Home Assistant's "That wasn't it" button sends on ``feedback``."""
MODEL_COMMANDS = ("install", "rollback")
LEVEL_FLOOR_DBFS = -120.0
"""The ``level`` payload's lowest ``dbfs``: digital silence (every sample 0) reads this, below any real input
(one 16-bit step of RMS is -90 dBFS), not the -200 of ``log10(1e-20)`` that squashed Home Assistant's graph."""
_ENTITY_KINDS: dict[str, EntityKind] = {"listen": "listen", "threshold": "threshold"}


@dataclass(frozen=True, kw_only=True)
class DeviceInfo:
    """What the publisher tells the world about this device and its model."""

    model_name: str
    model_version: str
    labels: tuple[str, ...]
    """Every label of the model, in score order."""
    sw_version: str
    """auricle's version."""
    enabled: tuple[str, ...] | None = None
    """Labels that raise events now; None = all."""
    thresholds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """Thresholds in force per label (for the ``threshold/<label>`` states)."""
    announce: tuple[str, ...] | None = None
    """Labels whose Home Assistant entities are enabled by default; None = all."""
    feedback: bool = False
    """The model can take a verdict on an event (it has an embedding): Home Assistant gets "That wasn't it"."""
    device_id: str | None = None
    """Topic level; None = the MqttConfig's (device_id or host name)."""
    name: str | None = None
    """Friendly device name for Home Assistant; None = 'auricle <device_id>'."""
    manufacturer: str = "auricle"


class Publisher(Protocol):
    """Where the daemon sends what it hears: MQTT or the console."""

    def start(self, info: DeviceInfo) -> None: ...
    def publish_event(self, event: Event) -> None: ...
    def publish_state(self, label: str, on: bool) -> None: ...
    def publish_scores(self, t: float, offset_s: float, top: Sequence[tuple[str, float]]) -> None: ...
    def publish_level(self, t: float, offset_s: float, dbfs: float) -> None: ...
    def publish_health(self, health: Mapping[str, Any]) -> None: ...
    def publish_status_reason(self, reason: str | None) -> None: ...
    def set_control_handler(self, fn: ControlHandler) -> None: ...
    def set_model_handler(self, fn: ModelHandler) -> None: ...
    def set_feedback_handler(self, fn: FeedbackHandler) -> None: ...
    def publish_feedback_result(self, event_id: str | None, verdict: str | None, ok: bool, message: str) -> None: ...
    def set_model(self, info: DeviceInfo) -> None: ...
    def publish_model_state(self, state: Mapping[str, Any]) -> None: ...
    def close(self) -> None: ...


RESERVED_SLUGS = frozenset({"problem"})
"""Object ids of the device's own Home Assistant entities that share a namespace with labels."""


def slugs(labels: Sequence[str]) -> dict[str, str]:
    """A unique topic-safe level per label ('Church bells' -> 'church_bells')."""
    found: dict[str, str] = {}
    for label in labels:
        base = re.sub(r"[^a-z0-9_-]", "_", label.lower()) or "label"
        slug, n = base, 1
        while slug in found.values() or slug in RESERVED_SLUGS:
            n += 1
            slug = f"{base}_{n}"
        found[label] = slug
    return found


@dataclass(frozen=True)
class Topics:
    """Topic names under ``<prefix>/<device_id>/``."""

    base: str

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def reason(self) -> str:
        return f"{self.base}/status/reason"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def scores(self) -> str:
        return f"{self.base}/scores"

    @property
    def level(self) -> str:
        return f"{self.base}/level"

    @property
    def health(self) -> str:
        return f"{self.base}/health"

    @property
    def set(self) -> str:
        return f"{self.base}/set"

    @property
    def set_result(self) -> str:
        return f"{self.base}/set/result"

    @property
    def feedback(self) -> str:
        """A verdict on an event the device heard (subscribed): ``{"id": ..., "verdict": "wrong" | "right"}``."""
        return f"{self.base}/feedback"

    @property
    def feedback_result(self) -> str:
        return f"{self.base}/feedback/result"

    @property
    def sound(self) -> str:
        """One message per sound start, shaped for Home Assistant's event entity."""
        return f"{self.base}/sound"

    def state(self, slug: str) -> str:
        return f"{self.base}/state/{slug}"

    def listen(self, slug: str) -> str:
        """Retained ``ON``/``OFF``: whether the label raises events; ``.../set`` switches it."""
        return f"{self.base}/listen/{slug}"

    def threshold(self, slug: str) -> str:
        """Retained threshold in force (``0.35``); ``.../set`` changes it."""
        return f"{self.base}/threshold/{slug}"

    def entity_commands(self) -> list[str]:
        """The subscription filters of the ``listen`` and ``threshold`` commands."""
        return [f"{self.listen('+')}/set", f"{self.threshold('+')}/set"]

    def entity_command(self, topic: str) -> tuple[EntityKind, str] | None:
        """``(kind, label topic level)`` of a ``listen/<slug>/set`` or ``threshold/<slug>/set`` topic."""
        levels = topic.removeprefix(self.base + "/").split("/")
        if len(levels) != 3 or levels[2] != "set":
            return None
        kind = _ENTITY_KINDS.get(levels[0])
        return None if kind is None else (kind, levels[1])

    def model(self, command: str) -> str:
        """``model/install``, ``model/rollback`` (subscribed) and ``model/state`` (retained)."""
        return f"{self.base}/model/{command}"


def display_name(label: str) -> str:
    """A label as a name for people: ``door_wood_knock`` -> ``Door wood knock``."""
    return label.replace("_", " ").capitalize()


def group_topic(prefix: str, group: str, command: str) -> str:
    """A fleet command topic: ``<prefix>/group/<group>/model/<command>``."""
    return f"{prefix}/group/{group}/model/{command}"


def dumps(data: Mapping[str, Any]) -> str:
    """Compact JSON; NaN and infinities are refused rather than sent as invalid JSON."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


class Payloads:
    """Builds the JSON payloads, stamping schema and model version on each."""

    def __init__(self, model_version: str) -> None:
        self.model_version = model_version

    def _head(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "model_version": self.model_version}

    def event(self, event: Event) -> str:
        data = self._head() | dataclasses.asdict(event)
        return dumps(data)

    def scores(self, t: float, offset_s: float, top: Sequence[tuple[str, float]]) -> str:
        ranked = [[label, round(float(score), 4)] for label, score in top]
        return dumps(self._head() | {"t": t, "offset_s": round(offset_s, 6), "top": ranked})

    def level(self, t: float, offset_s: float, dbfs: float) -> str:
        level = {"t": t, "offset_s": round(offset_s, 6), "dbfs": round(max(float(dbfs), LEVEL_FLOOR_DBFS), 1)}
        return dumps(self._head() | level)

    def health(self, health: Mapping[str, Any], extra: Mapping[str, Any]) -> str:
        data = self._head() | {"t": time.time()} | dict(health) | dict(extra)
        return dumps(_finite(data))

    def sound(self, event: Event) -> str:
        """A sound start for Home Assistant's event entity: ``event_type`` is the label."""
        data = {"event_type": event.label, "name": display_name(event.label), "id": event.id, "score": event.peak}
        return dumps(self._head() | data | {"start": event.start, "start_offset_s": event.start_offset_s})

    def reason(self, reason: str | None) -> str:
        """Why the device is degraded; ``None`` once it is not."""
        return dumps(self._head() | {"t": time.time(), "reason": reason})

    def set_result(self, result: ControlResult) -> str:
        return dumps(self._head() | result_data(result))

    def feedback_result(self, event_id: str | None, verdict: str | None, ok: bool, message: str) -> str:
        """What became of one ``feedback`` command: the id and verdict it named (None where it named none)."""
        return dumps(self._head() | {"id": event_id, "verdict": verdict, "ok": ok, "message": message})

    def model_state(self, state: Mapping[str, Any]) -> str:
        return dumps(self._head() | {"t": time.time()} | dict(state))


def _finite(value: Any) -> Any:
    """Plain JSON data: NumPy scalars unwrapped, NaN/inf (no data yet) as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class RateLimiter:
    """Lets a call through at most once per interval (monotonic clock)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next = 0.0

    def ready(self) -> bool:
        """True (and start a new interval) when the last pass was long enough ago."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True


class LevelGate:
    """Lets a sound level through when it moved ``change_db`` or more from the last one let through, or when
    that one is ``max_interval_s`` old; never twice within ``interval_s`` (monotonic clock).

    A level sensor's every state is a row in Home Assistant's recorder: a steady room needs few.
    """

    def __init__(
        self, interval_s: float, change_db: float, max_interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s, self.change_db, self.max_interval_s = interval_s, change_db, max_interval_s
        self._clock = clock
        self._sent: tuple[float, float] | None = None
        """(monotonic time, dBFS) of the last level let through."""

    def ready(self, dbfs: float) -> bool:
        """True (and remember it) when ``dbfs`` should be sent now."""
        now, dbfs = self._clock(), max(float(dbfs), LEVEL_FLOOR_DBFS)
        if self._sent is not None:
            sent_at, sent = self._sent
            if now - sent_at < self.interval_s:
                return False
            if abs(dbfs - sent) < self.change_db and now - sent_at < self.max_interval_s:
                return False
        self._sent = (now, dbfs)
        return True
