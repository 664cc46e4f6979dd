"""Config section ``mqtt``: broker, topics, TLS, rates and buffers.

Validated once by :func:`edge.schema.build`; cross-field rules live in the
``__post_init__`` methods, whose ValueError becomes the one-line ConfigError.
The password may come from the file but ``AURICLE_MQTT_PASSWORD`` wins, so a
deployment never has to write it down.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.schema import setting

PASSWORD_ENV = "AURICLE_MQTT_PASSWORD"  # noqa: S105 (the variable's name, not a password)
_TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_-]+$")
GROUP_LEVEL = "group"
"""The topic level under the prefix that fleet commands use (so no device may be called that)."""
_TOPIC_PATH = re.compile(r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*$")
_URL = re.compile(r"^(https?://[^\s/]+\S*|homeassistant://\S+)$")


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """TLS to the broker: CA to trust, optional client certificate."""

    enabled: bool = setting(False)
    ca_file: str | None = setting(None, doc="PEM CA bundle; null = the system's CAs")
    cert_file: str | None = setting(None, doc="PEM client certificate (needs key_file)")
    key_file: str | None = setting(None, doc="PEM client key (needs cert_file)")
    insecure: bool = setting(False, doc="skip the host name check (testing only)")

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name} {path!r} is not a readable file")
        if not self.enabled and (self.ca_file or self.cert_file or self.insecure):
            raise ValueError("files or insecure given but enabled is false")


@dataclass(frozen=True, kw_only=True)
class ScoresConfig:
    """Optional top-k scores topic."""

    enabled: bool = setting(False)
    top_k: int = setting(3, lo=1, hi=100, unit="labels")
    max_rate_hz: float = setting(2.0, lo=0.01, hi=1000.0, unit="messages per second")


@dataclass(frozen=True, kw_only=True)
class MqttConfig:
    """Where and how to publish; ``host: null`` prints JSON lines instead."""

    host: str | None = setting(None, doc="broker host; null = console sink on stdout")
    port: int = setting(1883, lo=1, hi=65535)
    prefix: str = setting("auricle", doc="first topic levels")
    device_id: str | None = setting(None, doc="topic level for this device; null = host name")
    discovery: bool = setting(True, doc="Home Assistant MQTT discovery")
    discovery_prefix: str = setting("homeassistant")
    keepalive_s: int = setting(30, lo=5, hi=3600, unit="s")
    qos: int = setting(1, lo=0, hi=2)
    retain: bool = setting(True, doc="retain status, states and discovery")
    username: str | None = setting(None)
    password: str | None = dataclasses.field(default=None, repr=False)
    """Overridden by the AURICLE_MQTT_PASSWORD environment variable."""
    tls: TlsConfig = dataclasses.field(default_factory=TlsConfig)
    scores: ScoresConfig = dataclasses.field(default_factory=ScoresConfig)
    level_interval_s: float = setting(60.0, lo=0.1, hi=3600.0, unit="s at least between level messages")
    level_change_db: float = setting(
        3.0, lo=0.0, hi=200.0, unit="dB the level must move from the last one sent to be sent again; 0 = always"
    )
    level_max_interval_s: float = setting(
        900.0, lo=0.1, hi=86400.0, unit="s after which the level is sent even when it has not moved"
    )
    health_interval_s: float = setting(60.0, lo=1.0, hi=86400.0, unit="s between health messages")
    offline_buffer: int = setting(
        1000, lo=0, hi=1_000_000, unit="messages on event and sound kept while the broker is away"
    )
    reconnect_min_s: int = setting(
        1, lo=1, hi=3600, unit="s", doc="first wait before reconnecting; doubles after each failed attempt"
    )
    reconnect_max_s: int = setting(
        4, lo=1, hi=3600, unit="s", doc="longest wait between attempts: the device is back this soon after the broker"
    )
    client_id: str | None = setting(None, doc="MQTT client id; null = auricle-<device_id>")
    groups: tuple[str, ...] = setting((), doc="fleet groups: model updates on <prefix>/group/<group>/model/install")
    protocol: Literal["mqttv5", "mqttv311"] = setting(
        "mqttv5", doc="MQTT version; mqttv311 for old brokers (retained commands published while connected then pass)"
    )
    announce: tuple[str, ...] | None = setting(
        None,
        doc="labels whose Home Assistant entities start enabled; null = the bundle's alert labels, else a short list",
    )
    suggested_area: str | None = setting(None, doc="Home Assistant area for a new device, e.g. Kitchen")
    configuration_url: str | None = setting(None, doc="link on the device page in Home Assistant (http, https)")

    def __post_init__(self) -> None:
        if not _TOPIC_PATH.match(self.prefix):
            raise ValueError(f"prefix {self.prefix!r}: use letters, digits, '_', '-' and '/' between levels")
        if not _TOPIC_PATH.match(self.discovery_prefix):
            raise ValueError(f"discovery_prefix {self.discovery_prefix!r}: use letters, digits, '_', '-', '/'")
        if self.device_id is not None and not _TOPIC_LEVEL.match(self.device_id):
            raise ValueError(f"device_id {self.device_id!r}: use letters, digits, '_' and '-' only")
        if self.device_id == GROUP_LEVEL:
            raise ValueError(f"device_id {GROUP_LEVEL!r} is reserved for fleet groups")
        bad = [g for g in self.groups if not _TOPIC_LEVEL.match(g)]
        if bad:
            raise ValueError(f"groups: {bad[0]!r}: use letters, digits, '_' and '-' only")
        if self.level_interval_s > self.level_max_interval_s:
            raise ValueError("level_interval_s must not exceed level_max_interval_s")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        if self.host is not None and not self.host.strip():
            raise ValueError("host is empty; use null for the console sink")
        if self.configuration_url is not None and not _URL.match(self.configuration_url):
            raise ValueError(f"configuration_url {self.configuration_url!r}: expected an http:// or https:// URL")

    def resolved_device_id(self) -> str:
        """The configured device id, or the host name made safe for a topic level."""
        return self.device_id or sanitise(socket.gethostname()) or "auricle"

    def resolved_password(self) -> str | None:
        """The password to use: the environment's first, then the file's."""
        return os.environ.get(PASSWORD_ENV) or self.password


def sanitise(text: str) -> str:
    """Lower-case text with everything but [a-z0-9_-] replaced by '_' (a safe topic level)."""
    return re.sub(r"[^a-z0-9_-]", "_", text.lower()).strip("_")
