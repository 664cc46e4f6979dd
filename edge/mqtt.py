"""Publish auricle's events to an MQTT broker (paho-mqtt 2.x) with Home Assistant discovery.

Classification never waits on the network: paho's own thread does all I/O
(``connect_async`` + ``loop_start``), ``publish`` only queues, and events
produced while the broker is away go to a bounded deque (oldest dropped and
counted) that is flushed on reconnect.  On every (re)connect and on Home
Assistant's birth message the publisher sends ``online``, discovery and the
retained states again, because a broker restart without persistence, or a
freshly started Home Assistant, has none of them.

The topic and payload contract is documented in docs/mqtt.md.
"""

from __future__ import annotations

import collections
import logging
import ssl
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge.console import HumanConsole
from edge.control import ControlResult
from edge.discovery import Discovery
from edge.events import Event
from edge.mqttconfig import MqttConfig, ScoresConfig, TlsConfig
from edge.payloads import MODEL_COMMANDS, OFFLINE, DeviceInfo, Publisher, group_topic
from edge.sinks import BaseSink, ConsoleSink

__all__ = [
    "ConsoleSink",
    "DeviceInfo",
    "MqttConfig",
    "MqttPublisher",
    "Publisher",
    "ScoresConfig",
    "TlsConfig",
    "make_publisher",
]

_LOGGER = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 2.0
"""How long close() waits for the broker to take the final 'offline'."""
_QUEUE_HEADROOM = 1000


def make_publisher(config: MqttConfig, human: bool | None = None) -> Publisher:
    """An MQTT publisher when a host is configured, otherwise the console.

    The console is for people (edge.console) when ``human`` is true, or when it is
    None and stdout is a terminal; otherwise JSON lines (ConsoleSink).
    """
    if config.host is None:
        if human is None:
            human = sys.stdout.isatty()
        return HumanConsole(config) if human else ConsoleSink(config)
    return MqttPublisher(config)


class MqttPublisher(BaseSink):
    """The Publisher for a real broker; every method returns without waiting on the network."""

    def __init__(self, config: MqttConfig) -> None:
        if config.host is None:
            raise ValueError("MqttPublisher needs mqtt.host")
        super().__init__(config)
        self._host = config.host
        self._connected = False
        self._closing = False
        self._started = False
        self._buffer: collections.deque[str] = collections.deque(maxlen=config.offline_buffer)
        self._counts = collections.Counter[str]()
        self._discovery: Discovery | None = None
        self._removals: list[str] = []
        """Retained topics to clear (labels a new model lacks), kept until sent."""
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client_id = self.config.client_id or f"auricle-{self.device_id}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        client.reconnect_delay_set(self.config.reconnect_min_s, self.config.reconnect_max_s)
        client.max_queued_messages_set(self.config.offline_buffer + _QUEUE_HEADROOM)
        if self.config.username is not None:
            client.username_pw_set(self.config.username, self.config.resolved_password())
        if self.config.tls.enabled:
            _set_tls(client, self.config.tls)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self, info: DeviceInfo) -> None:
        """Set the last will and start connecting in the background (returns at once)."""
        with self._lock:
            super().start(info)
            self._discovery = Discovery(
                info=info,
                device_id=self.device_id,
                topics=self.topics,
                prefix=self.config.discovery_prefix,
                qos=self.config.qos,
            )
            self._client.will_set(self.topics.status, OFFLINE, qos=self.config.qos, retain=True)
            self._started = True
        self._client.connect_async(self._host, self.config.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()
        _LOGGER.info("MQTT: connecting to %s:%d as %s", self._host, self.config.port, self.topics.base)

    def publish_event(self, event: Event) -> None:
        """Send now when connected, else keep it (bounded) for the next connection."""
        payload = self._payloads.event(event)
        with self._lock:
            if self._connected and self._send(self.topics.event, payload, False):
                return
            self._keep(payload)

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
        _LOGGER.info("MQTT: closed (%s)", dict(self._counts))

    @property
    def connected(self) -> bool:
        """True between CONNACK and the next disconnect."""
        return self._connected

    def _keep(self, payload: str) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self._counts["dropped_offline"] += 1
        self._buffer.append(payload)

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

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            _LOGGER.warning("MQTT: broker refused the connection: %s", reason)
            return
        client.subscribe(self.topics.set, qos=1)
        client.subscribe(f"{self.config.discovery_prefix}/status", qos=1)
        for topic in self._model_topics():
            client.subscribe(topic, qos=1)
        with self._lock:
            self._connected = True
            self._counts["connects"] += 1
            self._go_online()
            self._announce()
            if self._reason is not None:
                self._send(self.topics.reason, self._reason, self.config.retain)
            if self._model_state is not None:
                self._send(self.topics.model("state"), self._model_state, True)
            self._send_removals()
            self._flush()
        _LOGGER.info("MQTT: connected to %s:%d", self._host, self.config.port)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        with self._lock:
            self._connected = False
        if not self._closing:
            _LOGGER.warning("MQTT: disconnected (%s); reconnecting in the background", reason)

    def _model_topics(self) -> dict[str, str]:
        """Subscribed model command topics (own and per group) -> command."""
        topics = {self.topics.model(c): c for c in MODEL_COMMANDS}
        for group in self.config.groups:
            topics |= {group_topic(self.config.prefix, group, c): c for c in MODEL_COMMANDS}
        return topics

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            command = self._model_topics().get(msg.topic)
            if command is not None:
                self.handle_model_command(command, bytes(msg.payload), bool(msg.retain))
            elif msg.topic == self.topics.set:
                self._on_set(msg)
            elif msg.topic == f"{self.config.discovery_prefix}/status" and msg.payload == b"online":
                _LOGGER.info("MQTT: Home Assistant came online; republishing discovery and states")
                with self._lock:
                    self._announce()
                    for topic, payload in self._state_messages():
                        self._send(topic, payload, self.config.retain)
        except Exception:  # paho would let this kill its thread: log and keep serving
            _LOGGER.exception("MQTT: error handling a message on %r", msg.topic)

    def _on_set(self, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            # a retained command would be replayed on every reconnect: refuse it once, visibly
            self._emit(self.topics.set_result, self._retained_refusal(), False, True)
            return
        self.handle_control(bytes(msg.payload))

    def _retained_refusal(self) -> str:
        result = ControlResult(ok=False, error="set: retained commands are ignored; publish without retain")
        return self._payloads.set_result(result)

    def _announce(self) -> None:
        if self._discovery is None:
            return
        messages = self._discovery.messages(self._enabled) if self.config.discovery else []
        for topic, payload in messages:
            self._send(topic, payload, True)

    def _labels_changed(self, gone: Sequence[str]) -> None:
        with self._lock:
            if not self._connected:
                return  # the next connect announces the new set
            for label in gone:
                self._send(self.topics.state(self._slugs[label]), "", True)
            self._announce()

    def _model_changed(self, old: DeviceInfo, gone: Mapping[str, str]) -> None:
        """A new model: clear the retained states and entities of labels it lacks, announce the rest."""
        with self._lock:
            old_discovery = self._discovery
            self._discovery = Discovery(
                info=self._info,
                device_id=self.device_id,
                topics=self.topics,
                prefix=self.config.discovery_prefix,
                qos=self.config.qos,
            )
            for label, slug in gone.items():
                self._removals.append(self.topics.state(slug))
                if old_discovery is not None and self.config.discovery:
                    self._removals.append(old_discovery.removal(label))
            if not self._connected:
                return  # the next connect sends the removals and announces the new set
            self._send_removals()
            self._announce()
            for topic, payload in self._state_messages():
                self._send(topic, payload, self.config.retain)
        del old

    def _send_removals(self) -> None:
        while self._removals and self._send(self._removals[0], "", True):
            self._removals.pop(0)

    def _flush(self) -> None:
        while self._buffer:
            if not self._send(self.topics.event, self._buffer[0], False):
                return
            self._buffer.popleft()


def _set_tls(client: mqtt.Client, tls: TlsConfig) -> None:
    client.tls_set(
        ca_certs=tls.ca_file,
        certfile=tls.cert_file,
        keyfile=tls.key_file,
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    if tls.insecure:
        client.tls_insecure_set(True)
