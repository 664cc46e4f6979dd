"""A real mosquitto broker on a loopback port, and MQTT clients that record what they see."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from kit.process import TempDaemon

_LOGGER = logging.getLogger(__name__)

SETUP_HINT = "install the system packages with deploy/setup.sh"
# Debian puts mosquitto in /usr/sbin, which is not on a normal user's PATH.
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_POLL_S = 0.02


def find_binary(name: str) -> str:
    """Return the path of a system binary, searching PATH then the sbin directories."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))
    if path is None:
        raise FileNotFoundError(f"{name!r} not found on PATH or in {_SBIN_DIRS}: {SETUP_HINT}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on host that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Mosquitto(TempDaemon):
    """A mosquitto process on a fixed loopback port that can be stopped and restarted.

    The port is chosen once, at construction, so clients can reconnect after `stop()` +
    `start()`. There is no persistence: retained messages do not survive a restart.
    """

    name = "mosquitto"

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._binary = find_binary("mosquitto")
        self._dir = Path(tempfile.mkdtemp(prefix="auricle-mosquitto-"))
        self.config_path = self._dir / "mosquitto.conf"
        self.log_path = self._dir / "mosquitto.log"
        self.config_path.write_text(f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n")

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the broker and return once it accepts TCP connections."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([self._binary, "-c", str(self.config_path)], stdout=log, stderr=log)
        started = time.monotonic()
        deadline = started + timeout_s
        while not _accepts(self.host, self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"mosquitto not accepting on {self.host}:{self.port} after {timeout_s} s:\n{self.log_tail()}"
                )
            time.sleep(_POLL_S)
        _LOGGER.info(
            "mosquitto pid %d on %s:%d ready in %.3f s",
            self.proc.pid,
            self.host,
            self.port,
            time.monotonic() - started,
        )


@dataclass(frozen=True)
class Message:
    """One message as a client received it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    """The broker's retain flag: set for retained messages sent on subscribe."""
    monotonic_s: float
    """time.monotonic() on arrival."""
    wall_s: float
    """time.time() on arrival."""

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return self.payload.decode()


def new_client(client_id: str = "", *, protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311) -> mqtt.Client:
    """Return a paho 2.x client that reconnects quickly (1-2 s) after a broker restart."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
    )
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    return client


class Subscriber:
    """A client that subscribes to one topic filter and records every message it receives.

    It resubscribes on every (re)connect; `wait_subscribed()` waits for the SUBACK.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str = "#",
        *,
        qos: int = 1,
        client_id: str = "",
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
        timeout_s: float = 10.0,
    ) -> None:
        self.topic_filter = topic_filter
        self._qos = qos
        self._lock = threading.Condition()
        self._messages: list[Message] = []
        self._subscribed = threading.Event()
        self._client = new_client(client_id, protocol=protocol)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.connect_async(host, port, keepalive=10)
        self._client.loop_start()
        try:
            self.wait_subscribed(timeout_s)
        except TimeoutError:
            self.close()
            raise

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            client.subscribe(self.topic_filter, qos=self._qos)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, _rcs: Any, _p: Any) -> None:
        self._subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._subscribed.clear()
        _LOGGER.debug("subscriber %r disconnected: %s", self.topic_filter, rc)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        message = Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), time.monotonic(), time.time())
        with self._lock:
            self._messages.append(message)
            self._lock.notify_all()

    def wait_subscribed(self, timeout_s: float = 10.0) -> None:
        """Wait until the subscription is active on the current connection."""
        if not self._subscribed.wait(timeout_s):
            raise TimeoutError(f"no SUBACK for {self.topic_filter!r} within {timeout_s} s")

    def messages(self, topic_filter: str | None = None) -> list[Message]:
        """Return a copy of the messages received so far, optionally filtered by topic."""
        with self._lock:
            found = list(self._messages)
        if topic_filter is None:
            return found
        return [m for m in found if mqtt.topic_matches_sub(topic_filter, m.topic)]

    def wait_for(self, predicate: Callable[[Message], bool], timeout_s: float = 5.0, what: str = "") -> Message:
        """Return the first message (received before or during the wait) matching predicate.

        Raises AssertionError listing everything received if none matches within timeout_s.
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                match = next((m for m in self._messages if predicate(m)), None)
                remaining = deadline - time.monotonic()
                if match is not None or remaining <= 0:
                    break
                self._lock.wait(remaining)
        if match is None:
            raise AssertionError(self._describe_miss(what or repr(predicate), timeout_s))
        return match

    def wait_for_topic(self, topic: str, timeout_s: float = 5.0) -> Message:
        """Return the first message on exactly this topic."""
        return self.wait_for(lambda m: m.topic == topic, timeout_s, what=f"topic {topic!r}")

    def _describe_miss(self, what: str, timeout_s: float) -> str:
        got = self.messages()
        lines = [f"no message matching {what} within {timeout_s} s; {len(got)} received:"]
        lines += [f"  {m.topic} retain={m.retain} {m.payload[:200]!r}" for m in got[-50:]]
        return "\n".join(lines)

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self._lock:
            self._messages.clear()

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()


def publish(
    host: str,
    port: int,
    topic: str,
    payload: bytes | str,
    retain: bool = False,
    timeout: float = 5.0,
    *,
    qos: int = 1,
) -> None:
    """Publish one message from a throwaway client and wait until the broker has it."""
    client = new_client()
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect_async(host, port)
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise TimeoutError(f"no CONNACK from {host}:{port} within {timeout} s")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"publish to {topic!r} not acknowledged within {timeout} s")
    finally:
        client.disconnect()
        client.loop_stop()


def drop_connection(client: mqtt.Client) -> None:
    """Simulate a crash: stop the client's loop and close its socket without DISCONNECT.

    The broker then publishes the client's last will.
    """
    client.loop_stop()
    sock = client.socket()
    if sock is not None:
        sock.close()
