"""The default listening set (edge/detect/listening.py): the labels that raise events by default are the ones
Home Assistant shows enabled; the others are scored and one switch away."""

from __future__ import annotations

import json

import numpy as np

from edge.daemon.startup import default_model_path
from edge.detect.events import EventDetector, EventParams
from edge.detect.listening import listened
from edge.detect.set_command import handle_control
from edge.model.bundle import read_bundle
from edge.publish.discovery import device_info

SHIPPED = read_bundle(default_model_path()).manifest


def _events(det: EventDetector, label: str, hops: int = 20) -> list[str]:
    """Feed ``hops`` hops where ``label`` scores 1.0 and every other label 0; the labels that started."""
    scores = np.zeros(len(det.labels), dtype=np.float32)
    scores[det.labels.index(label)] = 1.0
    started = []
    for i in range(hops):
        started += [e.label for e in det.update(scores, 0.2 * i) if e.kind == "start"]
    return started


def test_the_shipped_model_listens_to_what_home_assistant_shows() -> None:
    det = EventDetector.for_model(SHIPPED, EventParams())
    shown = device_info(SHIPPED, "test").announce
    assert det.enabled() == shown == listened(SHIPPED, None)
    assert set(det.enabled()) >= {"crying_baby", "glass_breaking", "siren", "dog", "door_wood_knock", "clock_alarm"}
    assert len(det.enabled()) <= 8 and "breathing" not in det.enabled() and "can_opening" not in det.enabled()


def test_breathing_inside_speech_raises_nothing_by_default_and_one_switch_turns_it_on() -> None:
    det = EventDetector.for_model(SHIPPED, EventParams())
    assert _events(det, "breathing") == []
    assert _events(det, "siren") == ["siren"]
    assert handle_control(json.dumps({"listen": {"breathing": True}}).encode(), det).ok
    assert "breathing" in det.enabled() and "siren" in det.enabled()  # added, nothing else lost
    assert _events(EventDetector.for_model(SHIPPED, EventParams(enabled=("breathing",))), "breathing") == ["breathing"]


def test_the_config_can_add_narrow_or_listen_to_all() -> None:
    added = EventDetector.for_model(SHIPPED, EventParams(enabled=("breathing",))).enabled()
    assert set(added) == set(listened(SHIPPED, None)) | {"breathing"}
    assert EventDetector.for_model(SHIPPED, EventParams(enabled=("dog",))).enabled() == ("dog",)
    every = EventDetector.for_model(SHIPPED, EventParams(listening="all")).enabled()
    off = SHIPPED.audioset.off_by_default if SHIPPED.audioset else ()
    assert set(every) == set(SHIPPED.score_labels) - set(off) and "breathing" in every


def test_mqtt_announce_is_the_listening_set_too() -> None:
    det = EventDetector.for_model(SHIPPED, EventParams(), ("dog", "cat"))
    assert set(det.enabled()) == {"dog", "cat"}  # model order
