"""Real-process test infrastructure: a mosquitto broker and a PulseAudio null sink."""
