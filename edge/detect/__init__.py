"""From spectrogram windows to events: the streaming pipeline, event logic, per-label controls and stats.

May import the core and model/; never MQTT, never update/."""
