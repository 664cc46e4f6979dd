"""A beeping alarm is one Sound event (Home Assistant's event entity), not one per beep.

A scripted score stream through the real EventDetector (hold 1 s, no cooldown: the defaults), its events
through a real MqttPublisher and mosquitto: the documented notification automation, which triggers on the
event entity, would notify once per alarm.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.mqtt_helpers import LABELS, config, device_info, started, wait_until

from edge.detect.events import Event, EventDetector, EventParams
from edge.schema import build
from kit.broker import Mosquitto

HOP_S = 0.1
SIREN = LABELS.index("siren")


def beeping(seconds: float, on_s: float = 0.5, off_s: float = 1.5) -> list[float]:
    """A siren score per hop: ``on_s`` beeps ``off_s`` apart (longer than hold_s, so each beep is an event)."""
    period = round((on_s + off_s) / HOP_S)
    return [0.9 if i % period < round(on_s / HOP_S) else 0.02 for i in range(round(seconds / HOP_S))]


def quiet(seconds: float) -> list[float]:
    return [0.02] * round(seconds / HOP_S)


ALARM_TWICE = beeping(20.0) + quiet(40.0) + beeping(6.0)
"""One alarm of 10 beeps, 40 s of quiet, a second alarm of 3 beeps."""


def events_of(scores: list[float], **params: object) -> list[Event]:
    detector = EventDetector(LABELS, {"siren": 0.5}, build(EventParams, params, "test"))
    found: list[Event] = []
    for i, score in enumerate(scores):
        row = np.zeros(len(LABELS), dtype=np.float32)
        row[SIREN] = score
        found += detector.update(row, i * HOP_S)
    return found + detector.flush(len(scores) * HOP_S)


def test_the_defaults_make_every_beep_an_event_but_each_alarm_one_alert() -> None:
    assert (EventParams().hold_s, EventParams().cooldown_s, EventParams().rearm_s) == (1.0, 0.0, 30.0)
    starts = [e for e in events_of(ALARM_TWICE) if e.kind == "start"]
    assert len(starts) == 13  # the sound sensor and the event topic still show every beep
    assert [round(e.start_offset_s) for e in starts if not e.repeat] == [0, 60]
    ends = [e for e in events_of(ALARM_TWICE) if e.kind == "end"]
    assert [e.repeat for e in ends] == [e.repeat for e in starts]  # an end carries its start's flag


def test_rearm_zero_alerts_on_every_start() -> None:
    starts = [e for e in events_of(ALARM_TWICE, rearm_s=0.0) if e.kind == "start"]
    assert len(starts) == 13 and not any(e.repeat for e in starts)


def test_a_quiet_gap_shorter_than_rearm_keeps_it_one_alarm() -> None:
    starts = [e for e in events_of(beeping(10.0) + quiet(25.0) + beeping(4.0)) if e.kind == "start"]
    assert [e.repeat for e in starts].count(False) == 1


@pytest.mark.integration
def test_the_event_entity_fires_once_per_alarm(mosquitto: Mosquitto, subscriber_factory) -> None:
    cfg = config(mosquitto.host, mosquitto.port)
    base = f"auricle/{cfg.device_id}"
    sub = subscriber_factory(f"{base}/#")
    events = events_of(ALARM_TWICE)
    publisher = started(cfg, device_info())
    try:
        for event in events:
            publisher.publish_event(event)
        # one connection, QoS 1: once the last end is in, every sound before it is too
        wait_until(lambda: len(sub.messages(f"{base}/event")) == len(events), 10, "every event message")
    finally:
        publisher.close()
    sounds = [json.loads(m.payload) for m in sub.messages(f"{base}/sound")]
    assert [(s["event_type"], round(s["start_offset_s"])) for s in sounds] == [("siren", 0), ("siren", 60)]
    published = [json.loads(m.payload) for m in sub.messages(f"{base}/event")]
    assert sum(e["kind"] == "start" for e in published) == 13
    assert [e["repeat"] for e in published if e["kind"] == "start"].count(False) == 2
