"""Home Assistant's health and level sensors through a real mosquitto: never *Unknown* after Home Assistant
restarts, and few recorder rows from the sound level."""

from __future__ import annotations

import json
import time

import pytest
from support.mqtt_helpers import as_json, config, started, unique_id, wait_until

from edge.publish.mqttconfig import MqttConfig
from edge.publish.payloads import LevelGate
from edge.schema import ConfigError, build
from kit.broker import Mosquitto, publish

HEALTH = {"uptime_s": 60.0, "hops": 600, "dropped_blocks": 0, "rtf": 0.004, "cpu_percent": 3.1}


@pytest.mark.integration
def test_health_is_retained_and_sent_again_on_home_assistants_birth(mosquitto: Mosquitto, subscriber_factory) -> None:
    prefix = f"ha{unique_id()}"
    cfg = config(mosquitto.host, mosquitto.port, discovery_prefix=prefix)
    health = f"auricle/{cfg.device_id}/health"
    watch = subscriber_factory(health)
    publisher = started(cfg)
    try:
        publisher.publish_health(HEALTH)
        watch.wait_for_topic(health)  # the broker has it
        # Home Assistant subscribes a second after it reads discovery: the latest health must wait for it
        late = subscriber_factory(health)
        found = late.wait_for_topic(health)
        assert found.retain and as_json(found.payload)["uptime_s"] == 60.0
        late.clear()

        def born() -> bool:  # Home Assistant's birth, again until the publisher's subscription has caught one
            publish(mosquitto.host, mosquitto.port, f"{prefix}/status", "online")
            try:
                late.wait_for(lambda m: m.topic == health and not m.retain, 1.0, "health sent again")
            except AssertionError:
                return False
            return True

        wait_until(born, 10, "health sent again on Home Assistant's birth")
        assert as_json(late.messages(health)[-1].payload)["hops"] == 600
    finally:
        publisher.close()


@pytest.mark.integration
def test_health_and_level_come_back_after_a_broker_restart(mosquitto: Mosquitto, subscriber_factory) -> None:
    cfg = config(mosquitto.host, mosquitto.port)
    base = f"auricle/{cfg.device_id}"
    publisher = started(cfg)
    try:
        publisher.publish_health(HEALTH)
        publisher.publish_level(1000.0, 5.0, -41.0)
        mosquitto.stop()  # no persistence: every retained message is gone
        wait_until(lambda: not publisher.connected, 10, "publisher noticed the broker left")
        mosquitto.start()
        wait_until(lambda: publisher.connected, 15, "publisher reconnected")
        late = subscriber_factory(f"{base}/#")
        wait_until(lambda: {f"{base}/health", f"{base}/level"} <= {m.topic for m in late.messages()}, 5, "resent")
        assert as_json(late.messages(f"{base}/level")[-1].payload)["dbfs"] == -41.0
    finally:
        mosquitto.start()
        publisher.close()


@pytest.mark.integration
def test_the_level_is_sent_only_when_it_moved(mosquitto: Mosquitto, subscriber_factory) -> None:
    cfg = config(mosquitto.host, mosquitto.port, level_interval_s=0.1, level_change_db=3.0)
    base = f"auricle/{cfg.device_id}"
    sub = subscriber_factory(f"{base}/#")
    publisher = started(cfg)
    try:
        publisher.publish_level(1000.0, 1.0, -40.0)
        publisher.publish_level(1000.1, 1.1, -60.0)  # within level_interval_s
        time.sleep(0.15)
        publisher.publish_level(1000.3, 1.3, -41.5)  # moved 1.5 dB: not worth a recorder row
        publisher.publish_level(1000.4, 1.4, -50.0)
        publisher.publish_health(HEALTH)  # one connection, QoS 1: once this is in, every level before it is
        sub.wait_for_topic(f"{base}/health")
    finally:
        publisher.close()
    assert [json.loads(m.payload)["dbfs"] for m in sub.messages(f"{base}/level")] == [-40.0, -50.0]


def test_level_gate_rows() -> None:
    now = [0.0]
    gate = LevelGate(60.0, 3.0, 900.0, clock=lambda: now[0])
    sent = []
    for minute in range(24 * 60):  # a steady room, a reading each minute (the level wobbles by 1 dB)
        now[0] = minute * 60.0
        if gate.ready(-50.0 - (minute % 2)):
            sent.append(minute)
    assert len(sent) == 24 * 4  # every 15 minutes: 96 rows a day instead of 8,640
    now[0] += 60.0
    assert gate.ready(-40.0)  # a loud minute goes out at once
    now[0] += 30.0
    assert not gate.ready(-20.0)  # but never twice within level_interval_s


def test_level_settings_are_checked() -> None:
    defaults = MqttConfig()
    assert (defaults.level_interval_s, defaults.level_change_db, defaults.level_max_interval_s) == (60.0, 3.0, 900.0)
    with pytest.raises(ConfigError, match="level_interval_s must not exceed level_max_interval_s"):
        build(MqttConfig, {"level_interval_s": 600, "level_max_interval_s": 300}, "config.yaml", "mqtt")
