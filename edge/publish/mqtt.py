"""Publish auricle's events to an MQTT broker (paho-mqtt 2.x) with Home Assistant discovery.

Classification never waits on the network: paho's own thread does all I/O
(``connect_async`` + ``loop_start``), ``publish`` only queues, and events
produced while the broker is away go to a bounded deque (oldest dropped and
counted) that is flushed on reconnect.  paho reconnects with a backoff capped at
``mqtt.reconnect_max_s``; why it cannot connect, or why a connection was lost, is
logged once per cause and backoff step (edge/publish/mqtttrouble.py) and, on a
terminal, shown on the console as ``not connected: <why>``.  paho's callbacks never wait on the
publisher's lock: they hand connects, losses and commands to one thread of ours, in order
(edge/publish/mqttinbox.py).  On every (re)connect and on Home
Assistant's birth message the publisher sends ``online``, discovery, the
retained states and the latest health and level again, because a broker
restart without persistence, or a freshly started Home Assistant, has none of them.

Commands (``set``, Home Assistant's ``listen/<label>/set`` and
``threshold/<label>/set``, ``feedback``, ``model/*``) that arrive with the retain flag are
refused, never carried out (edge/publish/mqttclient.py keeps the flag); an empty one
is how a retained command is cleared, and is ignored.

The topic and payload contract is documented in docs/mqtt.md.
"""

from __future__ import annotations

import collections
import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edge.detect.events import Event
from edge.detect.set_command import EntityKind, entity_command
from edge.publish.console import HumanConsole, write_line
from edge.publish.discovery import Discovery, hardware_model
from edge.publish.mqttclient import make_client, subscribe_commands
from edge.publish.mqttconfig import MqttConfig
from edge.publish.mqttinbox import Inbox
from edge.publish.mqtttrouble import Attempt, ConnectionLog, connect_failure
from edge.publish.payloads import MODEL_COMMANDS, OFFLINE, DeviceInfo, Publisher, group_topic
from edge.publish.sinks import BaseSink, ConsoleSink

_LOGGER = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 2.0
"""How long close() waits for the broker to take the final 'offline'."""
RETAINED_REFUSAL = "set: retained commands are refused; publish without retain (clear this one with an empty message)"


def make_publisher(config: MqttConfig, human: bool | None = None) -> Publisher:
    """An MQTT publisher when a host is configured, otherwise the console.

    The console is for people (edge.publish.console) when ``human`` is true, or when it is
    None and stdout is a terminal; otherwise JSON lines (ConsoleSink).  With a broker, a person's
    terminal shows whether it is connected.
    """
    if human is None:
        human = sys.stdout.isatty()
    if config.host is None:
        return HumanConsole(config) if human else ConsoleSink(config)
    return MqttPublisher(config, console=sys.stdout if human else None)


class MqttPublisher(BaseSink):
    """The Publisher for a real broker; every method returns without waiting on the network."""

    def __init__(self, config: MqttConfig, console: TextIO | None = None) -> None:
        """``console``: where a person sees the connection come and go (``not connected: <why>``)."""
        if config.host is None:
            raise ValueError("MqttPublisher needs mqtt.host")
        super().__init__(config)
        self._host = config.host
        self._console = console
        self._trouble = ConnectionLog(
            f"{config.host}:{config.port}",
            config.reconnect_min_s,
            config.reconnect_max_s,
            on_change=None if console is None else self._show,
        )
        self._attempt = Attempt()
        self._link_up = False
        """paho's thread's own view: a CONNACK accepted and no disconnect since (only that thread uses it)."""
        self._inbox = Inbox()
        self._connected = False
        self._closing = False
        self._started = False
        self._buffer: collections.deque[tuple[str, str]] = collections.deque(maxlen=config.offline_buffer)
        self._counts = collections.Counter[str]()
        self._discovery: Discovery | None = None
        self._hw_version = hardware_model()
        self._removals: list[str] = []
        """Retained topics to clear (labels a new model lacks), kept until sent."""
        self._controls_sent: dict[str, str] = {}
        """Payload last sent per ``listen/*`` and ``threshold/*`` topic."""
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = make_client(self.config, self.device_id)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_log = self._on_log
        return client

    def start(self, info: DeviceInfo) -> None:
        """Set the last will and start connecting in the background (returns at once)."""
        with self._lock:
            super().start(info)
            self._discovery = self._make_discovery()
            self._client.will_set(self.topics.status, OFFLINE, qos=self.config.qos, retain=True)
            self._started = True
        self._inbox.start()
        self._client.connect_async(self._host, self.config.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()
        _LOGGER.info("MQTT: connecting to %s:%d as %s", self._host, self.config.port, self.topics.base)

    def _make_discovery(self) -> Discovery:
        return Discovery(
            info=self._info,
            device_id=self.device_id,
            topics=self.topics,
            prefix=self.config.discovery_prefix,
            qos=self.config.qos,
            suggested_area=self.config.suggested_area,
            configuration_url=self.config.configuration_url,
            hw_version=self._hw_version,
        )

    def publish_event(self, event: Event) -> None:
        """Send now when connected, else keep it (bounded) for the next connection."""
        with self._lock:
            for topic, payload in self._event_messages(event):
                if not (self._connected and self._send(topic, payload, False)):
                    self._keep(topic, payload)

    def close(self) -> None:
        """Publish 'offline', disconnect and stop paho's thread; bounded by CLOSE_TIMEOUT_S."""
        with self._lock:
            if self._closing or not self._started:
                return
            self._closing = True
            connected = self._connected
        if connected:
            info = self._client.publish(self.topics.status, OFFLINE, qos=self.config.qos, retain=True)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                info.wait_for_publish(CLOSE_TIMEOUT_S)
        self._client.disconnect()
        self._client.loop_stop()
        self._inbox.stop()
        _LOGGER.info("MQTT: closed (%s)", dict(self._counts))

    @property
    def connected(self) -> bool:
        """True between CONNACK and the next disconnect."""
        return self._connected

    def _keep(self, topic: str, payload: str) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self._counts["dropped_offline"] += 1
        self._buffer.append((topic, payload))

    def _send(self, topic: str, payload: str, retain: bool) -> bool:
        info = self._client.publish(topic, payload, qos=self.config.qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._counts["publish_errors"] += 1
            _LOGGER.debug("MQTT: publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            return False
        return True

    def _emit(self, topic: str, payload: str, retain: bool, is_json: bool) -> None:
        # states and discovery are resent on reconnect, levels and scores are stale by then
        with self._lock:
            if self._connected and not self._closing:
                self._send(topic, payload, retain)

    def _stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "mqtt": {
                    "connected": self._connected,
                    "buffered": len(self._buffer),
                    "dropped_offline": self._counts["dropped_offline"],
                    "reconnects": self._counts["connects"] - 1 if self._counts["connects"] else 0,
                    "publish_errors": self._counts["publish_errors"],
                }
            }

    # paho's callbacks run on its network thread, which may hold paho's own locks: they note what paho
    # told and hand the rest to the inbox's thread, never waiting on self._lock (edge/publish/mqttinbox.py)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:  # the broker closes the connection next: _on_disconnect says it
            self._attempt.refuse(reason)
            return
        self._attempt.clear()
        self._link_up = True
        self._inbox.change(lambda: self._now_connected(client))

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` around the connect, so the error it handles is the cause
        if not self._closing:
            cause = connect_failure(sys.exc_info()[1], tls=self.config.tls.enabled)
            self._inbox.change(lambda: self._trouble.failed(cause, opening=True))

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        was_up, self._link_up = self._link_up, False
        if self._closing:
            return
        cause = self._attempt.ended(flags, reason, connected=was_up)
        self._inbox.change(lambda: self._now_disconnected(cause, was_up=was_up))

    def _on_log(self, _client: mqtt.Client, _userdata: Any, level: int, text: str) -> None:
        self._attempt.hear(level, text)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic, payload, retained = msg.topic, bytes(msg.payload), bool(msg.retain)
        self._inbox.hand(lambda: self._route(topic, payload, retained), what=f"a message on {topic!r}")

    # ... and what they hand over, on the inbox's thread

    def _now_connected(self, client: mqtt.Client) -> None:
        if self._closing:  # a connect that raced close(): 'offline' is the last word
            return
        commands = [self.topics.set, self.topics.feedback, *self.topics.entity_commands(), *self._model_topics()]
        subscribe_commands(client, self.config, commands)
        client.subscribe(f"{self.config.discovery_prefix}/status", qos=1)
        with self._lock:
            self._connected = True
            self._counts["connects"] += 1
            self._go_online()
            self._announce()
            self._send_controls(force=True)
            self._send(self.topics.reason, self._reason or self._payloads.reason(None), self.config.retain)
            if self._model_state is not None:
                self._send(self.topics.model("state"), self._model_state, True)
            self._send_latest()
            self._send_removals()
            self._flush()
        self._trouble.connected()

    def _now_disconnected(self, cause: str, *, was_up: bool) -> None:
        with self._lock:
            self._connected = False
        if self._closing:
            return
        if was_up:
            self._trouble.lost(cause)
        else:
            self._trouble.failed(cause)

    def _show(self, cause: str | None) -> None:
        """The connection's state on the console, for a person at the terminal."""
        if self._console is None:
            return
        where = self._trouble.where
        text = f"connected to {where} as {self.topics.base}" if cause is None else f"not connected: {where}: {cause}"
        with self._lock:
            write_line(self._console, text)

    def _model_topics(self) -> dict[str, str]:
        """Subscribed model command topics (own and per group) -> command."""
        topics = {self.topics.model(c): c for c in MODEL_COMMANDS}
        for group in self.config.groups:
            topics |= {group_topic(self.config.prefix, group, c): c for c in MODEL_COMMANDS}
        return topics

    def _route(self, topic: str, payload: bytes, retained: bool) -> None:
        command = self._model_topics().get(topic)
        if command is not None:
            self.handle_model_command(command, payload, retained)
        elif topic == self.topics.set:
            self._on_command(payload, retained, None)
        elif topic == self.topics.feedback:
            self.handle_feedback(payload, retained)
        elif topic == f"{self.config.discovery_prefix}/status":
            if payload == b"online":
                self._on_birth()
        else:
            self._on_entity_command(topic, payload, retained)

    def _on_birth(self) -> None:
        _LOGGER.info("MQTT: Home Assistant came online; republishing discovery and states")
        with self._lock:
            self._announce()
            for topic, payload in self._state_messages():
                self._send(topic, payload, self.config.retain)
            self._send_controls(force=True)
            self._send_latest()

    def _send_latest(self) -> None:
        """The last health and level again: a broker restarted without persistence has lost them."""
        for topic, payload in self._latest_messages():
            self._send(topic, payload, self.config.retain)

    def _on_entity_command(self, topic: str, payload: bytes, retained: bool) -> None:
        """``listen/<label>/set`` (``ON``/``OFF``) or ``threshold/<label>/set`` (a number), from Home Assistant."""
        target = self.topics.entity_command(topic)
        with self._lock:
            by_slug = {slug: label for label, slug in self._slugs.items()}
        label = None if target is None else by_slug.get(target[1])
        if target is None or label is None:
            _LOGGER.warning("MQTT: command for no label of this model on %r", topic)
            return
        self._on_command(payload, retained, (target[0], label))

    def _on_command(self, payload: bytes, retained: bool, entity: tuple[EntityKind, str] | None) -> None:
        """One ``set`` request (raw, or from an entity): carried out unless retained; empty = a clearing."""
        if not payload:
            return  # an empty message is how a retained command is cleared, not a request
        request = payload if entity is None else entity_command(entity[0], entity[1], payload)
        if retained:  # it would be carried out again on every reconnect
            _LOGGER.warning("MQTT: retained command refused: %r", payload[:200])
            refusal = self.in_force(RETAINED_REFUSAL, request)
            self._emit(self.topics.set_result, self._payloads.set_result(refusal), False, True)
            result = refusal
        else:
            result = self.handle_control(request)
        if entity is not None and not result.ok:
            with self._lock:
                self._send_controls(force=True, only=entity[1])  # Home Assistant shows the value in force

    def _announce(self) -> None:
        if self._discovery is None:
            return
        messages = self._discovery.messages() if self.config.discovery else []
        for topic, payload in messages:
            self._send(topic, payload, True)

    def _controls_changed(self) -> None:
        with self._lock:
            self._send_controls(force=False)

    def _send_controls(self, *, force: bool, only: str | None = None) -> None:
        """Retained ``listen/*`` and ``threshold/*``: the changed ones, or all (or ``only``'s) when forced."""
        if not self._connected:
            return  # the next connect sends them all
        for topic, payload in self._control_messages(only):
            if (force or self._controls_sent.get(topic) != payload) and self._send(topic, payload, True):
                self._controls_sent[topic] = payload

    def _model_changed(self, old: DeviceInfo, gone: Mapping[str, str]) -> None:
        """A new model: clear the retained topics and entities of labels it lacks, announce the rest."""
        with self._lock:
            old_discovery = self._discovery
            self._discovery = self._make_discovery()
            for label, slug in gone.items():
                topics = [self.topics.state(slug), self.topics.listen(slug), self.topics.threshold(slug)]
                self._removals += topics
                for topic in topics:
                    self._controls_sent.pop(topic, None)
                if old_discovery is not None and self.config.discovery:
                    self._removals += old_discovery.removals(label)
            if not self._connected:
                return  # the next connect sends the removals and announces the new set
            self._send_removals()
            self._announce()
            for topic, payload in self._state_messages():
                self._send(topic, payload, self.config.retain)
            self._send_controls(force=True)
        del old

    def _send_removals(self) -> None:
        while self._removals and self._send(self._removals[0], "", True):
            self._removals.pop(0)

    def _flush(self) -> None:
        while self._buffer:
            if not self._send(*self._buffer[0], False):
                return
            self._buffer.popleft()
