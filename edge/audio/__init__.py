"""Audio in: sources (file, stdin, microphone), resampling, the recorder and the demo clip.

May import the core (features, scales, schema) only: no model, no MQTT."""
