"""Home Assistant's documented MQTT discovery keys, to check auricle's configs against.

Encoded from the Home Assistant docs for MQTT discovery, MQTT Binary sensor and
MQTT Sensor (full key names; auricle does not use the abbreviations).  Only
the keys these two platforms document are listed; a key outside them is a
typo that Home Assistant would reject.
"""

from __future__ import annotations

from typing import Any

# Keys every MQTT entity platform documents.
COMMON = {
    "availability": list,
    "availability_mode": str,
    "availability_template": str,
    "availability_topic": str,
    "payload_available": str,
    "payload_not_available": str,
    "default_entity_id": str,
    "device": dict,
    "enabled_by_default": bool,
    "encoding": str,
    "entity_category": str,
    "entity_picture": str,
    "expire_after": int,
    "force_update": bool,
    "icon": str,
    "json_attributes_template": str,
    "json_attributes_topic": str,
    "name": str,
    "object_id": str,
    "origin": dict,
    "platform": str,
    "qos": int,
    "state_topic": str,
    "unique_id": str,
    "value_template": str,
}
PLATFORM = {
    "binary_sensor": COMMON | {"device_class": str, "off_delay": int, "payload_off": str, "payload_on": str},
    "sensor": COMMON
    | {
        "device_class": str,
        "last_reset_value_template": str,
        "options": list,
        "state_class": str,
        "suggested_display_precision": int,
        "unit_of_measurement": str,
    },
}
REQUIRED = {"binary_sensor": {"state_topic"}, "sensor": {"state_topic"}}
DEVICE = {
    "configuration_url": str,
    "connections": list,
    "hw_version": str,
    "identifiers": list,
    "manufacturer": str,
    "model": str,
    "model_id": str,
    "name": str,
    "serial_number": str,
    "suggested_area": str,
    "sw_version": str,
    "via_device": str,
}
ORIGIN = {"name": str, "sw_version": str, "support_url": str}
BINARY_SENSOR_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas",
    "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power",
    "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
}  # fmt: skip
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}


def problems(component: str, config: dict[str, Any]) -> list[str]:
    """Everything in a discovery config that Home Assistant's docs do not allow."""
    found = _typed(config, PLATFORM[component], component)
    found += [f"{component}: missing {k}" for k in sorted(REQUIRED[component] - set(config))]
    if "availability" in config and "availability_topic" in config:
        found.append(f"{component}: availability and availability_topic are exclusive")
    if "device" in config:
        found += _device(config)
    if "origin" in config:
        found += _typed(config["origin"], ORIGIN, "origin")
        found += [] if "name" in config["origin"] else ["origin: missing name"]
    if component == "binary_sensor" and config.get("device_class", "sound") not in BINARY_SENSOR_CLASSES:
        found.append(f"binary_sensor: unknown device_class {config['device_class']!r}")
    if component == "sensor" and config.get("state_class", "measurement") not in STATE_CLASSES:
        found.append(f"sensor: unknown state_class {config['state_class']!r}")
    if config.get("qos", 0) not in (0, 1, 2):
        found.append("qos must be 0, 1 or 2")
    return found


def _device(config: dict[str, Any]) -> list[str]:
    device = config["device"]
    found = _typed(device, DEVICE, "device")
    if not device.get("identifiers") and not device.get("connections"):
        found.append("device: needs identifiers or connections")
    if "unique_id" not in config:
        found.append("device info only works with a unique_id")
    return found


def _typed(data: dict[str, Any], allowed: dict[str, type], where: str) -> list[str]:
    found = []
    for key, value in data.items():
        if key not in allowed:
            found.append(f"{where}: undocumented key {key!r}")
        elif not isinstance(value, allowed[key]) or (allowed[key] is int and isinstance(value, bool)):
            found.append(f"{where}: {key} should be {allowed[key].__name__}, got {type(value).__name__}")
    return found
