"""Where events and health go: MQTT (client, payloads, Home Assistant discovery), console and JSON sinks.

May import the core, detect/ and model/; the only room (with cli/push.py) that imports paho."""
