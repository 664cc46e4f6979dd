"""Real processes for tests and benchmarks: a mosquitto broker on a loopback port (broker.py), a private
PulseAudio daemon with a null sink and its recorder (pulse.py, record.py), and their shared life cycle
(process.py); a real Home Assistant through the shared tools/ha scripts and its REST API (homeassistant.py).

Imported as ``kit.*`` by tests/ (its fixtures, tests/conftest.py) and bench/; it may import edge/ and
nothing of tests/ or bench/.  The device never imports it (pyproject.toml's contracts)."""
