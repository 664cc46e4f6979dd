"""The console for people: one readable line per sound start and end, and health now and then.

``auricle run`` without a broker prints here when stdout is a terminal; when it
is not (a pipe, a file, journald) or with ``--json``, :class:`~edge.publish.sinks.ConsoleSink`
prints the MQTT messages as JSON lines instead.  Retained states, levels and
scores are machine traffic and are not shown.  With a broker, the terminal shows
:func:`write_line`'s ``connected to ...`` and ``not connected: <why>`` lines from the
MQTT publisher.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from edge.detect.events import Event
from edge.publish.mqttconfig import MqttConfig
from edge.publish.payloads import DeviceInfo
from edge.publish.sinks import BaseSink

_LOGGER = logging.getLogger(__name__)


def clock(epoch: float) -> str:
    """Local wall-clock time of day, to the second."""
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 5 s``, ``2 h 4 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def display(label: str) -> str:
    """A label as people write it: ``door_wood_knock`` -> ``door wood knock``."""
    return label.replace("_", " ")


def write_line(stream: TextIO, text: str, epoch: float | None = None) -> None:
    """One line for people, ``HH:MM:SS  text`` (local time of ``epoch``, default now); a closed stream is ignored."""
    try:
        stream.write(f"{clock(time.time() if epoch is None else epoch)}  {text}\n")
        stream.flush()
    except (OSError, ValueError) as exc:  # closed terminal: keep classifying
        _LOGGER.debug("console cannot write: %s", exc)


def health_line(health: Mapping[str, Any]) -> str:
    """The health figures people look at, in one line."""
    parts = [f"real-time factor {health.get('rtf', 0.0):.4f}"]
    if "cpu_percent" in health:
        parts.append(f"CPU {health['cpu_percent']:.1f}%")
    if "rss_mb" in health:
        parts.append(f"memory {health['rss_mb']:.0f} MB")
    if health.get("latency_ms_p95"):
        parts.append(f"inference p95 {health['latency_ms_p95']:.2f} ms")
    parts.append(f"{health.get('dropped_blocks', 0)} dropped blocks")
    if health.get("errors"):
        parts.append(f"{health['errors']} errors")
    if "uptime_s" in health:
        parts.append(f"up {duration(float(health['uptime_s']))}")
    return "health: " + ", ".join(parts)


class HumanConsole(BaseSink):
    """Readable lines on a terminal; the same Publisher interface as the JSON sinks."""

    def __init__(self, config: MqttConfig, stream: TextIO | None = None) -> None:
        super().__init__(config)
        self._stream = stream

    def start(self, info: DeviceInfo) -> None:
        super().start(info)
        shown = len(self._enabled)
        labels = f"{shown} labels" if shown == len(info.labels) else f"{shown} of {len(info.labels)} labels"
        self._line(time.time(), f"listening with {info.model_name} {info.model_version} ({labels}); Ctrl-C stops")

    def publish_event(self, event: Event) -> None:
        name = display(event.label)
        if event.kind == "start":
            self._line(event.start, f"{name} started (score {event.peak:.2f})")
            return
        length = (event.end or event.start) - event.start
        text = f"{name} ended after {duration(length)} (peak {event.peak:.2f}, mean {event.mean:.2f})"
        self._line(event.end or event.t_audio, text)

    def publish_health(self, health: Mapping[str, Any]) -> None:
        self._line(time.time(), health_line(health))

    def publish_status_reason(self, reason: str | None) -> None:
        super().publish_status_reason(reason)
        self._line(time.time(), "recovered: audio is flowing again" if reason is None else f"problem: {reason}")

    def close(self) -> None:
        self._line(time.time(), "stopped")

    def _go_online(self) -> None:
        """Nothing to announce: retained states are for brokers, not people."""

    def _emit(self, topic: str, payload: str, retain: bool, is_json: bool) -> None:
        del topic, payload, retain, is_json  # machine traffic (states, levels, scores) is not shown

    def _line(self, epoch: float, text: str) -> None:
        with self._lock:
            write_line(self._stream or sys.stdout, text, epoch)
