"""The paho client behind :class:`edge.publish.mqtt.MqttPublisher`: protocol, login, TLS, command subscriptions,
and what went wrong in words.

Commands are subscribed with MQTT 5's "retain as published": the broker then
keeps the retain flag of a message it forwards live, so a retained command is
recognised whether it was stored before the daemon connected (MQTT sets the
flag on those anyway) or published while it is connected.  Over MQTT 3.1.1 a
live message always arrives unflagged.

Broker trouble is said once per cause and backoff step (:class:`ConnectionLog`), with
the cause in words: refused, unreachable, DNS, TLS, not authorised
(:func:`connect_failure`, :func:`refusal`), and a lost connection with the socket's
error or the broker's reason code rather than paho's "Unspecified error" (:func:`loss`).
:class:`OneShot` is a single bounded connection for ``auricle run --check`` and for
telling the broker why the daemon did not start.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.publish.mqttconfig import PASSWORD_ENV, MqttConfig, TlsConfig
from edge.publish.payloads import ONLINE, Payloads, Topics

_LOGGER = logging.getLogger(__name__)

QUEUE_HEADROOM = 1000
"""Messages paho may queue beyond the offline buffer (states, discovery) before refusing more."""
_PROTOCOLS = {"mqttv5": MQTTProtocolVersion.MQTTv5, "mqttv311": MQTTProtocolVersion.MQTTv311}
REMIND_S = 600.0
"""While the broker stays out of reach at the longest backoff, the log says so again this often."""
CHECK_TIMEOUT_S = 3.0
"""How long ``auricle run --check`` tries the broker."""
REPORT_TIMEOUT_S = 5.0
"""How long a daemon that cannot start tries to tell the broker why (connect and publish)."""
_SOCKET_ERRORS = ("failed to receive on socket", "timeout on socket")
"""paho's error log lines that name why a connection broke (it reports them only to ``on_log``)."""
_ERRNO = re.compile(r"^\[Errno \d+\] ")
_REFUSED_LOGIN = {134: "bad user name or password", 135: "not authorised"}
"""CONNACK reason codes of a refused login (MQTT 5; paho maps 3.1.1's 4 and 5 onto them)."""


def make_client(config: MqttConfig, device_id: str, *, id_suffix: str = "") -> mqtt.Client:
    """A paho client set up from ``config`` (callbacks are the caller's to attach).

    ``id_suffix`` makes a client id of its own, so that a probe does not take over the daemon's session."""
    client_id = (config.client_id or f"auricle-{device_id}") + id_suffix
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=_PROTOCOLS[config.protocol])
    client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
    client.max_queued_messages_set(config.offline_buffer + QUEUE_HEADROOM)
    if config.username is not None:
        client.username_pw_set(config.username, config.resolved_password())
    if config.tls.enabled:
        set_tls(client, config.tls)
    return client


def subscribe_commands(client: mqtt.Client, config: MqttConfig, topics: Sequence[str]) -> None:
    """Subscribe to command topics (QoS 1), keeping the retain flag where the protocol allows."""
    if config.protocol == "mqttv5":
        options = SubscribeOptions(qos=1, retainAsPublished=True)
        client.subscribe([(topic, options) for topic in topics])
    else:
        client.subscribe([(topic, 1) for topic in topics])


def set_tls(client: mqtt.Client, tls: TlsConfig) -> None:
    """Verify the broker against ``tls.ca_file`` (or the system's CAs); a client certificate if given."""
    client.tls_set(
        ca_certs=tls.ca_file,
        certfile=tls.cert_file,
        keyfile=tls.key_file,
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    if tls.insecure:
        client.tls_insecure_set(True)


def connect_failure(exc: BaseException | None, *, tls: bool) -> str:
    """Why opening the connection failed (TCP, DNS or TLS), in words."""
    if exc is None:
        return "connection failed (paho gave no reason)"
    if isinstance(exc, socket.gaierror):
        return f"DNS: the host name does not resolve ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted ({exc.verify_message or exc.reason})"
    if isinstance(exc, ssl.SSLError) or (tls and isinstance(exc, (ConnectionResetError, ConnectionAbortedError))):
        return f"TLS handshake failed: {_text(exc)} (is the port a TLS listener?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no broker listens on that port)"
    if isinstance(exc, TimeoutError):
        return "no answer (timed out): host down, or a firewall drops the connection"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"{_text(exc).lower()} (no route to the broker)"
    return _text(exc)


def refusal(reason: Any) -> str:
    """Why the broker answered CONNECT with a refusal (a paho ``ReasonCode``)."""
    login = _REFUSED_LOGIN.get(getattr(reason, "value", -1))
    if login is not None:
        return f"{login}: the broker refused the login (check mqtt.username and {PASSWORD_ENV})"
    return f"the broker refused the connection: {reason}"


def loss(reason: Any, *, from_broker: bool, socket_error: str | None, connected: bool) -> str:
    """Why a connection ended: the broker's DISCONNECT reason, the socket's error, or what paho's code means."""
    name = str(reason)
    why = _ERRNO.sub("", socket_error).lower() if socket_error else None
    if from_broker:
        return f"the broker disconnected it: {name}"
    if not connected and (why or name == "Unspecified error"):  # paho's words for an end of stream
        return f"the broker closed the connection before answering ({why or 'end of stream'}; a TLS listener?)"
    if why:
        return f"the connection broke: {why}"
    if name == "Keep alive timeout":
        return "no answer from the broker within the keepalive"
    if name == "Unspecified error":
        return "the broker closed the connection"
    if name == "Protocol error":
        return "protocol error: what answered does not speak MQTT as configured (mqtt.protocol, mqtt.tls)"
    return name


def _text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.strerror or exc)
    return str(getattr(exc, "strerror", None) or exc)


def socket_error(level: int, text: str) -> str | None:
    """The cause in one of paho's log lines, when it is a socket error (``on_log`` hears them)."""
    if level == mqtt.MQTT_LOG_ERR and text.startswith(_SOCKET_ERRORS):
        return text.split(": ", 1)[-1]
    return None


class ConnectionLog:
    """Says what happens to the connection: one line per cause and per backoff step, not per attempt.

    It follows paho's backoff: each wait before a reconnect doubles from ``min_s`` to ``max_s`` and
    starts again at ``min_s`` after a successful CONNACK.  ``on_change`` hears the cause whenever it
    changes (None once connected): the console shows it."""

    def __init__(
        self,
        where: str,
        min_s: int,
        max_s: int,
        on_change: Callable[[str | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self._min_s, self._max_s = min_s, max_s
        self._on_change = on_change
        self._clock = clock
        self._waits = 0
        """paho's reconnect waits since the last CONNACK (its delay doubles with each)."""
        self._first = True
        """No attempt has ended yet."""
        self._failures = 0
        self._since: float | None = None
        self.cause: str | None = None
        """Why there is no connection now; None while connected (or before the first attempt ends)."""
        self._said: tuple[str, int, float] | None = None
        """(cause, delay, when) of the last warning."""

    def _delay_s(self, wait: int) -> int:
        """paho's delay before its ``wait``-th reconnect (from 1) since the last CONNACK."""
        return min(self._min_s << min(wait - 1, 30), self._max_s)

    def failed(self, cause: str, *, opening: bool = False) -> None:
        """An attempt to connect failed; paho waits, then tries again.

        ``opening``: the socket could not be opened (paho's ``on_connect_fail``).  When the very first
        attempt fails that way, paho 2.2 waits twice before the next (its first-connection loop, then its
        main loop)."""
        waits = 2 if opening and self._first else 1
        delay = sum(self._delay_s(self._waits + k) for k in range(1, waits + 1))
        self._waits += waits
        self._first = False
        self._failures += 1
        now = self._clock()
        self._since = now if self._since is None else self._since
        said = self._said
        if said is None or said[0] != cause or said[1] != delay:
            _LOGGER.warning("MQTT: cannot connect to %s: %s; retrying in %d s", self.where, cause, delay)
        elif now - said[2] >= REMIND_S:
            minutes = (now - self._since) / 60
            _LOGGER.warning(
                "MQTT: still cannot connect to %s: %s (%d attempts in %.0f min); retrying every %d s",
                *(self.where, cause, self._failures, minutes, delay),
            )
        else:
            _LOGGER.debug("MQTT: cannot connect to %s: %s; retrying in %d s", self.where, cause, delay)
            return
        self._said = (cause, delay, now)
        self._change(cause)

    def lost(self, cause: str) -> None:
        """A working connection ended; paho waits ``min_s``, then reconnects."""
        self._waits, self._failures, self._since, self._first = 1, 0, self._clock(), False
        _LOGGER.warning("MQTT: connection to %s lost: %s; reconnecting in %d s", self.where, cause, self._delay_s(1))
        self._said = None
        self._change(f"connection lost: {cause}")

    def connected(self) -> None:
        """CONNACK: paho's backoff starts again."""
        if self._failures and self._since is not None:
            after = f" after {self._failures} failed attempts in {self._clock() - self._since:.0f} s"
        else:
            after = ""
        _LOGGER.info("MQTT: connected to %s%s", self.where, after)
        self._waits = self._failures = 0
        self._since = self._said = None
        self._first = False
        self._change(None)

    def _change(self, cause: str | None) -> None:
        if cause == self.cause and cause is not None:
            return
        self.cause = cause
        if self._on_change is not None:
            self._on_change(cause)


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
        self._socket_error: str | None = None
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
            from_broker = bool(getattr(flags, "is_disconnect_packet_from_server", False))
            self.failure = loss(reason, from_broker=from_broker, socket_error=self._socket_error, connected=False)
            self._answer.set()

    def _on_log(self, _c: mqtt.Client, _u: Any, level: int, text: str) -> None:
        self._socket_error = socket_error(level, text) or self._socket_error


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
    with OneShot(config, device_id, timeout_s) as attempt:
        if attempt.failure is not None:
            return attempt.failure
        if attempt.publish(topics.reason, Payloads("unknown").reason(reason), retain=True) and attempt.publish(
            topics.status, ONLINE, retain=True
        ):
            return None
        return "the broker did not confirm the messages in time"
