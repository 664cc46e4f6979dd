"""Broker trouble, said: why a connection could not be opened or was lost, in words, once per cause.

The cause in words: refused, unreachable, DNS, TLS, not authorised (:func:`connect_failure`,
:func:`refusal`), and a lost connection with the socket's error or the broker's reason code rather than
paho's "Unspecified error" (:func:`loss`); :class:`Attempt` gathers what paho tells about one attempt
(its refusal, the socket error it logs) into that one cause.  :class:`ConnectionLog` says it once per
cause and backoff step, not once per attempt.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from edge.publish.mqttconfig import PASSWORD_ENV

_LOGGER = logging.getLogger(__name__)

REMIND_S = 600.0
"""While the broker stays out of reach at the longest backoff, the log says so again this often."""
_SOCKET_ERRORS = ("failed to receive on socket", "timeout on socket")
"""paho's error log lines that name why a connection broke (it reports them only to ``on_log``)."""
_ERRNO = re.compile(r"^\[Errno \d+\] ")
_REFUSED_LOGIN = {134: "bad user name or password", 135: "not authorised"}
"""CONNACK reason codes of a refused login (MQTT 5; paho maps 3.1.1's 4 and 5 onto them)."""


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


class Attempt:
    """What paho has told about the connection attempt under way: the broker's refusal (CONNACK) and the socket
    error it logged; :meth:`ended` turns them, with the disconnect's reason code, into one cause."""

    def __init__(self) -> None:
        self.refused: str | None = None
        self.socket_error: str | None = None

    def refuse(self, reason: Any) -> None:
        """CONNACK refused the attempt (the broker closes the connection next)."""
        self.refused = refusal(reason)

    def hear(self, level: int, text: str) -> None:
        """One of paho's log lines (``on_log``): keep a socket error."""
        self.socket_error = socket_error(level, text) or self.socket_error

    def ended(self, flags: Any, reason: Any, *, connected: bool) -> str:
        """Why the connection (``connected``: a working one) or the attempt ended; the next attempt starts clean."""
        from_broker = bool(getattr(flags, "is_disconnect_packet_from_server", False))
        cause = self.refused or loss(
            reason, from_broker=from_broker, socket_error=self.socket_error, connected=connected
        )
        self.clear()
        return cause

    def clear(self) -> None:
        """A new attempt (or a connection that works): nothing heard yet."""
        self.refused = self.socket_error = None


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
