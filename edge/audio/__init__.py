"""Audio in: sources (file, stdin, microphone), resampling and the demo clip.

May import the core (features, scales, schema) only: no model, no MQTT."""
