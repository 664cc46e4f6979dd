"""Thresholds from a false-alarm budget, and the false alarms they leave, counted through the daemon's own
pipeline and event logic: the streams, the search, its result, the replay of audio, mixtures.

May import data/ and edge; never a Keras model, never fit/ or evaluate/."""
