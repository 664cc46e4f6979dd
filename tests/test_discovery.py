"""Home Assistant discovery: documented keys, retained configs, birth republish, removal."""

from __future__ import annotations

import json

import pytest
from support.broker import Mosquitto, Subscriber, publish
from support.ha_schema import problems
from support.mqtt_helpers import LABELS, as_json, config, device_info, started, unique_id, wait_until

from edge.control import handle_control
from edge.discovery import Discovery
from edge.events import EventDetector, EventParams
from edge.payloads import Topics


def discovery(enabled: tuple[str, ...] = LABELS) -> list[tuple[str, str]]:
    info = device_info()
    return Discovery(info=info, device_id="pi", topics=Topics("auricle/pi"), prefix="homeassistant").messages(enabled)


def test_every_config_uses_only_documented_keys() -> None:
    messages = discovery()
    assert len(messages) == len(LABELS) + 2
    for topic, payload in messages:
        component = topic.split("/")[1]
        assert problems(component, json.loads(payload)) == [], topic


def test_the_schema_check_can_fail() -> None:
    assert problems("binary_sensor", {"state_topic": "x", "device_clas": "sound"}) == [
        "binary_sensor: undocumented key 'device_clas'"
    ]
    assert problems("sensor", {"device": {"name": "x"}}) == [
        "sensor: missing state_topic",
        "device: needs identifiers or connections",
        "device info only works with a unique_id",
    ]


def test_binary_sensor_and_sensor_configs() -> None:
    configs = {topic: json.loads(p) if p else None for topic, p in discovery(enabled=("dog", "Church bells"))}
    dog = configs["homeassistant/binary_sensor/pi/dog/config"]
    assert dog["state_topic"] == "auricle/pi/state/dog"
    assert dog["device_class"] == "sound"
    assert dog["availability_topic"] == "auricle/pi/status"
    assert dog["device"]["identifiers"] == ["auricle_pi"]
    assert dog["device"]["sw_version"] == "0.1.0"
    assert configs["homeassistant/binary_sensor/pi/church_bells/config"]["name"] == "Church bells"
    assert configs["homeassistant/binary_sensor/pi/siren/config"] is None  # removal
    level = configs["homeassistant/sensor/pi/level/config"]
    assert level["unit_of_measurement"] == "dBFS" and level["state_topic"] == "auricle/pi/level"
    last = configs["homeassistant/sensor/pi/last_event/config"]
    assert last["state_topic"] == last["json_attributes_topic"] == "auricle/pi/event"
    unique = [c["unique_id"] for c in configs.values() if c]
    assert len(unique) == len(set(unique))


def _configs(sub: Subscriber) -> dict[str, bytes]:
    """The latest payload per config topic."""
    return {m.topic: m.payload for m in sub.messages()}


@pytest.mark.integration
def test_retained_discovery_birth_republish_and_runtime_removal(mosquitto: Mosquitto, subscriber_factory) -> None:
    prefix = f"ha{unique_id()}"
    cfg = config(mosquitto.host, mosquitto.port, discovery_prefix=prefix)
    base = f"auricle/{cfg.device_id}"
    publisher = started(cfg)
    det = EventDetector(LABELS, {}, EventParams())
    publisher.set_control_handler(lambda payload: handle_control(payload, det))
    try:
        late = subscriber_factory(f"{prefix}/#")  # subscribes after the configs went out: retained
        dog_topic = f"{prefix}/binary_sensor/{cfg.device_id}/dog/config"
        first = late.wait_for_topic(dog_topic)
        assert first.retain
        assert problems("binary_sensor", as_json(first.payload)) == []
        wait_until(lambda: len(_configs(late)) == len(LABELS) + 2, 5, "all configs")

        states = subscriber_factory(f"{base}/state/#")
        late.clear()
        states.clear()
        publish(mosquitto.host, mosquitto.port, f"{prefix}/status", "online")  # Home Assistant's birth
        late.wait_for(lambda m: m.topic == dog_topic and not m.retain, what="config republished on birth")
        states.wait_for(lambda m: m.topic == f"{base}/state/siren" and not m.retain, what="state republished")

        late.clear()
        publish(mosquitto.host, mosquitto.port, f"{base}/set", '{"disabled": ["dog"]}')
        removed = late.wait_for(lambda m: m.topic == dog_topic, what="dog removed")
        assert removed.payload == b""
        publisher.publish_state("dog", True)  # a disabled label has no state any more
        assert publisher._state_messages() == [(f"{base}/state/siren", "OFF"), (f"{base}/state/church_bells", "OFF")]
    finally:
        publisher.close()


@pytest.mark.integration
def test_labels_disabled_between_runs_are_removed(mosquitto: Mosquitto, subscriber_factory) -> None:
    prefix = f"ha{unique_id()}"
    cfg = config(mosquitto.host, mosquitto.port, discovery_prefix=prefix)
    siren_topic = f"{prefix}/binary_sensor/{cfg.device_id}/siren/config"
    watcher = subscriber_factory(f"{prefix}/#")
    started(cfg).close()
    watcher.wait_for(lambda m: m.topic == siren_topic and m.payload != b"", what="siren config, first run")
    second = started(cfg, device_info(enabled=("dog",)))
    try:
        watcher.wait_for(lambda m: m.topic == siren_topic and m.payload == b"", what="siren removal")
        fresh = subscriber_factory(f"{prefix}/#")
        wait_until(lambda: bool(fresh.messages(f"{prefix}/binary_sensor/+/dog/config")), 5, "dog config")
        assert fresh.messages(siren_topic) == []  # nothing retained is left for the disabled label
    finally:
        second.close()


@pytest.mark.integration
def test_discovery_can_be_switched_off(mosquitto: Mosquitto, subscriber_factory) -> None:
    prefix = f"ha{unique_id()}"
    sub = subscriber_factory(f"{prefix}/#")
    cfg = config(mosquitto.host, mosquitto.port, discovery_prefix=prefix, discovery=False)
    publisher = started(cfg)
    try:
        publisher.publish_state("dog", True)
        publish(mosquitto.host, mosquitto.port, f"{prefix}/status", "online")
        sub.wait_for_topic(f"{prefix}/status")
        assert [m.topic for m in sub.messages()] == [f"{prefix}/status"]
    finally:
        publisher.close()
