"""One bounded connection to the broker for a short job: ``auricle run --check``'s probe, and a daemon that
cannot start telling the broker why (``status/reason``)."""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt

from edge.publish.discovery import Discovery, device_info, hardware_model
from edge.publish.mqttclient import make_client
from edge.publish.mqttconfig import MqttConfig
from edge.publish.mqtttrouble import Attempt, connect_failure, refusal
from edge.publish.payloads import ONLINE, Payloads, Topics

_LOGGER = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0
"""How long ``auricle run --check`` tries the broker."""
REPORT_TIMEOUT_S = 5.0
"""How long a daemon that cannot start tries to tell the broker why (connect and publish)."""


class OneShot:
    """One connection for a short job, bounded by ``timeout_s`` in all: no retries, no will.

    Use it as a context manager; ``failure`` says why it did not connect (None: connected).  The connect
    runs in a daemon thread, since neither the name lookup nor a TLS handshake after a slow TCP connect
    keeps to one timeout: past the deadline it is left behind, and the process that exits next ends it."""

    def __init__(self, config: MqttConfig, device_id: str, timeout_s: float, *, id_suffix: str = "") -> None:
        if config.host is None:
            raise ValueError("OneShot needs mqtt.host")
        self.config, self._host = config, config.host
        self._deadline = time.monotonic() + timeout_s
        self._answer = threading.Event()
        self.failure: str | None = f"no answer from the broker within {timeout_s:g} s"
        self._attempt = Attempt()
        self._client = make_client(config, device_id, id_suffix=id_suffix)
        self._client.connect_timeout = timeout_s
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_log = self._on_log
        self._connecting = threading.Thread(target=self._connect, name="auricle-mqtt-oneshot", daemon=True)

    def left_s(self) -> float:
        """Seconds left of the job's time."""
        return max(self._deadline - time.monotonic(), 0.0)

    def __enter__(self) -> Self:
        self._connecting.start()
        self._answer.wait(self.left_s())  # no answer: failure stays "no answer"
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self._connecting.join(self.left_s())
        if not self._connecting.is_alive():  # else stuck in a lookup or handshake: left behind
            self._client.disconnect()
            self._client.loop_stop()

    def _connect(self) -> None:
        try:
            self._client.connect(self._host, self.config.port, keepalive=self.config.keepalive_s)
        except (OSError, ValueError) as exc:  # a socket, DNS or TLS error; ValueError: paho's own checks
            self.failure = connect_failure(exc, tls=self.config.tls.enabled)
            self._answer.set()
            return
        self._client.loop_start()

    def publish(self, topic: str, payload: str, *, retain: bool) -> bool:
        """Publish and wait (within the time left) until the broker has it."""
        info = self._client.publish(topic, payload, qos=max(self.config.qos, 1), retain=retain)
        try:
            info.wait_for_publish(self.left_s())
        except (ValueError, RuntimeError) as exc:  # not queued, or the connection went
            _LOGGER.debug("MQTT: publish to %s failed: %s", topic, exc)
            return False
        return info.is_published()

    def _on_connect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.failure = refusal(reason) if reason.is_failure else None
        self._answer.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if not self._answer.is_set():
            self.failure = self._attempt.ended(flags, reason, connected=False)
            self._answer.set()

    def _on_log(self, _c: mqtt.Client, _u: Any, level: int, text: str) -> None:
        self._attempt.hear(level, text)


def probe(config: MqttConfig, timeout_s: float = CHECK_TIMEOUT_S) -> str | None:
    """Connect once with the daemon's settings (its own client id, so a running daemon stays connected);
    None when the broker accepted, otherwise why not."""
    with OneShot(config, config.resolved_device_id(), timeout_s, id_suffix="-check") as attempt:
        return attempt.failure


def report_not_started(config: MqttConfig, reason: str, timeout_s: float = REPORT_TIMEOUT_S) -> str | None:
    """Leave ``reason`` retained on ``status/reason`` and ``online`` on ``status``; None when the broker has both,
    otherwise why not.

    ``online``, because Home Assistant shows the device's entities, its Problem sensor among them, only
    while ``status`` is ``online``: ``offline`` would hide the reason.  It uses the daemon's client id: a
    daemon that does run on these topics is disconnected for a moment, reconnects and says its own state
    again."""
    device_id = config.resolved_device_id()
    topics = Topics(f"{config.prefix}/{device_id}")
    messages = [(topics.reason, Payloads("unknown").reason(reason)), (topics.status, ONLINE)]
    if config.discovery:  # the Problem sensor, for a Home Assistant that never saw this device run
        messages.insert(0, _problem_config(config, device_id, topics))
    with OneShot(config, device_id, timeout_s) as attempt:
        if attempt.failure is not None:
            return attempt.failure
        if all(attempt.publish(topic, payload, retain=True) for topic, payload in messages):
            return None
        return "the broker did not confirm the messages in time"


def _problem_config(config: MqttConfig, device_id: str, topics: Topics) -> tuple[str, str]:
    from importlib import metadata

    try:
        version = metadata.version("auricle")
    except metadata.PackageNotFoundError:
        version = "unknown"
    discovery = Discovery(
        info=device_info(None, version),
        device_id=device_id,
        topics=topics,
        prefix=config.discovery_prefix,
        qos=config.qos,
        suggested_area=config.suggested_area,
        configuration_url=config.configuration_url,
        hw_version=hardware_model(),
    )
    return discovery.problem()
