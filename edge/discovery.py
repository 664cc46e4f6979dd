"""Home Assistant MQTT discovery messages for one auricle device.

One device block; a ``binary_sensor`` (device_class ``sound``) per enabled
label on ``state/<label>``; a ``sensor`` for the last event's label and one
for the level in dBFS.  Every entity is available while ``status`` is
``online``.  A label that is not enabled gets an empty retained config, which
is how Home Assistant is told to remove the entity: that covers labels
disabled at run time and, since every (re)connect sweeps all of the model's
labels, labels disabled between runs of the same model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge.payloads import OFF, OFFLINE, ON, ONLINE, DeviceInfo, Topics, dumps, slugs

ORIGIN = "auricle"


@dataclass(frozen=True)
class Discovery:
    """Builds discovery ``(topic, payload)`` pairs; an empty payload removes an entity."""

    info: DeviceInfo
    device_id: str
    topics: Topics
    prefix: str
    """Home Assistant's discovery prefix."""
    qos: int = 1

    def messages(self, enabled: Sequence[str]) -> list[tuple[str, str]]:
        """Config for every enabled label and both sensors; removal for every other label."""
        names = slugs(self.info.labels)
        out = [self._sensor("last_event", self._last_event()), self._sensor("level", self._level())]
        for label in self.info.labels:
            topic = self._topic("binary_sensor", names[label])
            out.append((topic, dumps(self._binary(label, names[label])) if label in enabled else ""))
        return out

    def removals(self) -> list[tuple[str, str]]:
        """Empty configs for every entity of this device (used when discovery is switched off)."""
        names = slugs(self.info.labels)
        out = [(self._topic("sensor", s), "") for s in ("last_event", "level")]
        return out + [(self._topic("binary_sensor", names[x]), "") for x in self.info.labels]

    def removal(self, label: str) -> str:
        """The config topic of ``label``'s entity (publish an empty retained payload there to delete it)."""
        return self._topic("binary_sensor", slugs(self.info.labels)[label])

    def _topic(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.device_id}/{object_id}/config"

    def _sensor(self, object_id: str, config: dict[str, Any]) -> tuple[str, str]:
        return self._topic("sensor", object_id), dumps(config)

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
        return {
            "identifiers": [f"auricle_{self.device_id}"],
            "name": self.info.name or f"auricle {self.device_id}",
            "manufacturer": self.info.manufacturer,
            "model": f"{self.info.model_name} {self.info.model_version}",
            "sw_version": self.info.sw_version,
        }

    def _binary(self, label: str, slug: str) -> dict[str, Any]:
        return self._common(f"sound_{slug}", label.replace("_", " ").capitalize()) | {
            "state_topic": self.topics.state(slug),
            "payload_on": ON,
            "payload_off": OFF,
            "device_class": "sound",
        }

    def _last_event(self) -> dict[str, Any]:
        return self._common("last_event", "Last sound") | {
            "state_topic": self.topics.event,
            "value_template": "{{ value_json.label }}",
            "json_attributes_topic": self.topics.event,
            "icon": "mdi:ear-hearing",
        }

    def _level(self) -> dict[str, Any]:
        return self._common("level", "Sound level") | {
            "state_topic": self.topics.level,
            "value_template": "{{ value_json.dbfs }}",
            "unit_of_measurement": "dBFS",
            "state_class": "measurement",
            "icon": "mdi:volume-high",
        }
