"""Broker trouble is said: the daemon's log names host, port and cause (refused, unreachable, DNS, not
authorised, TLS) once per backoff step, the terminal shows ``not connected: ...``, a lost connection has
its real cause, and the device is back within 5 s of the broker's return.

Every case runs the real daemon (``auricle run``) as a subprocess against a real mosquitto, or against
nothing; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemon import Daemon, run_on_terminal, tone_wav, wait_until, write_config
from support.models import tone_bundle

from edge.publish.mqtt import MqttPublisher
from edge.publish.mqttconfig import MqttConfig
from edge.publish.mqttoneshot import probe
from edge.publish.mqtttrouble import ConnectionLog
from edge.publish.payloads import DeviceInfo
from edge.schema import build
from kit.broker import Mosquitto, Subscriber, find_binary, free_port

pytestmark = pytest.mark.integration
SAID_WITHIN_S = 10.0
"""The cause must be in the log this soon after the daemon starts."""
UNROUTABLE = "198.51.100.7"
"""TEST-NET-2: no route to it inside an empty network namespace."""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trouble")
    return {"model": tone_bundle(root / "tones.auricle"), "clip": tone_wav(root / "tone.wav")}


def _config(tmp_path: Path, files: dict[str, Path], **mqtt: Any) -> Path:
    data = {
        "model": {"path": str(files["model"])},
        "audio": {"source": "file", "file": str(files["clip"]), "loop": True},
        "mqtt": {"device_id": f"t{uuid.uuid4().hex[:8]}", "health_interval_s": 1} | mqtt,
    }
    return write_config(tmp_path / "auricle.yaml", data)


def _said(daemon: Daemon, pattern: str, timeout_s: float = SAID_WITHIN_S) -> str:
    """The first log line matching ``pattern``, waited for at most ``timeout_s`` from now."""
    found: list[str] = []

    def seen() -> bool:
        found[:] = [line for line in daemon.stderr.splitlines() if re.search(pattern, line)]
        return bool(found) or not daemon.running

    try:
        wait_until(seen, timeout_s, f"a log line matching {pattern!r}")
    except AssertionError as error:  # say what the daemon did say, and where each of its threads is
        raise AssertionError(f"{error}; the daemon's log ends:\n{daemon.dump_stacks()[-8000:]}") from None
    assert found, f"the daemon exited without {pattern!r}:\n{daemon.stderr[-3000:]}"
    return found[0]


def _cannot_connect(host: str, port: int, cause: str) -> str:
    return rf"WARNING .*MQTT: cannot connect to {re.escape(host)}:{port}: {cause}.*; retrying in \d+ s$"


# --- what each failure says ------------------------------------------------------------------


def test_a_refused_port_is_said_once_per_backoff_step(tmp_path: Path, files: dict[str, Path]) -> None:
    port = free_port()
    config = _config(tmp_path, files, host="127.0.0.1", port=port, reconnect_min_s=1, reconnect_max_s=2)
    write_config(config, {**_read(config), "log_level": "DEBUG"})  # the quiet attempts are in the debug log
    with Daemon(config) as daemon:
        _said(daemon, _cannot_connect("127.0.0.1", port, "connection refused"))
        attempts = r"MQTT: cannot connect to 127\.0\.0\.1"
        wait_until(lambda: len(re.findall(attempts, daemon.stderr)) >= 5, 15, "five attempts")
        warned = [line for line in daemon.stderr.splitlines() if re.search(attempts, line) and "WARNING" in line]
        # paho waits 1 + 2 s after the very first failure, then 2 s each time: two steps, two lines
        assert [line.rsplit("; ", 1)[1] for line in warned] == ["retrying in 3 s", "retrying in 2 s"], warned
        assert daemon.terminate() == 0
    assert "Traceback" not in daemon.stderr


def test_dns_failure_is_said(tmp_path: Path, files: dict[str, Path]) -> None:
    config = _config(tmp_path, files, host="broker.invalid", port=1883)
    with Daemon(config) as daemon:
        line = _said(daemon, _cannot_connect("broker.invalid", 1883, "DNS: "))
        assert "does not resolve" in line


def test_bad_credentials_are_said(tmp_path: Path, files: dict[str, Path]) -> None:
    with _broker_with_passwords(tmp_path, {"auricle": "right"}) as broker:
        mqtt = {"host": broker.host, "port": broker.port, "username": "auricle"}
        good = build(MqttConfig, mqtt | {"password": "right"}, "test")
        assert probe(good) is None, "the broker takes the right password: the refusal below is about the login"
        config = _config(tmp_path, files, **mqtt)
        with Daemon(config, env=os.environ | {"AURICLE_MQTT_PASSWORD": "wrong"}) as daemon:
            line = _said(daemon, _cannot_connect(broker.host, broker.port, "not authorised"))
            assert "AURICLE_MQTT_PASSWORD" in line and "wrong" not in line


def test_tls_to_a_plain_listener_is_said(tmp_path: Path, files: dict[str, Path], mosquitto: Mosquitto) -> None:
    mosquitto.start()
    config = _config(tmp_path, files, host=mosquitto.host, port=mosquitto.port, tls={"enabled": True})
    with Daemon(config) as daemon:
        line = _said(daemon, _cannot_connect(mosquitto.host, mosquitto.port, "TLS handshake failed"))
        assert "TLS listener" in line


def test_an_unreachable_network_is_said(tmp_path: Path, files: dict[str, Path]) -> None:
    config = _config(tmp_path, files, host=UNROUTABLE, port=1883)
    with _empty_netns() as netns, _NetnsDaemon(config, netns) as daemon:
        _said(daemon, _cannot_connect(UNROUTABLE, 1883, "network is unreachable"))


def test_a_terminal_shows_not_connected(tmp_path: Path, files: dict[str, Path]) -> None:
    port = free_port()
    config = _config(tmp_path, files, host="127.0.0.1", port=port)
    write_config(config, {**_read(config), "audio": {"source": "file", "file": str(files["clip"])}})  # 3 s, then exit
    lines = run_on_terminal("--config", str(config)).splitlines()
    shown = [line for line in lines if re.match(r"^\d\d:\d\d:\d\d  not connected: ", line)]
    assert shown and f"not connected: 127.0.0.1:{port}: connection refused" in shown[0], lines


def test_the_console_shows_the_connection_come_and_go(mosquitto: Mosquitto) -> None:
    port = free_port()
    cfg = build(MqttConfig, {"host": "127.0.0.1", "port": port, "device_id": "t" + uuid.uuid4().hex[:8]}, "test")
    console = io.StringIO()
    publisher = MqttPublisher(cfg, console=console)
    publisher.start(DeviceInfo(model_name="m", model_version="1", labels=("dog",), sw_version="0"))
    try:
        wait_until(lambda: "not connected: " in console.getvalue(), 5, "not connected on the console")
        with Mosquitto(port=port):
            wait_until(lambda: publisher.connected, 10, "connected")
            wait_until(lambda: "connected to 127.0.0.1" in console.getvalue(), 5, "connected on the console")
        wait_until(lambda: "connection lost: the broker closed the connection" in console.getvalue(), 5, "lost")
    finally:
        publisher.close()
    lines = [line[10:] for line in console.getvalue().splitlines()]
    assert lines[0].startswith(f"not connected: 127.0.0.1:{port}: connection refused"), lines
    assert lines[1] == f"connected to 127.0.0.1:{port} as auricle/{cfg.device_id}", lines
    assert lines[2] == f"not connected: 127.0.0.1:{port}: connection lost: the broker closed the connection", lines


def test_one_line_per_step_then_a_reminder(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = ConnectionLog("h:1", 1, 4, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "edge.publish.mqtttrouble")
    for _ in range(200):  # 200 attempts, 4 s apart once at the longest wait: 13 minutes
        log.failed("connection refused", opening=True)
        now[0] += 4.0
    log.failed("network is unreachable")  # a new cause is said at once
    log.connected()
    said = [r.getMessage() for r in caplog.records]
    assert said[:2] == [
        "MQTT: cannot connect to h:1: connection refused; retrying in 3 s",  # paho: 1 + 2 s after the first
        "MQTT: cannot connect to h:1: connection refused; retrying in 4 s",
    ]
    assert len(said) == 4 and said[2].startswith("MQTT: still cannot connect to h:1: connection refused (")
    assert said[3] == "MQTT: cannot connect to h:1: network is unreachable; retrying in 4 s"


# --- a broker restart --------------------------------------------------------------------------


def test_the_device_is_back_within_5_s_of_the_broker(tmp_path: Path, files: dict[str, Path]) -> None:
    """The default backoff (``reconnect_max_s``), measured at its worst: the broker returns just after
    an attempt failed at the longest wait."""
    with Mosquitto() as broker:
        config = _config(tmp_path, files, host=broker.host, port=broker.port)  # the default reconnect keys
        device = _read(config)["mqtt"]["device_id"]
        sub = Subscriber(broker.host, broker.port, f"auricle/{device}/status")
        try:
            with Daemon(config) as daemon:
                sub.wait_for(lambda m: m.payload == b"online", 30, "online")
                sub.close()
                broker.stop()
                lost = _said(daemon, r"MQTT: connection to .* lost: ")
                # the end of the stream, or the socket's error when a publish ran into it first
                broke = "the connection broke: (broken pipe|connection reset by peer)"
                assert re.search(rf"lost: (the broker closed the connection|{broke}); reconnecting in 1 s$", lost), lost
                max_s = MqttConfig().reconnect_max_s
                _said(daemon, rf"MQTT: cannot connect to .*; retrying in {max_s} s$", 15)
                broker.start()
                back = time.monotonic()
                sub = Subscriber(broker.host, broker.port, f"auricle/{device}/status")
                online = sub.wait_for(lambda m: m.payload == b"online", 10, "online again")
                delay = online.monotonic_s - back
                logging.getLogger(__name__).info("online again %.2f s after the broker's return", delay)
                assert delay < 5.0, f"online again only {delay:.2f} s after the broker returned"
                _said(daemon, r"MQTT: connected to .* after \d+ failed attempts")
                assert daemon.terminate() == 0
        finally:
            sub.close()
    assert "Unspecified error" not in daemon.stderr and "Traceback" not in daemon.stderr


# --- helpers ---------------------------------------------------------------------------------


def _read(config: Path) -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load(config.read_text())
    return data


def _broker_with_passwords(tmp_path: Path, users: dict[str, str]) -> Mosquitto:
    """A mosquitto that lets in only ``users`` (a password file made by mosquitto_passwd)."""
    passwords = tmp_path / "passwords"
    passwords.touch(mode=0o600)
    for user, password in users.items():
        subprocess.run([find_binary("mosquitto_passwd"), "-b", str(passwords), user, password], check=True, timeout=10)
    broker = Mosquitto()
    broker.config_path.write_text(
        # as root mosquitto drops to user 'mosquitto', which cannot read pytest's 0700 tmp dirs
        f"user {getpass.getuser()}\nlistener {broker.port} {broker.host}\nallow_anonymous false\n"
        f"password_file {passwords}\npersistence false\n"
    )
    return broker


@contextlib.contextmanager
def _empty_netns() -> Iterator[str]:
    """A network namespace with only loopback (paho needs it for its own socket pair) and no route out:
    a connect to any other address fails at once with ENETUNREACH."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("a network namespace needs root and iproute2 (ip)")
    name = f"auricle-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {done.stderr.strip()}")
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], timeout=10, check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10, check=False)


class _NetnsDaemon(Daemon):
    """The daemon started inside a network namespace."""

    def __init__(self, config: Path, netns: str) -> None:
        super().__init__(config)
        self._netns = netns

    def start(self) -> _NetnsDaemon:
        auricle = [sys.executable, "-m", "edge", "run", "--config", str(self.config)]
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self._netns, *auricle], stdout=out, stderr=err, env=self._env
            )
        return self
