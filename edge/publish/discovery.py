"""Home Assistant MQTT discovery messages for one auricle device.

Per label of the model: a ``binary_sensor`` (device class ``sound``) on
``state/<label>``, a ``switch`` that says whether the label is listened for
(``listen/<label>``) and a ``number`` for its threshold
(``threshold/<label>``).  Only the announced labels' entities are enabled by
default; the others are discovered disabled, one click away in Home
Assistant.  A label that is not listened for keeps its entities: its sound
sensor is unavailable (its availability follows ``listen/<label>``).  A
bundle's optional AudioSet labels (edge/model/audioset.py) are labels like
the others; those enabled by default are announced, the rest never are.

For the device: an ``event`` entity that fires once per sound start (on
``sound``, its attributes carry the event's ``id``), a "That wasn't it"
``button`` that sends ``feedback`` on the latest event while the model can
take a verdict (it has an embedding; otherwise the button is removed), and
diagnostics (level, model, health figures, a ``problem`` binary sensor on
``status/reason``).  Every entity is available while ``status`` is ``online``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.detect.listening import listened
from edge.detect.set_command import Controllable, unknown_label
from edge.model.bundle import Manifest
from edge.publish.payloads import (
    FEEDBACK_WRONG_LATEST,
    OFF,
    OFFLINE,
    ON,
    ONLINE,
    DeviceInfo,
    Topics,
    display_name,
    dumps,
    slugs,
)

_LOGGER = logging.getLogger(__name__)

ORIGIN = "auricle"
LEGACY = (("sensor", "last_event"),)
"""Entities earlier versions announced: removed on every announce."""
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
WRONG = "that_wasnt_it"
"""The object id of the "That wasn't it" button."""
_HEALTH = "health"


def device_info(
    manifest: Manifest | None,
    sw_version: str,
    *,
    detector: Controllable | None = None,
    configured: tuple[str, ...] | None = None,
) -> DeviceInfo:
    """What the publisher announces for a running model (None: no model) and the event detector it runs with
    (the labels it listens for and their thresholds), its labels announced per the config (``mqtt.announce``)."""
    if manifest is None:
        return DeviceInfo(model_name="none", model_version="none", labels=(), sw_version=sw_version)
    for name in configured or ():
        if name not in manifest.score_labels:
            _LOGGER.warning("mqtt.announce: %s", unknown_label(name, manifest.score_labels))
    return DeviceInfo(
        model_name=manifest.name,
        model_version=manifest.version,
        labels=manifest.score_labels,
        sw_version=sw_version,
        enabled=detector.enabled() if detector is not None else None,
        thresholds=detector.thresholds() if detector is not None else {},
        announce=listened(manifest, configured),
        feedback=manifest.embedding is not None,
    )


def hardware_model(path: Path = DEVICE_TREE_MODEL) -> str | None:
    """The board's name (``Raspberry Pi 4 Model B Rev 1.4``) from the device tree, or None."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None
    return text.strip("\x00 \n") or None


@dataclass(frozen=True)
class Sensor:
    """One diagnostic sensor read from a JSON topic."""

    object_id: str
    name: str
    topic: str
    """``health``, ``level`` or ``model``: which of the device's topics it reads."""
    template: str
    extra: Mapping[str, Any]
    enabled: bool = True
    """Enabled by default; the process figures are not, as Home Assistant's own integrations ship them."""


def _health(object_id: str, name: str, key: str, **extra: Any) -> Sensor:
    template, more = f"{{{{ value_json.{key} }}}}", {"state_class": "measurement"} | extra
    return Sensor(object_id, name, _HEALTH, template, more, enabled=False)


SENSORS = (
    Sensor("level", "Sound level", "level", "{{ value_json.dbfs }}",
           {"unit_of_measurement": "dBFS", "state_class": "measurement", "icon": "mdi:volume-high"}),
    Sensor("model", "Model", "model", "{{ value_json.active.name ~ ' ' ~ value_json.active.version "
           "if value_json.active else 'none' }}", {"icon": "mdi:brain"}),
    _health("rtf", "Real-time factor", "rtf", suggested_display_precision=4, icon="mdi:speedometer"),
    _health("cpu", "CPU", "cpu_percent", unit_of_measurement="%", suggested_display_precision=1, icon="mdi:cpu-64-bit"),
    _health("memory", "Memory", "rss_mb", device_class="data_size", unit_of_measurement="MB",
            suggested_display_precision=0),
    _health("latency", "Inference latency", "latency_ms_p95", device_class="duration", unit_of_measurement="ms",
            suggested_display_precision=2),
    Sensor("uptime", "Uptime", _HEALTH, "{{ value_json.uptime_s }}",
           {"device_class": "duration", "unit_of_measurement": "s", "suggested_display_precision": 0}, enabled=False),
    Sensor("dropped_blocks", "Dropped audio blocks", _HEALTH, "{{ value_json.dropped_blocks | default(0) }}",
           {"state_class": "total_increasing", "icon": "mdi:close-octagon-outline"}, enabled=False),
)  # fmt: skip
"""The diagnostic sensors; latency is the 95th percentile of the last inferences.  Sound level and Model
start enabled (with Problem, what a person looks at); the health figures start disabled, one click away."""


@dataclass(frozen=True, kw_only=True)
class Discovery:
    """Builds discovery ``(topic, payload)`` pairs; an empty payload removes an entity."""

    info: DeviceInfo
    device_id: str
    topics: Topics
    prefix: str
    """Home Assistant's discovery prefix."""
    qos: int = 1
    suggested_area: str | None = None
    configuration_url: str | None = None
    hw_version: str | None = None

    def messages(self) -> list[tuple[str, str]]:
        """Config for every entity of the device; removal of the ones earlier versions made, and of the button
        while the model cannot take a verdict."""
        out = [(self._topic("event", "sound"), dumps(self._sound()))]
        out.append((self._topic("button", WRONG), dumps(self._wrong()) if self.info.feedback else ""))
        out += [(self._topic("sensor", s.object_id), dumps(self._sensor(s))) for s in SENSORS]
        out.append((self._topic("binary_sensor", "problem"), dumps(self._problem())))
        announce = self.info.labels if self.info.announce is None else self.info.announce
        for label, slug in slugs(self.info.labels).items():
            on = label in announce
            out.append((self._topic("binary_sensor", slug), dumps(self._binary(label, slug, on))))
            out.append((self._topic("switch", slug), dumps(self._switch(label, slug, on))))
            out.append((self._topic("number", slug), dumps(self._number(label, slug, on))))
        return out + [(self._topic(component, object_id), "") for component, object_id in LEGACY]

    def problem(self) -> tuple[str, str]:
        """The Problem sensor's config alone: what a device that could not start announces, so that Home
        Assistant shows why even when it never saw the device run."""
        return self._topic("binary_sensor", "problem"), dumps(self._problem())

    def removals(self, label: str) -> list[str]:
        """The config topics of ``label``'s entities (publish empty retained payloads there to delete them)."""
        slug = slugs(self.info.labels)[label]
        return [self._topic(component, slug) for component in ("binary_sensor", "switch", "number")]

    def _topic(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.device_id}/{object_id}/config"

    def _common(self, object_id: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"auricle_{self.device_id}_{object_id}",
            "availability_topic": self.topics.status,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "qos": self.qos,
            "device": self._device(),
            "origin": {"name": ORIGIN, "sw_version": self.info.sw_version},
        }

    def _device(self) -> dict[str, Any]:
        device = {
            "identifiers": [f"auricle_{self.device_id}"],
            "name": self.info.name or f"auricle {self.device_id}",
            "manufacturer": self.info.manufacturer,
            "model": f"{self.info.model_name} {self.info.model_version}",
            "sw_version": self.info.sw_version,
        }
        optional = {
            "hw_version": self.hw_version,
            "suggested_area": self.suggested_area,
            "configuration_url": self.configuration_url,
        }
        return device | {k: v for k, v in optional.items() if v is not None}

    def _binary(self, label: str, slug: str, enabled: bool) -> dict[str, Any]:
        config = self._common(f"sound_{slug}", display_name(label))
        for key in ("availability_topic", "payload_available", "payload_not_available"):
            del config[key]
        return config | {
            "availability": [
                {"topic": self.topics.status, "payload_available": ONLINE, "payload_not_available": OFFLINE},
                {"topic": self.topics.listen(slug), "payload_available": ON, "payload_not_available": OFF},
            ],
            "availability_mode": "all",
            "state_topic": self.topics.state(slug),
            "payload_on": ON,
            "payload_off": OFF,
            "device_class": "sound",
            "enabled_by_default": enabled,
        }

    def _switch(self, label: str, slug: str, enabled: bool) -> dict[str, Any]:
        return self._common(f"listen_{slug}", f"Listen for {display_name(label).lower()}") | {
            "state_topic": self.topics.listen(slug),
            "command_topic": self.topics.listen(slug) + "/set",
            "payload_on": ON,
            "payload_off": OFF,
            "entity_category": "config",
            "enabled_by_default": enabled,
            "icon": "mdi:ear-hearing",
        }

    def _number(self, label: str, slug: str, enabled: bool) -> dict[str, Any]:
        return self._common(f"threshold_{slug}", f"{display_name(label)} threshold") | {
            "state_topic": self.topics.threshold(slug),
            "command_topic": self.topics.threshold(slug) + "/set",
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "mode": "slider",
            "entity_category": "config",
            "enabled_by_default": enabled,
            "icon": "mdi:tune-vertical",
        }

    def _sound(self) -> dict[str, Any]:
        return self._common("sound", "Sound") | {
            "state_topic": self.topics.sound,
            "event_types": list(self.info.labels),
            "icon": "mdi:ear-hearing",
        }

    def _wrong(self) -> dict[str, Any]:
        """The "That wasn't it" button: a "wrong" verdict on the latest event (the device page's Controls)."""
        return self._common(WRONG, "That wasn't it") | {
            "command_topic": self.topics.feedback,
            "payload_press": FEEDBACK_WRONG_LATEST,
            "icon": "mdi:thumb-down-outline",
        }

    def _sensor(self, sensor: Sensor) -> dict[str, Any]:
        topic = {"level": self.topics.level, "model": self.topics.model("state"), _HEALTH: self.topics.health}
        config = self._common(sensor.object_id, sensor.name) | {
            "state_topic": topic[sensor.topic],
            "value_template": sensor.template,
            "entity_category": "diagnostic",
            "enabled_by_default": sensor.enabled,
        }
        if sensor.topic == "model":
            config["json_attributes_topic"] = topic["model"]
        return config | dict(sensor.extra)

    def _problem(self) -> dict[str, Any]:
        return self._common("problem", "Problem") | {
            "state_topic": self.topics.reason,
            "value_template": "{{ 'ON' if value_json.reason else 'OFF' }}",
            "json_attributes_topic": self.topics.reason,
            "json_attributes_template": "{{ {'reason': value_json.reason} | tojson }}",
            "payload_on": ON,
            "payload_off": OFF,
            "device_class": "problem",
            "entity_category": "diagnostic",
        }
