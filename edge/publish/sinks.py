"""What every publisher shares (payloads, rate limits, label state), and the console sink.

:class:`BaseSink` implements the :class:`~edge.publish.payloads.Publisher` protocol
on top of one method, ``_emit(topic, payload, retain, is_json)``.  The MQTT
publisher sends through paho; :class:`ConsoleSink` prints one JSON line per
message with the same topic and payload, for a device without a broker.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from edge.detect.events import Event
from edge.detect.set_command import ControlResult, request_id
from edge.publish.mqttconfig import MqttConfig
from edge.publish.payloads import (
    OFF,
    OFFLINE,
    ON,
    ONLINE,
    ControlHandler,
    DeviceInfo,
    FeedbackHandler,
    LevelGate,
    ModelHandler,
    Payloads,
    RateLimiter,
    Topics,
    slugs,
)

_LOGGER = logging.getLogger(__name__)
MAX_FEEDBACK_BYTES = 512
"""A ``feedback`` payload is about 60 bytes; a longer one is refused unread (and cannot nest deep enough to
trouble the JSON parser)."""
FEEDBACK_RETAINED = (
    "feedback: retained commands are refused; publish without retain (clear this one with an empty message)"
)


class BaseSink:
    """Shared publisher logic; subclasses say how a message leaves the device."""

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self.device_id = config.resolved_device_id()
        self.topics = Topics(f"{config.prefix}/{self.device_id}")
        self._lock = threading.RLock()
        self._payloads = Payloads("unknown")
        self._info = DeviceInfo(model_name="unknown", model_version="unknown", labels=(), sw_version="unknown")
        self._slugs: dict[str, str] = {}
        self._enabled: tuple[str, ...] = ()
        """Labels listened for (that raise events) now."""
        self._thresholds: dict[str, float] = {}
        self._states: dict[str, bool] = {}
        """ON/OFF of every label of the model."""
        self._reason: str | None = None
        self._handler: ControlHandler | None = None
        self._model_handler: ModelHandler | None = None
        self._feedback_handler: FeedbackHandler | None = None
        self._model_state: str | None = None
        self._scores_gate = RateLimiter(1.0 / config.scores.max_rate_hz)
        self._level_gate = LevelGate(config.level_interval_s, config.level_change_db, config.level_max_interval_s)
        self._latest: dict[str, str] = {}
        """The last ``health`` and ``level`` payloads: retained, and sent again on every connect and on
        Home Assistant's birth, so its sensors never wait a whole interval showing *Unknown*."""

    def start(self, info: DeviceInfo) -> None:
        """Remember the device and model, then go online."""
        with self._lock:
            if info.device_id is not None:
                self.device_id = info.device_id
                self.topics = Topics(f"{self.config.prefix}/{info.device_id}")
            self._take(info)
        self._go_online()

    def _take(self, info: DeviceInfo) -> None:
        self._info = info
        self._payloads = Payloads(info.model_version)
        self._slugs = slugs(info.labels)
        self._enabled = info.labels if info.enabled is None else tuple(info.enabled)
        self._thresholds = {x: float(v) for x, v in info.thresholds.items() if x in self._slugs}
        self._states = dict.fromkeys(info.labels, False)

    def publish_event(self, event: Event) -> None:
        """A start or end of a sound on ``event``; a start that is not a repeat also on ``sound`` (not retained)."""
        for topic, payload in self._event_messages(event):
            self._emit(topic, payload, False, True)

    def _event_messages(self, event: Event) -> list[tuple[str, str]]:
        out = [(self.topics.event, self._payloads.event(event))]
        if event.kind == "start" and not event.repeat:  # Home Assistant's event entity: one per alarm, not per beep
            out.append((self.topics.sound, self._payloads.sound(event)))
        return out

    def publish_state(self, label: str, on: bool) -> None:
        """Retained ON/OFF on ``state/<label>``; ignored for labels the model lacks."""
        with self._lock:
            if label not in self._states:
                return
            self._states[label] = on
            topic = self.topics.state(self._slugs[label])
        self._emit(topic, ON if on else OFF, self.config.retain, False)

    def publish_scores(self, t: float, offset_s: float, top: Sequence[tuple[str, float]]) -> None:
        """Top-k scores of one hop, when enabled, at most max_rate_hz."""
        if self.config.scores.enabled and self._scores_gate.ready():
            payload = self._payloads.scores(t, offset_s, top[: self.config.scores.top_k])
            self._emit(self.topics.scores, payload, False, True)

    def publish_level(self, t: float, offset_s: float, dbfs: float) -> None:
        """Input level in dBFS when it moved enough or is old (:class:`LevelGate`); retained: a dashboard shows the
        latest."""
        if self._level_gate.ready(dbfs):
            self._keep_latest(self.topics.level, self._payloads.level(t, offset_s, dbfs))

    def publish_health(self, health: Mapping[str, Any]) -> None:
        """Health figures as given (the caller paces them with health_interval_s), plus the sink's own; retained."""
        self._keep_latest(self.topics.health, self._payloads.health(health, self._stats()))

    def _keep_latest(self, topic: str, payload: str) -> None:
        with self._lock:
            self._latest[topic] = payload
        self._emit(topic, payload, self.config.retain, True)

    def _latest_messages(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._latest.items())

    def publish_status_reason(self, reason: str | None) -> None:
        """Why the device is degraded (e.g. 'microphone lost: ...'), None once it is not; retained."""
        with self._lock:
            self._reason = self._payloads.reason(reason)
            payload = self._reason
        self._emit(self.topics.reason, payload, self.config.retain, True)

    def set_control_handler(self, fn: ControlHandler) -> None:
        """Called with each raw ``set`` payload; its result goes to ``set/result``."""
        self._handler = fn

    def set_model_handler(self, fn: ModelHandler) -> None:
        """Called with each ``model/install`` or ``model/rollback`` command (own or group topic)."""
        self._model_handler = fn

    def set_feedback_handler(self, fn: FeedbackHandler) -> None:
        """Called with each raw ``feedback`` payload (edge.daemon.learning.Learning.verdict)."""
        self._feedback_handler = fn

    def handle_feedback(self, payload: bytes, retained: bool) -> None:
        """One ``feedback`` command: handed on when it may be; a refusal or the handler's error goes to
        ``feedback/result`` at once (the outcome of one handed on follows from the handler).  Never raises."""
        if not payload:
            return  # an empty message is how a retained command is cleared, not a request
        error = self._feedback_refusal(payload, retained)
        if error is None:
            try:
                error = self._feedback_handler(payload) if self._feedback_handler else "feedback: not available here"
            except Exception:  # network input must never take the daemon down
                _LOGGER.exception("feedback handler failed")
                error = "feedback: internal error, nothing kept"
        if error is not None:
            _LOGGER.warning("MQTT: %s", error)
            self.publish_feedback_result(*_feedback_fields(payload), False, error)

    @staticmethod
    def _feedback_refusal(payload: bytes, retained: bool) -> str | None:
        if retained:  # it would be carried out again on every reconnect
            return FEEDBACK_RETAINED
        if len(payload) > MAX_FEEDBACK_BYTES:
            return f"feedback: payload too large ({len(payload)} bytes, at most {MAX_FEEDBACK_BYTES})"
        return None

    def publish_feedback_result(self, event_id: str | None, verdict: str | None, ok: bool, message: str) -> None:
        """What became of a ``feedback`` command, on ``feedback/result`` (not retained)."""
        payload = self._payloads.feedback_result(event_id, verdict, ok, message)
        self._emit(self.topics.feedback_result, payload, False, True)

    def set_model(self, info: DeviceInfo) -> None:
        """Another model runs now: new version stamp, labels and states (and discovery, where there is one)."""
        with self._lock:
            old = self._info
            old_slugs = self._slugs
            self._take(info)
        gone = [x for x in old.labels if x not in info.labels]
        self._model_changed(old, {x: old_slugs[x] for x in gone if x in old_slugs})

    def publish_model_state(self, state: Mapping[str, Any]) -> None:
        """Installed models and the last install or rollback, retained on ``model/state``."""
        with self._lock:
            self._model_state = self._payloads.model_state(state)
            payload = self._model_state
        self._emit(self.topics.model("state"), payload, True, True)

    def handle_model_command(self, command: str, payload: bytes, retained: bool) -> None:
        """Hand a model command to the handler; nothing it raises escapes."""
        handler = self._model_handler
        if handler is None:
            _LOGGER.warning("model/%s: over-the-air updates are not available here", command)
            return
        try:
            handler(command, payload, retained)
        except Exception:  # network input must never take the daemon down
            _LOGGER.exception("model/%s handler failed", command)

    def _controls_applied(self, result: ControlResult) -> None:
        """Labels listened for or thresholds changed: update them (and their retained topics, where there are)."""
        with self._lock:
            enabled = set(result.enabled)
            self._enabled = tuple(x for x in self._info.labels if x in enabled)
            self._thresholds |= {x: float(v) for x, v in result.thresholds.items() if x in self._slugs}
        self._controls_changed()

    def close(self) -> None:
        """Say offline."""
        self._emit(self.topics.status, OFFLINE, self.config.retain, False)

    def handle_control(self, payload: bytes) -> ControlResult:
        """Run the control handler on a raw payload; nothing it raises escapes."""
        handler = self._handler
        if handler is None:
            result = self.in_force("set: runtime control is not available", payload)
        else:
            try:
                result = handler(payload)
            except Exception:  # network input must never take the daemon down
                _LOGGER.exception("control handler failed")
                result = self.in_force("set: internal error, nothing changed", payload)
        self._emit(self.topics.set_result, self._payloads.set_result(result), False, True)
        if result.ok:
            self._controls_applied(result)
        return result

    def in_force(self, error: str, request: bytes) -> ControlResult:
        """A refusal carrying the values in force (and the request's id, when it has one)."""
        with self._lock:
            thresholds, enabled = dict(self._thresholds), self._enabled
        return ControlResult(ok=False, error=error, id=request_id(request), thresholds=thresholds, enabled=enabled)

    def _go_online(self) -> None:
        self._emit(self.topics.status, ONLINE, self.config.retain, False)
        for topic, payload in self._state_messages():
            self._emit(topic, payload, self.config.retain, False)

    def _state_messages(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(self.topics.state(self._slugs[x]), ON if on else OFF) for x, on in self._states.items()]

    def _controls_changed(self) -> None:
        """The console has no control topics."""

    def _control_messages(self, only: str | None = None) -> list[tuple[str, str]]:
        """``listen/<label>`` (ON/OFF) and ``threshold/<label>`` of every label (or of ``only``)."""
        with self._lock:
            enabled, out = set(self._enabled), []
            for label, slug in self._slugs.items():
                if only not in (None, label):
                    continue
                out.append((self.topics.listen(slug), ON if label in enabled else OFF))
                if label in self._thresholds:
                    out.append((self.topics.threshold(slug), format(round(self._thresholds[label], 6), "g")))
            return out

    def _model_changed(self, old: DeviceInfo, gone: Mapping[str, str]) -> None:
        """``gone``: labels of the old model that the new one lacks, with their old topic levels."""
        del old
        for slug in gone.values():
            self._emit(self.topics.state(slug), "", self.config.retain, False)
        for topic, payload in self._state_messages():
            self._emit(topic, payload, self.config.retain, False)

    def _stats(self) -> dict[str, Any]:
        return {}

    def _emit(self, topic: str, payload: str, retain: bool, is_json: bool) -> None:
        raise NotImplementedError


def _feedback_fields(payload: bytes) -> tuple[str | None, str | None]:
    """The ``id`` and ``verdict`` a refused ``feedback`` payload named, where it named them as strings."""
    if len(payload) > MAX_FEEDBACK_BYTES:
        return None, None
    try:
        data = json.loads(payload)
    except ValueError:  # not UTF-8, not JSON
        return None, None
    if not isinstance(data, dict):
        return None, None
    return _named(data.get("id")), _named(data.get("verdict"))


def _named(value: Any) -> str | None:
    return value[:64] if isinstance(value, str) else None


class ConsoleSink(BaseSink):
    """JSON lines on stdout: ``{"topic": ..., "retain": ..., "payload": ...}``."""

    def __init__(self, config: MqttConfig, stream: TextIO | None = None) -> None:
        super().__init__(config)
        self._stream = stream

    def _emit(self, topic: str, payload: str, retain: bool, is_json: bool) -> None:
        body = payload if is_json else json.dumps(payload)
        line = f'{{"topic":{json.dumps(topic)},"retain":{json.dumps(retain)},"payload":{body}}}\n'
        stream = self._stream or sys.stdout
        with self._lock:
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError) as exc:  # closed pipe or stream: keep classifying
                _LOGGER.warning("console sink cannot write: %s", exc)
