"""The test infrastructure itself, against a real mosquitto and a real PulseAudio; each helper under one name."""

from __future__ import annotations

import queue
import re
import sys
import uuid
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt
import pytest
from support.shared import ROOT

from kit.broker import Mosquitto, Subscriber, drop_connection, find_binary, new_client, publish
from kit.pulse import PulseAudio, Recorder

pytestmark = pytest.mark.integration

SubscriberFactory = Callable[..., Subscriber]


@pytest.fixture
def base_topic() -> str:
    """A topic prefix no other test uses, so retained messages do not leak between tests."""
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def connections(mosquitto: Mosquitto) -> Iterator[tuple[mqtt.Client, queue.Queue[str]]]:
    """A paho client and a queue of its 'connected'/'disconnected' events."""
    events: queue.Queue[str] = queue.Queue(maxsize=100)
    client = new_client()
    client.on_connect = lambda *_a: events.put_nowait("connected")
    client.on_disconnect = lambda *_a: events.put_nowait("disconnected")
    yield client, events
    client.disconnect()
    client.loop_stop()


def _connect(client: mqtt.Client, events: queue.Queue[str], broker: Mosquitto) -> None:
    client.connect_async(broker.host, broker.port)
    client.loop_start()
    assert events.get(timeout=10) == "connected"


def test_each_helper_module_has_one_name() -> None:
    """``support.*`` (pytest puts tests/ on the path) and ``kit.*``, never ``tests.support.*``: a second name
    loads a module twice, with two copies of its state; and bench/ and kit/ import nothing of tests/."""
    pattern = {"tests": r"^\s*(from|import) tests\.support\b", "bench": r"^\s*(from|import) (tests|support)\b"}
    pattern["kit"] = pattern["bench"]
    found = [
        str(path.relative_to(ROOT))
        for folder, wrong in pattern.items()
        for path in sorted((ROOT / folder).rglob("*.py"))
        if re.search(wrong, path.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert not found, f"imported under another name: {found}"
    assert not [name for name in sys.modules if name.startswith("tests.support")]


def test_missing_binary_names_setup_script() -> None:
    with pytest.raises(FileNotFoundError, match=r"deploy/setup\.sh"):
        find_binary("auricle-no-such-binary")


def test_retained_message_and_last_will(
    mosquitto: Mosquitto,
    subscriber_factory: SubscriberFactory,
    connections: tuple[mqtt.Client, queue.Queue[str]],
    base_topic: str,
) -> None:
    state, availability = f"{base_topic}/state", f"{base_topic}/availability"
    publish(mosquitto.host, mosquitto.port, state, "on", retain=True)
    subscriber = subscriber_factory(f"{base_topic}/#")
    retained = subscriber.wait_for_topic(state)
    assert (retained.payload, retained.retain) == (b"on", True)

    client, events = connections
    client.will_set(availability, "offline", qos=1, retain=True)
    _connect(client, events, mosquitto)
    client.publish(availability, "online", qos=1, retain=True).wait_for_publish(5)
    subscriber.wait_for(lambda m: m.topic == availability and m.text == "online")

    drop_connection(client)
    will = subscriber.wait_for(lambda m: m.topic == availability and m.text == "offline")
    assert not will.retain, "MQTT 3.1.1 delivers live messages with retain=0"
    late = subscriber_factory(availability).wait_for_topic(availability)
    assert (late.payload, late.retain) == (b"offline", True)


def test_client_reconnects_after_broker_restart(
    mosquitto: Mosquitto,
    subscriber_factory: SubscriberFactory,
    connections: tuple[mqtt.Client, queue.Queue[str]],
    base_topic: str,
) -> None:
    subscriber = subscriber_factory(f"{base_topic}/#")
    client, events = connections
    _connect(client, events, mosquitto)
    port = mosquitto.port
    try:
        mosquitto.stop()
        assert events.get(timeout=10) == "disconnected"
    finally:
        mosquitto.start()
    assert mosquitto.port == port
    assert events.get(timeout=10) == "connected"
    subscriber.wait_subscribed(timeout_s=10)
    client.publish(f"{base_topic}/after", "back", qos=1).wait_for_publish(5)
    assert subscriber.wait_for_topic(f"{base_topic}/after").text == "back"


def _write_tone(path: Path, *, hz: float, amplitude: float, seconds: float, rate: int) -> Path:
    t = np.arange(round(seconds * rate)) / rate
    pcm = np.round(amplitude * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return path


def _window_rms(samples: npt.NDArray[np.float32], window: int) -> npt.NDArray[np.float64]:
    frames = samples[: len(samples) // window * window].astype(np.float64)
    rms: npt.NDArray[np.float64] = np.sqrt(np.mean(frames.reshape(-1, window) ** 2, axis=1))
    return rms


def test_null_sink_monitor_records_played_tone(pulse: PulseAudio, tmp_path: Path) -> None:
    rate, hz, amplitude, seconds = 16000, 1000.0, 0.5, 1.0
    tone = _write_tone(tmp_path / "tone.wav", hz=hz, amplitude=amplitude, seconds=seconds, rate=rate)
    with Recorder(pulse.subprocess_env(), tmp_path / "rec.npy", duration_s=2.0, rate_hz=rate) as rec:
        pulse.play(tone)
    recording = rec.result()
    assert recording.stats["status_flags"] == 0
    assert recording.stats["first_callback_s"] < 1.0, "monitor idle: warm-up/loopback not working"

    samples = recording.samples[:, 0]
    window = rate // 100
    rms = _window_rms(samples, window)
    loud = np.flatnonzero(rms > amplitude / np.sqrt(2) / 2)
    assert len(loud) * window / rate == pytest.approx(seconds, abs=0.03), "tone length"
    segment = samples[(loud[0] + 1) * window : loud[-1] * window]
    assert np.sqrt(np.mean(segment.astype(np.float64) ** 2)) == pytest.approx(amplitude / np.sqrt(2), rel=0.02)
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    freqs = np.fft.rfftfreq(len(segment), 1 / rate)
    assert freqs[np.argmax(spectrum)] == pytest.approx(hz, abs=2 * rate / len(segment))
    near = np.abs(freqs - hz) < 50
    assert np.sum(spectrum[near] ** 2) / np.sum(spectrum**2) > 0.99, "energy off the tone"
