"""Helpers for the MQTT tests: a started publisher on the test broker, and bounded polling."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from edge.publish.mqtt import MqttPublisher
from edge.publish.mqttconfig import MqttConfig
from edge.publish.payloads import DeviceInfo
from edge.schema import build

LABELS = ("dog", "siren", "Church bells")
MODEL_VERSION = "1.2.3"


def device_info(**overrides: Any) -> DeviceInfo:
    fields: dict[str, Any] = {
        "model_name": "tone-test",
        "model_version": MODEL_VERSION,
        "labels": LABELS,
        "sw_version": "0.1.0",
    }
    return DeviceInfo(**(fields | overrides))


def unique_id() -> str:
    """A device id no other test uses, so retained messages never leak between tests."""
    return f"t{uuid.uuid4().hex[:10]}"


def config(host: str, port: int, **overrides: Any) -> MqttConfig:
    data = {"host": host, "port": port, "device_id": unique_id(), "reconnect_max_s": 1} | overrides
    return build(MqttConfig, data, "test")


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        time.sleep(0.01)


def started(cfg: MqttConfig, info: DeviceInfo | None = None, timeout_s: float = 10.0) -> MqttPublisher:
    """A publisher that has connected (CONNACK received) to the broker."""
    publisher = MqttPublisher(cfg)
    publisher.start(info or device_info())
    wait_until(lambda: publisher.connected, timeout_s, "publisher connected")
    return publisher


def as_json(payload: bytes) -> Any:
    return json.loads(payload.decode())
