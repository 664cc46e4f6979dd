"""Home Assistant discovery: Home Assistant's schema, the entities a device creates, retained configs, birth."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from support.ha_schema import problems
from support.mqtt_helpers import LABELS, as_json, config, device_info, started, unique_id, wait_until
from support.shared import ROOT

from edge.daemon.startup import default_model_path
from edge.detect.events import EventDetector, EventParams
from edge.detect.listening import DEFAULT_ANNOUNCE, announced
from edge.detect.set_command import handle_control
from edge.model.audioset import AudiosetHead, AudiosetLabel
from edge.model.bundle import read_bundle
from edge.model.outputs import OutputSpec
from edge.publish.discovery import SENSORS, Discovery, hardware_model
from edge.publish.discovery import device_info as device_info_of
from edge.publish.payloads import DeviceInfo, Topics
from kit.broker import Mosquitto, Subscriber, publish

ESC50_LIKE = ("airplane", "cow", "crying_baby", "dog", "glass_breaking", "siren", "train")


def discovery(**kwargs: Any) -> dict[str, dict[str, Any] | None]:
    """Config per discovery topic (None for a removal)."""
    info = kwargs.pop("info", None) or device_info(announce=("dog",), thresholds={"dog": 0.5, "siren": 0.3})
    d = Discovery(info=info, device_id="pi", topics=Topics("auricle/pi"), prefix="homeassistant", **kwargs)
    return {topic: json.loads(p) if p else None for topic, p in d.messages()}


def test_every_config_follows_home_assistants_schema() -> None:
    info = device_info(announce=("dog",), feedback=True)
    where = {"suggested_area": "Kitchen", "configuration_url": "http://pi.local:8080", "hw_version": "Pi 5"}
    configs = discovery(info=info, **where)
    components = [topic.split("/")[1] for topic, c in configs.items() if c is not None]
    assert sorted(set(components)) == ["binary_sensor", "button", "event", "number", "sensor", "switch"]
    assert len(components) == 2 + len(SENSORS) + 1 + 3 * len(LABELS)  # event, button, sensors, problem, per label
    for topic, payload in configs.items():
        if payload is not None:
            assert problems(topic.split("/")[1], payload) == [], topic
    unique = [c["unique_id"] for c in configs.values() if c]
    assert len(unique) == len(set(unique))


def test_the_schema_check_can_fail() -> None:
    assert problems("binary_sensor", {"state_topic": "x", "device_clas": "sound"}) == [
        "binary_sensor: undocumented key 'device_clas'"
    ]
    assert problems("sensor", {"device": {"name": "x"}}) == [
        "sensor: missing state_topic",
        "device: needs identifiers or connections",
        "device info only works with a unique_id",
    ]
    assert problems("number", {"command_topic": "c", "min": 1, "max": 0, "step": 0.0001, "mode": "knob"}) == [
        "number: max must be > min",
        "number: step must be at least 0.001",
        "number: unknown mode 'knob'",
    ]
    assert problems("switch", {"state_topic": "s", "payload_on": True}) == [
        "switch: payload_on should be str, got bool",
        "switch: missing command_topic",
    ]
    assert problems("event", {"state_topic": "e", "event_types": [], "device_class": "sound"}) == [
        "event: unknown device_class 'sound'",
        "event: event_types must be a non-empty list of strings",
    ]
    assert problems("sensor", {"state_topic": "s", "device_class": "duration", "unit_of_measurement": "sec"}) == [
        "sensor: unit 'sec' is not one of device_class 'duration'"
    ]
    bad_availability = {"state_topic": "s", "availability": [{"payload_on": "x"}], "entity_category": "extra"}
    assert problems("binary_sensor", bad_availability) == [
        "availability[0]: undocumented key 'payload_on'",
        "availability[0]: missing topic",
        "binary_sensor: unknown entity_category 'extra'",
    ]


def test_every_label_has_a_sound_sensor_a_switch_and_a_number() -> None:
    configs = discovery()
    dog = configs["homeassistant/binary_sensor/pi/dog/config"]
    assert dog is not None and dog["state_topic"] == "auricle/pi/state/dog" and dog["device_class"] == "sound"
    assert dog["availability_mode"] == "all"
    assert [a["topic"] for a in dog["availability"]] == ["auricle/pi/status", "auricle/pi/listen/dog"]
    assert (
        dog["availability"][1] | {"payload_available": "ON", "payload_not_available": "OFF"} == dog["availability"][1]
    )
    assert configs["homeassistant/binary_sensor/pi/church_bells/config"]["name"] == "Church bells"
    listen = configs["homeassistant/switch/pi/church_bells/config"]
    assert listen["state_topic"] == "auricle/pi/listen/church_bells"
    assert listen["command_topic"] == "auricle/pi/listen/church_bells/set"
    assert listen["name"] == "Listen for church bells" and listen["entity_category"] == "config"
    threshold = configs["homeassistant/number/pi/siren/config"]
    assert threshold["command_topic"] == "auricle/pi/threshold/siren/set"
    assert (threshold["min"], threshold["max"], threshold["step"]) == (0.0, 1.0, 0.01)
    # only the announced label's entities start enabled; the others wait in Home Assistant's UI
    for component in ("binary_sensor", "switch", "number"):
        assert configs[f"homeassistant/{component}/pi/dog/config"]["enabled_by_default"] is True
        assert configs[f"homeassistant/{component}/pi/siren/config"]["enabled_by_default"] is False


def test_the_event_entity_and_the_diagnostics() -> None:
    configs = discovery()
    sound = configs["homeassistant/event/pi/sound/config"]
    assert sound["state_topic"] == "auricle/pi/sound" and sound["event_types"] == list(LABELS)
    assert "enabled_by_default" not in sound and "entity_category" not in sound
    diagnostics = {t.split("/")[3]: c for t, c in configs.items() if c and c.get("entity_category") == "diagnostic"}
    assert sorted(diagnostics) == sorted([*(s.object_id for s in SENSORS), "problem"])
    assert diagnostics["level"]["state_topic"] == "auricle/pi/level"
    assert diagnostics["memory"] | {"device_class": "data_size", "unit_of_measurement": "MB"} == diagnostics["memory"]
    assert diagnostics["latency"]["unit_of_measurement"] == "ms"
    assert diagnostics["uptime"]["device_class"] == "duration"
    model = diagnostics["model"]
    assert model["state_topic"] == model["json_attributes_topic"] == "auricle/pi/model/state"
    problem = diagnostics["problem"]
    assert problem["device_class"] == "problem" and problem["state_topic"] == "auricle/pi/status/reason"
    assert "value_json.reason" in problem["value_template"]
    assert configs["homeassistant/sensor/pi/last_event/config"] is None  # the old "last sound" sensor goes


def test_that_wasnt_it_is_there_while_the_model_can_take_a_verdict() -> None:
    topic = "homeassistant/button/pi/that_wasnt_it/config"
    button = discovery(info=device_info(feedback=True))[topic]
    assert button is not None and problems("button", button) == []
    assert button["name"] == "That wasn't it" and button["command_topic"] == "auricle/pi/feedback"
    assert json.loads(button["payload_press"]) == {"id": "latest", "verdict": "wrong"}
    assert "retain" not in button and "entity_category" not in button  # a control, never a retained command
    assert button["availability_topic"] == "auricle/pi/status"
    assert discovery(info=device_info(feedback=False))[topic] is None  # no embedding: removed like a label's
    shipped = read_bundle(default_model_path()).manifest
    assert device_info_of(shipped, "0.1.0").feedback is True  # it has an embedding output
    assert device_info_of(dataclasses.replace(shipped, embedding=None), "0.1.0").feedback is False


CARDS = {None: "Sensors", "config": "Configuration", "diagnostic": "Diagnostic"}
"""The cards of Home Assistant's device page, by entity category (controls: an event, sensors)."""


def test_a_new_device_shows_what_a_person_wants() -> None:
    shipped = read_bundle(default_model_path()).manifest
    configs = [c for c in discovery(info=device_info_of(shipped, "0.1.0")).values() if c is not None]
    shown = [c for c in configs if c.get("enabled_by_default", True)]
    seven = ("Crying baby", "Glass breaking", "Siren", "Dog", "Door wood knock", "Clock alarm", "Smoke alarm")
    assert sorted(c["name"] for c in shown) == sorted(
        ["Sound", "That wasn't it", *seven, *(f"Listen for {x.lower()}" for x in seven),
         *(f"{x} threshold" for x in seven), "Sound level", "Model", "Problem"]
    )  # fmt: skip
    assert len(shown) == 26
    hidden = [c for c in configs if not c.get("enabled_by_default", True)]
    diagnostics = sorted(c["name"] for c in hidden if c.get("entity_category") == "diagnostic")
    assert diagnostics == ["CPU", "Dropped audio blocks", "Inference latency", "Memory", "Real-time factor", "Uptime"]
    per_card = {card: sum(CARDS[c.get("entity_category")] == card for c in hidden) for card in CARDS.values()}
    assert per_card == {"Sensors": 49, "Configuration": 98, "Diagnostic": 6}
    text = " ".join((ROOT / "docs" / "home-assistant.md").read_text().split())
    assert "26 entities" in text
    for card, n in per_card.items():
        assert f"*+{n} entities not shown* under *{card}*" in text, card


def test_the_docs_name_the_shipped_model() -> None:
    shipped = read_bundle(default_model_path()).manifest
    on_the_device_page = re.findall(r"esc50 (\d+\.\d+\.\d+)", (ROOT / "docs" / "home-assistant.md").read_text())
    in_the_example = re.findall(r'"model": "esc50 (\S+)"', (ROOT / "docs" / "mqtt.md").read_text())
    assert on_the_device_page and in_the_example
    assert set(on_the_device_page + in_the_example) == {shipped.version}


def test_device_block() -> None:
    plain = discovery()["homeassistant/event/pi/sound/config"]["device"]
    assert plain == {
        "identifiers": ["auricle_pi"],
        "name": "auricle pi",
        "manufacturer": "auricle",
        "model": "tone-test 1.2.3",
        "sw_version": "0.1.0",
    }
    extra = {"suggested_area": "Kitchen", "configuration_url": "https://pi.local/", "hw_version": "Raspberry Pi 5"}
    assert discovery(**extra)["homeassistant/event/pi/sound/config"]["device"] == plain | extra


def test_the_documented_example_is_what_the_code_sends() -> None:
    text = (ROOT / "docs" / "mqtt.md").read_text()
    found = re.search(r"Example binary sensor config.*?```json\n(.*?)```", text, flags=re.S)
    assert found is not None
    version = read_bundle(default_model_path()).manifest.version
    info = DeviceInfo(model_name="esc50", model_version=version, labels=("cat", "dog"), sw_version="0.1.0")
    d = Discovery(
        info=info,
        device_id="kitchen",
        topics=Topics("auricle/kitchen"),
        prefix="homeassistant",
        suggested_area="Kitchen",
        hw_version="Raspberry Pi 4 Model B Rev 1.4",
    )
    sent = dict(d.messages())["homeassistant/binary_sensor/kitchen/dog/config"]
    assert json.loads(found.group(1)) == json.loads(sent)


def test_hardware_model_from_the_device_tree(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert hardware_model(model) == "Raspberry Pi 4 Model B Rev 1.4"
    assert hardware_model(tmp_path / "missing") is None


def test_which_labels_are_announced() -> None:
    assert announced(ESC50_LIKE, (), None) == ("crying_baby", "dog", "glass_breaking", "siren")
    assert set(announced(ESC50_LIKE, (), None)) <= set(DEFAULT_ANNOUNCE)
    assert announced(ESC50_LIKE, ("cow",), None) == ("cow",)  # the bundle's alert labels
    assert announced(ESC50_LIKE, ("cow",), ("train", "nope")) == ("train",)  # the config wins; unknown ones drop
    assert announced(ESC50_LIKE, (), ()) == ()
    assert announced(("kettle", "doorbell"), (), None) == ("kettle", "doorbell")  # a model of your own: all


def test_optional_audioset_labels_are_announced_only_when_enabled_by_default() -> None:
    shipped = read_bundle(default_model_path()).manifest
    head = AudiosetHead(
        output=OutputSpec(dtype="int8", scale=1 / 256, zero_point=-128),
        labels=(
            AudiosetLabel(name="smoke_alarm", classes=(393, 394), threshold=0.5, enabled_by_default=True),
            AudiosetLabel(name="speech", classes=(0,), threshold=0.8),
        ),
    )
    manifest = dataclasses.replace(shipped, audioset=head)
    info = device_info_of(manifest, "0.1.0")
    assert info.labels == (*shipped.event_labels, "smoke_alarm", "speech")
    assert info.announce == (*announced(shipped.event_labels, (), None), "smoke_alarm")
    assert device_info_of(manifest, "0.1.0", configured=("speech", "dog")).announce == ("dog", "speech")
    configs = discovery(info=info)
    for component in ("binary_sensor", "switch", "number"):
        smoke, speech = (configs[f"homeassistant/{component}/pi/{x}/config"] for x in ("smoke_alarm", "speech"))
        assert smoke is not None and smoke["enabled_by_default"] is True
        assert speech is not None and speech["enabled_by_default"] is False
        assert problems(component, speech) == []


def _configs(sub: Subscriber) -> dict[str, bytes]:
    """The latest payload per config topic."""
    return {m.topic: m.payload for m in sub.messages()}


@pytest.mark.integration
def test_retained_discovery_birth_republish_and_runtime_disable(mosquitto: Mosquitto, subscriber_factory) -> None:
    prefix = f"ha{unique_id()}"
    cfg = config(mosquitto.host, mosquitto.port, discovery_prefix=prefix)
    base = f"auricle/{cfg.device_id}"
    det = EventDetector(LABELS, {}, EventParams())
    watcher = subscriber_factory(f"{prefix}/#")
    publisher = started(cfg, device_info(thresholds=det.thresholds()))
    publisher.set_control_handler(lambda payload: handle_control(payload, det))
    expected = 1 + len(SENSORS) + 1 + 3 * len(LABELS)  # the legacy removal is not retained
    try:
        wait_until(lambda: len([p for p in _configs(watcher).values() if p]) == expected, 5, "all configs sent")
        late = subscriber_factory(f"{prefix}/#")  # subscribes after the configs went out: retained
        dog_topic = f"{prefix}/binary_sensor/{cfg.device_id}/dog/config"
        first = late.wait_for_topic(dog_topic)
        assert first.retain
        assert problems("binary_sensor", as_json(first.payload)) == []
        wait_until(lambda: len([p for p in _configs(late).values() if p]) == expected, 5, "all configs retained")

        states = subscriber_factory(f"{base}/#")
        late.clear()
        states.clear()
        publish(mosquitto.host, mosquitto.port, f"{prefix}/status", "online")  # Home Assistant's birth
        late.wait_for(lambda m: m.topic == dog_topic and not m.retain, what="config republished on birth")
        states.wait_for(lambda m: m.topic == f"{base}/state/siren" and not m.retain, what="state republished")
        states.wait_for(lambda m: m.topic == f"{base}/listen/siren" and m.payload == b"ON", what="listen republished")

        late.clear()
        publish(mosquitto.host, mosquitto.port, f"{base}/set", '{"disabled": ["dog"]}')
        states.wait_for(lambda m: m.topic == f"{base}/listen/dog" and m.payload == b"OFF", what="dog not listened for")
        assert late.messages(dog_topic) == []  # the entity stays (unavailable), nothing deleted
        fresh = subscriber_factory(f"{base}/listen/#")
        wait_until(lambda: len(fresh.messages()) == len(LABELS), 5, "retained listen states")
        assert {m.topic.split("/")[-1]: m.payload for m in fresh.messages()} == {
            "dog": b"OFF",
            "siren": b"ON",
            "church_bells": b"ON",
        }
    finally:
        publisher.close()


@pytest.mark.integration
def test_labels_disabled_between_runs_keep_their_entities(mosquitto: Mosquitto, subscriber_factory) -> None:
    prefix = f"ha{unique_id()}"
    cfg = config(mosquitto.host, mosquitto.port, discovery_prefix=prefix)
    siren_topic = f"{prefix}/binary_sensor/{cfg.device_id}/siren/config"
    started(cfg).close()
    second = started(cfg, device_info(enabled=("dog",)))
    try:
        fresh = subscriber_factory(f"{prefix}/#")
        wait_until(lambda: bool(fresh.messages(siren_topic)), 5, "siren config")
        assert fresh.messages(siren_topic)[-1].payload != b""
        listen = subscriber_factory(f"auricle/{cfg.device_id}/listen/siren")
        wait_until(lambda: [m.payload for m in listen.messages()][-1:] == [b"OFF"], 5, "siren not listened for")
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
