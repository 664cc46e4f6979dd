"""``auricle run`` (a subprocess with the shipped model, a real mosquitto): "that wasn't it" over MQTT.

The daemon hears a real dog (an ESC-50 clip, looped in real time).  A ``feedback`` verdict on one of its
events, by id or as ``latest``, becomes an example of ``dog`` in the state dir and is answered on
``feedback/result``; every bad payload is answered there with its one line, and the daemon runs on.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.daemon import Daemon, wait_until, write_config
from support.shared import shared_dir

from edge.publish.sinks import FEEDBACK_RETAINED, MAX_FEEDBACK_BYTES
from kit.broker import Mosquitto, Subscriber, publish

pytestmark = pytest.mark.integration
ESC50: Path = shared_dir() / "data" / "esc50"
UNHEARD = "0123456789abcdef0123456789abcdef"
BAD = [
    (b"that wasn't it", "feedback: not JSON: "),
    (bytes(range(256)), "feedback: not JSON: "),  # binary garbage
    (b"[" * 400, "feedback: not JSON: "),
    (b'{"id": "latest", "verdict": "wrong", "why": "cat"}', 'feedback: expected {"id": EVENT_ID, "verdict": '),
    (b'["latest", "wrong"]', 'feedback: expected {"id": EVENT_ID, "verdict": '),
    (b'{"id": 7, "verdict": "wrong"}', "feedback: id: expected an event id (or 'latest')"),
    (b'{"id": "latest", "verdict": "maybe"}', "feedback: verdict: expected 'wrong' or 'right', got 'maybe'"),
    (b'{"id": "latest"}', "feedback: verdict: expected 'wrong' or 'right', got None"),
    (b"x" * 100_000, f"feedback: payload too large (100000 bytes, at most {MAX_FEEDBACK_BYTES})"),
    (json.dumps({"id": UNHEARD, "verdict": "wrong"}).encode(), f"feedback: event '{UNHEARD}': not among the last"),
    (b'{"id": "../../controls", "verdict": "wrong"}', "feedback: event '../../controls': not among the last"),
]
"""Payloads and the start of the line each gets on ``feedback/result``."""
RELOADED = "teaching: heads reloaded"


def _dog() -> Path:
    """An ESC-50 bark the shipped model hears as one ``dog`` event (2.4-3.6 s into the clip)."""
    return ESC50 / "audio" / "1-100032-A-0.flac"


class Device:
    """The daemon's topics, as a user's tools see them."""

    def __init__(self, broker: Mosquitto, subscribe: Callable[..., Subscriber]) -> None:
        self.id = f"t{uuid.uuid4().hex[:8]}"
        self.base = f"auricle/{self.id}"
        self.broker = broker
        self.sub = subscribe(f"{self.base}/#")
        self.results = subscribe(f"{self.base}/feedback/result")

    def send(self, payload: bytes, *, retain: bool = False) -> None:
        publish(self.broker.host, self.broker.port, f"{self.base}/feedback", payload, retain=retain)

    def ask(self, payload: bytes, match: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
        """Send ``payload`` and return the answer on ``feedback/result`` that ``match`` accepts."""
        self.results.clear()
        self.send(payload)
        message = self.results.wait_for(lambda m: match(json.loads(m.payload)), timeout_s, repr(payload[:80]))
        assert not message.retain
        data: dict[str, Any] = json.loads(message.payload)
        return data

    def dog_starts(self) -> list[str]:
        events = [json.loads(m.payload) for m in self.sub.messages(f"{self.base}/event")]
        return [e["id"] for e in events if e["label"] == "dog" and e["kind"] == "start"]


def _says(line: str) -> Callable[[dict[str, Any]], bool]:
    return lambda answer: bool(answer["message"].startswith(line))


def test_verdicts_over_mqtt_become_examples_and_bad_ones_get_one_line(
    tmp_path: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    device = Device(mosquitto, subscriber_factory)
    config = write_config(
        tmp_path / "auricle.yaml",
        {"audio": {"source": "file", "file": str(_dog()), "realtime": True, "loop": True},
         "mqtt": {"device_id": device.id, "host": mosquitto.host, "port": mosquitto.port}},
    )  # fmt: skip
    examples = tmp_path / "state" / "taught" / "examples" / "dog"
    with Daemon(config) as daemon:
        device.sub.wait_for(lambda m: m.topic == f"{device.base}/status" and m.payload == b"online", 60, "online")
        for payload, line in BAD:  # while the first events come
            answer = device.ask(payload, _says(line), 30)
            assert answer["ok"] is False and answer["schema"] == 2 and "\n" not in answer["message"], answer
        device.results.clear()
        device.send(b'{"id": "latest", "verdict": "wrong"}', retain=True)  # would be carried out on every reconnect
        refused = device.results.wait_for(lambda m: json.loads(m.payload)["message"] == FEEDBACK_RETAINED, 10)
        assert json.loads(refused.payload) | {"schema": 2} == json.loads(refused.payload)
        assert [json.loads(refused.payload)[k] for k in ("id", "verdict", "ok")] == ["latest", "wrong", False]
        device.send(b"", retain=True)  # the retained one cleared; an empty message is no request
        assert daemon.running, daemon.stderr[-3000:]

        wait_until(lambda: len(device.dog_starts()) >= 2, 60, "two dog events")
        first = device.dog_starts()[0]
        wrong = device.ask(json.dumps({"id": first, "verdict": "wrong"}).encode(), lambda a: a["id"] == first, 180)
        assert wrong["ok"] is True and wrong["verdict"] == "wrong", wrong
        assert wrong["message"].startswith(f"event {first[:8]} (dog at "), wrong
        assert [p.name.split(".")[0] for p in examples.glob("not-*")] == ["not-001"]
        again = device.ask(json.dumps({"id": first, "verdict": "wrong"}).encode(), lambda a: a["id"] == first, 60)
        assert again["ok"] is False and "not among the last" in again["message"]  # a verdict is kept once
        wait_until(lambda: daemon.stderr.count(RELOADED) == 1, 30, "the new heads in use")

        right = device.ask(b'{"id": "latest", "verdict": "right"}', lambda a: a["id"] == "latest", 180)
        assert right["ok"] is True and right["verdict"] == "right", right
        named = right["message"].split()[1]
        assert named != first[:8] and any(e.startswith(named) for e in device.dog_starts()), right
        assert [p.name.split(".")[0] for p in examples.glob("yes-*")] == ["yes-001"]
        wait_until(lambda: daemon.stderr.count(RELOADED) == 2, 30, "the new heads in use")
        assert "taught: fitted" not in daemon.stderr  # the audio worker took the verdicts' heads, never refit
        assert daemon.running, daemon.stderr[-3000:]
        assert daemon.terminate() == 0, daemon.stderr[-4000:]
    assert "Traceback" not in daemon.stderr
