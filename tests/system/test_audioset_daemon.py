"""``auricle run`` (a subprocess, a real mosquitto) with a two-output model: our labels and the optional
AudioSet labels enabled by default are published; one off by default never is, until a user switches it
on from Home Assistant, and then the veto does not silence it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support.daemon import Daemon, write_config
from support.models import audioset_bundle

from edge.audio.demo import write_wav
from kit.broker import Message, Mosquitto, Subscriber, publish

pytestmark = pytest.mark.integration
RATE = 16000


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return audioset_bundle(tmp_path_factory.mktemp("two") / "two.auricle")


def _clip(path: Path) -> Path:
    """About 5 s: a 1 kHz tone (tone_1000), 500 Hz (AudioSet Speech), 2 kHz (AudioSet smoke alarm)."""
    t = np.arange(round(5.4 * RATE)) / RATE
    audio = 0.001 * np.random.default_rng(1).standard_normal(len(t))
    for start, hz in ((0.6, 1000.0), (2.2, 500.0), (3.8, 2000.0)):
        on = (t >= start) & (t < start + 1.0)
        audio = np.where(on, 0.3 * np.sin(2 * np.pi * hz * t), audio)
    write_wav(path, audio)
    return path


def _event(label: str) -> Callable[[Message], bool]:
    def match(m: Message) -> bool:
        if not m.topic.endswith("/event"):
            return False
        data = json.loads(m.payload)
        return bool(data["label"] == label and data["kind"] == "start")

    return match


def test_optional_labels_are_published_only_when_enabled(
    tmp_path: Path, model: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    device = f"t{uuid.uuid4().hex[:8]}"
    config = write_config(
        tmp_path / "auricle.yaml",
        {"model": {"path": str(model)}, "events": {"hold_s": 0.2},
         "audio": {"source": "file", "file": str(_clip(tmp_path / "clip.wav")), "realtime": True, "loop": True},
         "mqtt": {"device_id": device, "host": mosquitto.host, "port": mosquitto.port}},
    )  # fmt: skip
    sub = subscriber_factory("#")
    base = f"auricle/{device}"
    with Daemon(config):
        sub.wait_for(lambda m: m.topic == f"{base}/status" and m.payload == b"online", 30, "online")
        for label, shown in (("tone_1000", True), ("smoke_alarm", True), ("speech", False), ("doorbell", False)):
            entity = json.loads(sub.wait_for_topic(f"homeassistant/binary_sensor/{device}/{label}/config").payload)
            assert entity["enabled_by_default"] is shown, label
        assert sub.wait_for_topic(f"{base}/listen/speech").payload == b"OFF"
        assert sub.wait_for_topic(f"{base}/listen/smoke_alarm").payload == b"ON"
        sub.wait_for(_event("tone_1000"), 15, "tone_1000 start")
        sub.wait_for(_event("smoke_alarm"), 15, "smoke_alarm start")  # after the 500 Hz 'speech' part
        labels = {json.loads(m.payload)["label"] for m in sub.messages(f"{base}/event")}
        assert labels == {"tone_1000", "smoke_alarm"}, "a label off by default raised an event"
        assert b"ON" not in [m.payload for m in sub.messages(f"{base}/state/speech")]
        publish(mosquitto.host, mosquitto.port, f"{base}/listen/speech/set", "ON")  # Home Assistant's switch
        sub.wait_for(lambda m: m.topic == f"{base}/listen/speech" and m.payload == b"ON", 10, "listen ON")
        sub.wait_for(_event("speech"), 15, "speech start once switched on")
        sub.wait_for(lambda m: m.topic == f"{base}/state/speech" and m.payload == b"ON", 5, "speech state ON")
    assert not any(json.loads(m.payload)["label"] == "doorbell" for m in sub.messages(f"{base}/event"))
