"""``auricle run`` (a subprocess, a real mosquitto): what Home Assistant's switches and numbers change survives a
restart, is published as the retained state at start, gives way to a config edited later, and a bad file never
stops the daemon."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.daemon import Daemon, tone_wav, wait_until, write_config
from support.models import tone_bundle

from kit.broker import Mosquitto, Subscriber, publish

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_bundle(tmp_path_factory.mktemp("model") / "tones.auricle")


class Device:
    """One device (config, state directory, topics) started as often as a test likes."""

    def __init__(self, tmp_path: Path, model: Path, broker: Mosquitto, sub: Subscriber) -> None:
        self.id = f"t{uuid.uuid4().hex[:8]}"
        self.base = f"auricle/{self.id}"
        self.state = tmp_path / "state"
        self.config = tmp_path / "auricle.yaml"
        self.data: dict[str, Any] = {
            "model": {"path": str(model), "state_dir": str(self.state)},
            "audio": {"source": "file", "file": str(tone_wav(tmp_path / "tone.wav")), "loop": True},
            "mqtt": {"device_id": self.id, "host": broker.host, "port": broker.port},
        }
        self.broker, self.sub = broker, sub

    def daemon(self, **events: Any) -> Daemon:
        """The daemon with these ``events`` settings; ``with`` starts it."""
        write_config(self.config, self.data | {"events": events})
        self.sub.clear()
        return Daemon(self.config)

    def send(self, topic: str, payload: str) -> None:
        publish(self.broker.host, self.broker.port, f"{self.base}/{topic}", payload)

    def in_force(self) -> dict[str, Any]:
        """The detector's own values: a ``set`` it refuses answers with them (and proves the daemon subscribed)."""

        def answered() -> bool:
            self.send("set", '{"id": "ping"}')
            return bool(self._pings())

        wait_until(answered, 30, "the daemon answers on set", poll_s=0.5)
        return self._pings()[-1]

    def _pings(self) -> list[dict[str, Any]]:
        results = [json.loads(m.payload) for m in self.sub.messages(f"{self.base}/set/result")]
        return [r for r in results if r["id"] == "ping"]

    def published(self, topic: str) -> bytes:
        """What this run published on a retained control topic (not what the broker kept from the last run)."""
        return self.sub.wait_for(lambda m: m.topic == f"{self.base}/{topic}" and not m.retain, 10, topic).payload

    def saved(self) -> dict[str, Any]:
        labels: dict[str, Any] = json.loads((self.state / "controls.json").read_text())["labels"]
        return labels


@pytest.fixture
def device(tmp_path: Path, model: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]) -> Device:
    return Device(tmp_path, model, mosquitto, subscriber_factory("#"))


def test_changes_from_home_assistant_survive_a_restart(device: Device) -> None:
    with device.daemon() as daemon:
        assert device.in_force()["enabled"] == ["quiet", "tone_1000", "tone_3000"]
        device.send("listen/tone_3000/set", "OFF")  # Home Assistant's switch
        device.send("threshold/tone_1000/set", "0.7")  # and its number
        device.sub.wait_for(lambda m: m.topic.endswith("/threshold/tone_1000") and m.payload == b"0.7", 10, "0.7")
        device.sub.wait_for(lambda m: m.topic.endswith("/listen/tone_3000") and m.payload == b"OFF", 10, "OFF")
        assert daemon.terminate() == 0
    assert device.saved() == {
        "tone_1000": {"threshold": 0.7, "config_threshold": None},
        "tone_3000": {"listen": False, "config_listen": None},
    }

    with device.daemon() as daemon:  # a power cut, an update: the same device starts again
        assert device.published("listen/tone_3000") == b"OFF"
        assert device.published("threshold/tone_1000") == b"0.7"
        assert device.published("listen/tone_1000") == b"ON"
        in_force = device.in_force()
        assert in_force["enabled"] == ["quiet", "tone_1000"]
        assert in_force["thresholds"]["tone_1000"] == 0.7
        assert "controls: restored what was set at runtime" in daemon.stderr
        assert daemon.terminate() == 0

    with device.daemon(thresholds={"tone_1000": 0.4}) as daemon:  # the config, edited after the change, wins
        assert device.published("threshold/tone_1000") == b"0.4"
        assert device.published("listen/tone_3000") == b"OFF"  # the config says nothing new about it
        assert device.in_force()["thresholds"]["tone_1000"] == 0.4
        assert daemon.terminate() == 0
    assert device.saved() == {"tone_3000": {"listen": False, "config_listen": None}}


def test_a_corrupt_file_never_stops_the_daemon(device: Device) -> None:
    device.state.mkdir()
    (device.state / "controls.json").write_bytes(b'{"format": 1, "labels": {"tone_1000": {"thres')  # a torn write
    with device.daemon() as daemon:
        assert device.published("listen/tone_3000") == b"ON"
        assert device.in_force()["thresholds"]["tone_1000"] == 0.5  # the bundle's
        assert daemon.terminate() == 0
    lines = [line for line in daemon.stderr.splitlines() if "controls.json" in line]
    assert len(lines) == 1 and "starting from the config (the file is moved to controls.json.bad)" in lines[0]
    assert (device.state / "controls.json.bad").read_bytes().startswith(b'{"format": 1')
