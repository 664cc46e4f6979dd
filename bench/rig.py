"""The daemon's wiring on a bench: one classifier, one MQTT publisher to a real broker, a subscriber on ``#``.

``bench.pipeline`` replays audio through it; the broker is the tests' own (``kit.broker``, the real
processes tests and benchmarks share).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.daemon.service import sw_version
from edge.detect.events import EventDetector, EventParams
from edge.detect.pipeline import Pipeline
from edge.model.classifier import Classifier
from edge.publish.mqtt import MqttPublisher
from edge.publish.mqttconfig import MqttConfig
from edge.publish.payloads import DeviceInfo
from kit.broker import new_client

WAIT_S = 10.0
"""Bound on every wait for the broker."""


class Tap:
    """Subscribes to '#': counts messages per kind, keeps event arrivals while ``keep`` is set."""

    def __init__(self, host: str, port: int) -> None:
        self.counts: Counter[str] = Counter()
        self.arrivals: list[tuple[float, float, str]] = []
        """(arrival epoch s, t_audio, kind) of the events received while keep was set."""
        self.keep = False
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = new_client("auricle-bench-tap")
        self._client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect_async(host, port)
        self._client.loop_start()
        if not self._subscribed.wait(WAIT_S):
            raise TimeoutError(f"subscriber: no SUBACK from {host}:{port} within {WAIT_S} s")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        now = time.time()
        parts = msg.topic.split("/")
        kind = parts[2] if parts[0] == "auricle" and len(parts) > 2 else "discovery"
        with self._cond:
            self.counts[kind] += 1
            if kind == "event" and self.keep:
                data = json.loads(msg.payload)
                self.arrivals.append((now, data["t_audio"], data["kind"]))
            self._cond.notify_all()

    def wait_events(self, n: int) -> int:
        """Wait (bounded) until ``n`` events arrived in total; return how many did."""
        deadline = time.monotonic() + WAIT_S
        with self._cond:
            while self.counts["event"] < n and time.monotonic() < deadline:
                self._cond.wait(0.1)
            return self.counts["event"]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class CountingDetector:
    """The real EventDetector, counting what it hands to the publisher."""

    def __init__(self, inner: EventDetector) -> None:
        self.inner, self.events = inner, 0

    def update(self, scores: np.ndarray, t: float) -> list[Any]:
        out = self.inner.update(scores, t)
        self.events += len(out)
        return out

    def flush(self, t: float) -> list[Any]:
        out = self.inner.flush(t)
        self.events += len(out)
        return out


@dataclass
class Rig:
    """One classifier and one publisher for the whole run, like one daemon."""

    clf: Classifier
    publisher: MqttPublisher
    tap: Tap
    tmp: Path
    sent: int = 0

    @property
    def rate(self) -> int:
        return self.clf.manifest.features.sample_rate

    def pipeline(self, hop: int | None, params: EventParams | None = None) -> tuple[Pipeline, CountingDetector]:
        m = self.clf.manifest
        det = CountingDetector(EventDetector.for_model(m, params or EventParams(listening="all")))
        return Pipeline(self.clf, hop_frames=hop, detector=det, sink=self.publisher), det


def open_rig(clf: Classifier, port: int, tmp: Path) -> Rig:
    m = clf.manifest
    publisher = MqttPublisher(MqttConfig(host="127.0.0.1", port=port, device_id="bench"))
    publisher.start(DeviceInfo(model_name=m.name, model_version=m.version, labels=m.labels, sw_version=sw_version()))
    deadline = time.monotonic() + WAIT_S
    while not publisher.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    if not publisher.connected:
        raise TimeoutError(f"publisher did not connect to 127.0.0.1:{port} within {WAIT_S} s")
    return Rig(clf, publisher, Tap("127.0.0.1", port), tmp)
