"""Home Assistant's MQTT discovery schema, to check auricle's configs against.

Encoded from Home Assistant's docs for MQTT discovery and the MQTT Binary
sensor, Sensor, Event, Number, Switch and Button platforms, cross-checked with the
voluptuous schemas of the MQTT integration (full key names; auricle does not
use the abbreviations).  Only the keys these platforms accept are listed; a
key outside them is a typo that Home Assistant would drop or reject.  Value
checks cover what auricle sets: device and state classes, units for the
device classes it uses, entity categories, availability lists, number ranges.
"""

from __future__ import annotations

from typing import Any

# Keys every MQTT entity platform accepts (availability, entity and device options, base options).
ENTITY = {
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
    "icon": str,
    "json_attributes_template": str,
    "json_attributes_topic": str,
    "name": str,
    "object_id": str,
    "origin": dict,
    "platform": str,
    "qos": int,
    "unique_id": str,
}
READ = ENTITY | {"state_topic": str, "value_template": str}
"""Platforms that only listen."""
WRITE = ENTITY | {
    "command_topic": str,
    "command_template": str,
    "optimistic": bool,
    "retain": bool,
    "state_topic": str,
    "value_template": str,
}
"""Platforms that also command."""
PLATFORM = {
    "binary_sensor": READ
    | {
        "device_class": str,
        "expire_after": int,
        "force_update": bool,
        "off_delay": int,
        "payload_off": str,
        "payload_on": str,
    },
    "sensor": READ
    | {
        "device_class": str,
        "expire_after": int,
        "force_update": bool,
        "last_reset_value_template": str,
        "options": list,
        "state_class": str,
        "suggested_display_precision": int,
        "unit_of_measurement": str,
    },
    "event": READ | {"device_class": str, "event_types": list},
    "number": WRITE
    | {
        "device_class": str,
        "max": float,
        "min": float,
        "mode": str,
        "payload_reset": str,
        "step": float,
        "unit_of_measurement": str,
    },
    "switch": WRITE | {"device_class": str, "payload_off": str, "payload_on": str, "state_off": str, "state_on": str},
    "button": ENTITY | {"command_topic": str, "command_template": str, "device_class": str, "payload_press": str,
                        "retain": bool},
}  # fmt: skip
REQUIRED = {
    "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"},
    "event": {"state_topic", "event_types"},
    "number": {"command_topic"},
    "switch": {"command_topic"},
    "button": {"command_topic"},
}
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
AVAILABILITY = {"topic": str, "payload_available": str, "payload_not_available": str, "value_template": str}
BINARY_SENSOR_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas",
    "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power",
    "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
}  # fmt: skip
SENSOR_UNITS = {
    "duration": {"d", "h", "min", "s", "ms", "µs"},
    "data_size": {"bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB",
                  "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"},
    "sound_pressure": {"dB", "dBA"},
    "timestamp": set(),
}  # fmt: skip
"""Sensor device classes auricle may use, with the units Home Assistant allows for each."""
DEVICE_CLASSES = {
    "binary_sensor": BINARY_SENSOR_CLASSES,
    "sensor": set(SENSOR_UNITS),
    "event": {"button", "doorbell", "motion"},
    "switch": {"outlet", "switch"},
    "button": {"identify", "restart", "update"},
}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
NUMBER_MODES = {"auto", "box", "slider"}
URL_SCHEMES = ("http://", "https://", "homeassistant://")


def problems(component: str, config: dict[str, Any]) -> list[str]:
    """Everything in a discovery config that Home Assistant's schema does not allow."""
    found = _typed(config, PLATFORM[component], component)
    found += [f"{component}: missing {k}" for k in sorted(REQUIRED[component] - set(config))]
    found += _availability(component, config)
    if "device" in config:
        found += _device(config)
    if "origin" in config:
        found += _typed(config["origin"], ORIGIN, "origin")
        found += [] if "name" in config["origin"] else ["origin: missing name"]
    found += _values(component, config)
    if config.get("qos", 0) not in (0, 1, 2):
        found.append("qos must be 0, 1 or 2")
    return found


def _values(component: str, config: dict[str, Any]) -> list[str]:
    found = []
    device_class = config.get("device_class")
    if device_class is not None and device_class not in DEVICE_CLASSES.get(component, set()):
        found.append(f"{component}: unknown device_class {device_class!r}")
    if component == "sensor":
        found += _sensor(config)
    if config.get("entity_category", "config") not in ENTITY_CATEGORIES:
        found.append(f"{component}: unknown entity_category {config['entity_category']!r}")
    if component == "number":
        found += _number(config)
    types = config.get("event_types")
    if component == "event" and (not types or not all(isinstance(x, str) for x in types)):
        found.append("event: event_types must be a non-empty list of strings")
    return found


def _sensor(config: dict[str, Any]) -> list[str]:
    found = []
    if config.get("state_class", "measurement") not in STATE_CLASSES:
        found.append(f"sensor: unknown state_class {config['state_class']!r}")
    units = SENSOR_UNITS.get(config.get("device_class", ""))
    if units is not None and config.get("unit_of_measurement") not in units | {None}:
        unit, device_class = config["unit_of_measurement"], config["device_class"]
        found.append(f"sensor: unit {unit!r} is not one of device_class {device_class!r}")
    if config.get("device_class") == "timestamp" and "state_class" in config:
        found.append("sensor: a timestamp has no state_class")
    return found


def _number(config: dict[str, Any]) -> list[str]:
    found = []
    if config.get("min", 1.0) >= config.get("max", 100.0):
        found.append("number: max must be > min")
    if config.get("step", 1.0) < 1e-3:
        found.append("number: step must be at least 0.001")
    if config.get("mode", "auto") not in NUMBER_MODES:
        found.append(f"number: unknown mode {config['mode']!r}")
    return found


def _availability(component: str, config: dict[str, Any]) -> list[str]:
    found = []
    if "availability" in config and "availability_topic" in config:
        found.append(f"{component}: availability and availability_topic are exclusive")
    for i, entry in enumerate(config.get("availability", [])):
        found += _typed(entry, AVAILABILITY, f"availability[{i}]")
        found += [] if "topic" in entry else [f"availability[{i}]: missing topic"]
    if config.get("availability_mode", "latest") not in ("all", "any", "latest"):
        found.append(f"{component}: unknown availability_mode {config['availability_mode']!r}")
    return found


def _device(config: dict[str, Any]) -> list[str]:
    device = config["device"]
    found = _typed(device, DEVICE, "device")
    if not device.get("identifiers") and not device.get("connections"):
        found.append("device: needs identifiers or connections")
    if "unique_id" not in config:
        found.append("device info only works with a unique_id")
    url = device.get("configuration_url")
    if url is not None and not str(url).startswith(URL_SCHEMES):
        found.append(f"device: configuration_url {url!r} is not an http(s) or homeassistant:// URL")
    return found


def _typed(data: dict[str, Any], allowed: dict[str, type], where: str) -> list[str]:
    found = []
    for key, value in data.items():
        if key not in allowed:
            found.append(f"{where}: undocumented key {key!r}")
        elif not _is(value, allowed[key]):
            found.append(f"{where}: {key} should be {allowed[key].__name__}, got {type(value).__name__}")
    return found


def _is(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:  # Home Assistant coerces numbers
        return isinstance(value, (int, float))
    return isinstance(value, kind)
