"""A daemon that cannot start says why on the broker, not only on stderr: with a readable ``mqtt`` section,
``auricle run`` leaves ``not started: <error>`` retained on ``status/reason`` (and ``online`` on ``status``,
so that Home Assistant shows its Problem sensor), then exits 2 as before.  Real mosquitto, real daemon.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.daemon import Daemon, tone_wav, write_config
from support.models import tone_bundle

from kit.broker import Message, Mosquitto, Subscriber, free_port

pytestmark = pytest.mark.integration
CONFIG_ERROR = 2


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reason")
    return {"model": tone_bundle(root / "tones.auricle"), "clip": tone_wav(root / "tone.wav")}


def _config(tmp_path: Path, files: dict[str, Path], mqtt: dict[str, Any], **sections: Any) -> tuple[Path, str]:
    device = f"t{uuid.uuid4().hex[:8]}"
    data = {
        "model": {"path": str(files["model"])},
        "audio": {"source": "file", "file": str(files["clip"]), "loop": True},
        "mqtt": {"device_id": device} | mqtt,
    }
    return write_config(tmp_path / "auricle.yaml", data | sections), device


def _run(config: Path, timeout_s: float = 30.0) -> tuple[int, str, float]:
    """``auricle run --config FILE``: exit status, stderr, seconds it took."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return done.returncode, done.stderr, time.monotonic() - started


def _retained(sub: Subscriber, topic: str) -> Message:
    return sub.wait_for(lambda m: m.topic == topic and m.retain, 5, f"retained {topic}")


def test_a_config_error_is_retained_on_status_reason(
    tmp_path: Path, files: dict[str, Path], mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    config, device = _config(tmp_path, files, {"host": mosquitto.host, "port": mosquitto.port}, audio={"gate_dbfs": 3})
    status, stderr, _ = _run(config)
    assert status == CONFIG_ERROR
    error = f"{config}: audio.gate_dbfs: expected a number -200..0"
    assert stderr.count("\n") == 1 and stderr.startswith(f"auricle: {error}"), stderr
    late = subscriber_factory(f"auricle/{device}/#")  # after the exit: the broker keeps it
    reason = json.loads(_retained(late, f"auricle/{device}/status/reason").payload)
    assert reason["reason"] == "not started: " + stderr.strip().removeprefix("auricle: ")
    assert reason["schema"] == 2
    assert _retained(late, f"auricle/{device}/status").payload == b"online", "Home Assistant shows the Problem sensor"
    # announced too, so a Home Assistant that never saw the device run shows it: availability on status, ON
    announced = subscriber_factory(f"homeassistant/binary_sensor/{device}/#")
    problem = json.loads(_retained(announced, f"homeassistant/binary_sensor/{device}/problem/config").payload)
    assert problem["state_topic"] == problem["json_attributes_topic"] == f"auricle/{device}/status/reason"
    assert problem["availability_topic"] == f"auricle/{device}/status" and problem["device_class"] == "problem"
    assert problem["device"]["identifiers"] == [f"auricle_{device}"]


def test_a_bad_bundle_is_retained_on_status_reason(
    tmp_path: Path, files: dict[str, Path], mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    broken = tmp_path / "broken.auricle"
    broken.write_bytes(b"not a bundle")
    mqtt = {"host": mosquitto.host, "port": mosquitto.port}
    config, device = _config(tmp_path, files, mqtt, model={"path": str(broken)})
    status, stderr, _ = _run(config)
    assert status == CONFIG_ERROR and stderr.count("\n") == 1 and str(broken) in stderr, stderr
    late = subscriber_factory(f"auricle/{device}/#")
    reason = json.loads(_retained(late, f"auricle/{device}/status/reason").payload)["reason"]
    assert reason == "not started: " + stderr.strip().removeprefix("auricle: ")


def test_a_broker_out_of_reach_does_not_hold_the_exit(tmp_path: Path, files: dict[str, Path]) -> None:
    config, _ = _config(tmp_path, files, {"host": "127.0.0.1", "port": free_port()}, audio={"gate_dbfs": 3})
    status, stderr, took_s = _run(config)
    assert status == CONFIG_ERROR and stderr.count("\n") == 1, stderr
    assert took_s < 15, f"{took_s:.1f} s"


def test_an_unreadable_mqtt_section_publishes_nothing(
    tmp_path: Path, files: dict[str, Path], mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    mqtt = {"host": mosquitto.host, "port": mosquitto.port, "qos": 7}
    config, device = _config(tmp_path, files, mqtt, audio={"gate_dbfs": 3})
    status, stderr, _ = _run(config)
    assert status == CONFIG_ERROR and stderr.count("\n") == 1, stderr
    late = subscriber_factory(f"auricle/{device}/#")
    time.sleep(1.0)  # retained messages arrive right after the subscription: none may come
    assert late.messages() == []


def test_a_running_daemon_says_its_own_state_again(
    tmp_path: Path, files: dict[str, Path], mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    """Someone tries a broken copy of the config by hand while the service runs on the same topics:
    the service is back, with its own reason, within a few seconds."""
    mqtt = {"host": mosquitto.host, "port": mosquitto.port}
    good, device = _config(tmp_path, files, mqtt)
    (tmp_path / "broken").mkdir()
    broken, _ = _config(tmp_path / "broken", files, mqtt | {"device_id": device}, audio={"gate_dbfs": 3})
    sub = subscriber_factory(f"auricle/{device}/status/reason")
    with Daemon(good) as daemon:
        sub.wait_for(lambda m: json.loads(m.payload)["reason"] is None, 30, "the running daemon's reason")
        assert _run(broken)[0] == CONFIG_ERROR
        said = sub.wait_for(lambda m: "not started" in str(json.loads(m.payload)["reason"]), 5, "not started")
        sub.wait_for(
            lambda m: m.monotonic_s > said.monotonic_s and json.loads(m.payload)["reason"] is None,
            10,
            "the running daemon's own reason again",
        )
        assert daemon.running
        assert daemon.terminate() == 0
