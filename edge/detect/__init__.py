"""From blocks of audio to events: the streaming pipeline, event logic, the set command, the clip recorder,
probation (a new model's first minutes, watched) and stats.

May import the core and model/; never MQTT, never update/."""
