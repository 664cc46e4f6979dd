"""Black-box tests of ``auricle run`` as a subprocess against a real mosquitto."""

from __future__ import annotations

import json
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.daemon import Daemon, tone_wav, wait_until, write_config
from support.ha_schema import problems
from support.models import tone_bundle

from edge.audio.demo import write_wav
from kit.broker import Message, Mosquitto, Subscriber

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_bundle(tmp_path_factory.mktemp("model") / "tones.auricle")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_wav(tmp_path_factory.mktemp("audio") / "tone.wav")


def _config(
    tmp_path: Path, model: Path, clip: Path, broker: Mosquitto | None, reconnect_s: int = 1, **audio: Any
) -> tuple[Path, str]:
    device = f"t{uuid.uuid4().hex[:8]}"
    data: dict[str, Any] = {
        "model": {"path": str(model)},
        "audio": {"source": "file", "file": str(clip), "realtime": True, "loop": True, **audio},
        "events": {"hold_s": 0.2},
        "mqtt": {"device_id": device, "health_interval_s": 1},
    }
    if broker is not None:
        data["mqtt"] |= {
            "host": broker.host,
            "port": broker.port,
            "reconnect_min_s": reconnect_s,
            "reconnect_max_s": reconnect_s,
        }
    return write_config(tmp_path / "auricle.yaml", data), device


def _is_event(label: str, kind: str) -> Callable[[Message], bool]:
    def match(m: Message) -> bool:
        if not m.topic.endswith("/event"):
            return False
        data = json.loads(m.payload)
        return bool(data["label"] == label and data["kind"] == kind)

    return match


def test_tone_event_over_mqtt_then_clean_stop(
    tmp_path: Path, model: Path, clip: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    config, device = _config(tmp_path, model, clip, mosquitto)
    sub = subscriber_factory(f"auricle/{device}/#")
    with Daemon(config) as daemon:
        sub.wait_for(lambda m: m.topic.endswith("/status") and m.payload == b"online", 30, "online")
        start = sub.wait_for(_is_event("tone_1000", "start"), 15, "tone_1000 start")
        event = json.loads(start.payload)
        assert event["schema"] == 2
        assert 0.0 <= event["start_offset_s"] <= event["offset_s"]
        assert event["model_version"] == "0.1.0"
        assert 0.5 <= event["peak"] <= 1.0
        sub.wait_for(lambda m: m.topic == f"auricle/{device}/state/tone_1000" and m.payload == b"ON", 5, "state ON")
        health = json.loads(sub.wait_for_topic(f"auricle/{device}/health", 10).payload)
        assert health["hops"] > 0
        assert health["errors"] == 0
        assert 0 < health["rtf"] < 0.5
        assert daemon.terminate(15) == 0
    sub.wait_for(lambda m: m.topic.endswith("/status") and m.payload == b"offline", 5, "offline")


def test_the_event_entity_fires_once_per_sound_not_per_repeat(
    tmp_path: Path, model: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    rate = 16000
    t = np.arange(5 * rate) / rate
    tones = ((t >= 0.8) & (t < 1.6)) | ((t >= 3.0) & (t < 3.8))  # two 1 kHz sounds, 1.4 s apart
    clip = tmp_path / "two.wav"
    write_wav(clip, np.where(tones, 0.3 * np.sin(2 * np.pi * 1000 * t), 0.001 * np.sin(2 * np.pi * 50 * t)))
    config, device = _config(tmp_path, model, clip, mosquitto, loop=False)
    sub = subscriber_factory("#")
    with Daemon(config) as daemon:
        assert daemon.wait(60) == 0  # the end of the file ends the daemon
    entity = json.loads(sub.wait_for_topic(f"homeassistant/event/{device}/sound/config").payload)
    assert problems("event", entity) == []
    assert entity["state_topic"] == f"auricle/{device}/sound" and "tone_1000" in entity["event_types"]
    tone = json.loads(sub.wait_for_topic(f"homeassistant/binary_sensor/{device}/tone_1000/config").payload)
    assert tone["enabled_by_default"] is True  # a model of its own (no ESC-50 alert label): every label shows
    assert sub.wait_for_topic(f"auricle/{device}/threshold/tone_1000").payload == b"0.5"  # the bundle's
    assert sub.wait_for_topic(f"auricle/{device}/listen/tone_1000").payload == b"ON"
    sub.wait_for(lambda m: m.topic == f"auricle/{device}/status" and m.payload == b"offline", 5, "offline")
    events = [json.loads(m.payload) for m in sub.messages(f"auricle/{device}/event")]
    sounds = [json.loads(m.payload) for m in sub.messages(f"auricle/{device}/sound")]
    assert not any(m.retain for m in sub.messages(f"auricle/{device}/sound"))
    starts = [e for e in events if e["kind"] == "start"]
    assert [(s["event_type"], s["id"], s["score"]) for s in sounds] == [
        (e["label"], e["id"], e["peak"]) for e in starts if not e["repeat"]
    ]
    tone_events = [e for e in starts if e["label"] == "tone_1000"]
    assert [(round(e["start_offset_s"]), e["repeat"]) for e in tone_events] == [(1, False), (3, True)]
    tone_starts = [s for s in sounds if s["event_type"] == "tone_1000"]
    # one Sound event however long the sound lasts, and none for its repeat within events.rearm_s
    assert [round(s["start_offset_s"]) for s in tone_starts] == [1], sounds
    assert all(s["name"] == "Tone 1000" and s["schema"] == 2 for s in tone_starts)


def test_lwt_offline_when_killed(
    tmp_path: Path, model: Path, clip: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    config, device = _config(tmp_path, model, clip, mosquitto)
    sub = subscriber_factory(f"auricle/{device}/status")
    with Daemon(config) as daemon:
        sub.wait_for(lambda m: m.payload == b"online", 30, "online")
        daemon.kill()
    sub.wait_for(lambda m: m.payload == b"offline", 10, "offline (last will)")
    late = subscriber_factory(f"auricle/{device}/status")
    retained = late.wait_for(lambda m: m.retain, 5, "retained status")
    assert retained.payload == b"offline"


def test_broker_restart_mid_run(
    tmp_path: Path, model: Path, clip: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    # Reconnect attempts 3 s apart: one fails during the 4 s outage, the next comes
    # ~2 s after the restart, so the new subscriber is listening before the flush.
    config, device = _config(tmp_path, model, clip, mosquitto, reconnect_s=3)
    sub = subscriber_factory(f"auricle/{device}/event")
    with Daemon(config) as daemon:
        sub.wait_for(_is_event("tone_1000", "start"), 30, "first tone_1000 start")
        mosquitto.stop()
        outage_from = time.time()
        time.sleep(4.0)  # the 3 s clip loops: at least one tone starts and ends while the broker is away
        outage_to = time.time()
        mosquitto.start()
        after = subscriber_factory(f"auricle/{device}/event")

        def during_outage(m: Message) -> bool:
            return outage_from <= json.loads(m.payload)["t_audio"] <= outage_to

        buffered = after.wait_for(during_outage, 15, "an event produced during the outage")
        assert buffered.wall_s > outage_to
        after.wait_for(lambda m: _is_event("tone_1000", "start")(m) and m.wall_s > outage_to + 3, 15, "fresh events")
        assert daemon.proc is not None and daemon.proc.poll() is None  # it never stopped classifying
        assert daemon.terminate(15) == 0
    assert "Traceback" not in daemon.stderr


def test_console_sink_prints_detections(tmp_path: Path, model: Path, clip: Path) -> None:
    config, device = _config(tmp_path, model, clip, None, realtime=False, loop=False)
    daemon = Daemon(config).start()
    assert daemon.wait(60) == 0
    lines = [json.loads(line) for line in daemon.stdout.splitlines()]
    events = [x["payload"] for x in lines if x["topic"] == f"auricle/{device}/event"]
    assert ("tone_1000", "start") in {(e["label"], e["kind"]) for e in events}
    assert lines[-1] == {"topic": f"auricle/{device}/status", "retain": True, "payload": "offline"}


def test_bad_bundle_exits_2_with_one_line(tmp_path: Path, model: Path, clip: Path) -> None:
    bad = tmp_path / "bad.auricle"
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "manifest.json":
                manifest = json.loads(data)
                manifest["features"]["n_fft"] = 1024  # params the fingerprint does not cover
                data = json.dumps(manifest).encode()
            dst.writestr(name, data)
    config, _ = _config(tmp_path, bad, clip, None)
    daemon = Daemon(config).start()
    assert daemon.wait(60) == 2
    lines = daemon.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"auricle: {bad}: manifest.json: features: parameters this front end cannot reproduce")


def test_missing_audio_file_exits_2(tmp_path: Path, model: Path) -> None:
    config, _ = _config(tmp_path, model, tmp_path / "nope.wav", None)
    daemon = Daemon(config).start()
    assert daemon.wait(60) == 2
    assert daemon.stderr.strip().splitlines()[-1].startswith(f"auricle: {tmp_path / 'nope.wav'}: cannot read audio")


def test_sigterm_stops_within_bounded_time(tmp_path: Path, model: Path, clip: Path) -> None:
    config, device = _config(tmp_path, model, clip, None)
    with Daemon(config) as daemon:
        wait_until(lambda: f'"auricle/{device}/status"' in daemon.stdout, 30, "online on the console")
        began = time.monotonic()
        assert daemon.terminate(15) == 0
        assert time.monotonic() - began < 8.0


def test_sigusr1_writes_every_threads_stack_and_the_daemon_goes_on(tmp_path: Path, model: Path, clip: Path) -> None:
    """What an operator does with a daemon that seems stuck: ``systemctl kill -s USR1 auricle``."""
    config, device = _config(tmp_path, model, clip, None)
    with Daemon(config) as daemon:
        wait_until(lambda: f'"auricle/{device}/status"' in daemon.stdout, 30, "online on the console")
        log = daemon.dump_stacks()
        assert "most recent call first" in log, log[-2000:]
        assert "service.py" in log  # the main thread, waiting in the service's loop
        assert daemon.running, "the dump must not stop the daemon"
        seen = len(daemon.stdout)
        wait_until(lambda: len(daemon.stdout) > seen, 10, "more output after the dump")
        assert daemon.terminate(15) == 0
