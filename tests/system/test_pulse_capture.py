"""The real audio path: PulseAudio null sink -> monitor -> sounddevice -> daemon -> MQTT."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from support.daemon import Daemon, tone_wav, write_config
from support.models import tone_bundle

from kit.broker import Mosquitto, Subscriber
from kit.pulse import PulseAudio

pytestmark = pytest.mark.integration


def test_devices_lists_pulse(pulse: PulseAudio) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge", "devices"],
        capture_output=True,
        text=True,
        timeout=60,
        env=pulse.subprocess_env(),
    )
    assert done.returncode == 0, done.stderr
    assert "pulse" in done.stdout.split("\n", 1)[1]


def test_devices_says_when_there_are_none(tmp_path: Path) -> None:
    # no sound server reachable: ALSA's pulse plugin finds nothing and this machine has no cards
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(tmp_path), "PULSE_SERVER": f"unix:{tmp_path}/none"}
    done = subprocess.run(
        [sys.executable, "-m", "edge", "devices"], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 1
    assert "no input devices" in (done.stdout + done.stderr)


def test_tone_played_into_sink_is_detected_over_mqtt(
    tmp_path: Path, pulse: PulseAudio, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    model = tone_bundle(tmp_path / "tones.auricle")
    clip = tone_wav(tmp_path / "tone.wav", seconds=2.0, tone_s=(0.0, 2.0))
    device = f"p{uuid.uuid4().hex[:8]}"
    config = write_config(
        tmp_path / "auricle.yaml",
        {
            "model": {"path": str(model)},
            "audio": {"source": "mic", "device": "pulse", "block_samples": 800},
            "events": {"hold_s": 0.2},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "device_id": device, "health_interval_s": 1},
        },
    )
    sub = subscriber_factory(f"auricle/{device}/#")
    with Daemon(config, env=pulse.subprocess_env()) as daemon:

        def capturing(m: object) -> bool:
            topic = getattr(m, "topic", "")
            return topic.endswith("/health") and json.loads(getattr(m, "payload", b"{}"))["audio_s"] > 0.5

        sub.wait_for(capturing, 30, "health showing captured audio")
        assert not sub.messages(f"auricle/{device}/event") or all(
            json.loads(m.payload)["label"] != "tone_1000" for m in sub.messages(f"auricle/{device}/event")
        )
        pulse.play(clip)
        start = sub.wait_for(
            lambda m: m.topic.endswith("/event") and json.loads(m.payload)["label"] == "tone_1000", 10, "tone_1000"
        )
        assert json.loads(start.payload)["kind"] == "start"
        health = json.loads(sub.wait_for(lambda m: m.topic.endswith("/health") and m.wall_s > start.wall_s, 5).payload)
        assert health["dropped_blocks"] == 0
        assert daemon.terminate(15) == 0, daemon.stderr[-2000:]


def test_microphone_lost_is_reported_and_reopened(
    tmp_path: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    """The sound server dies under the daemon (a USB mic pulled out, as far as it can tell):
    the reason is published, the stream is reopened with backoff, and audio flows again."""
    model = tone_bundle(tmp_path / "tones.auricle")
    device = f"u{uuid.uuid4().hex[:8]}"
    config = write_config(
        tmp_path / "auricle.yaml",
        {
            "model": {"path": str(model)},
            "audio": {"source": "mic", "device": "pulse", "stall_s": 1.0, "reopen_min_s": 0.2, "reopen_max_s": 1.0},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "device_id": device, "health_interval_s": 1},
        },
    )
    sub = subscriber_factory(f"auricle/{device}/#")

    def audio_s(m: object) -> float:
        if not getattr(m, "topic", "").endswith("/health"):
            return -1.0
        return float(json.loads(getattr(m, "payload", b"{}"))["audio_s"])

    with PulseAudio() as own, Daemon(config, env=own.subprocess_env()) as daemon:
        before = sub.wait_for(lambda m: audio_s(m) > 0.5, 30, "audio captured")
        own.stop()
        reason = sub.wait_for(  # the reason is null (cleared) on connect; wait for the one the loss sets
            lambda m: m.topic.endswith("/status/reason") and bool(json.loads(m.payload)["reason"]),
            15,
            "microphone status reason",
        )
        assert "microphone" in reason.text
        own.start()
        after = sub.wait_for(
            lambda m: m.wall_s > reason.wall_s and audio_s(m) > audio_s(before) + 1.0, 30, "audio again"
        )
        health = json.loads(after.payload)
        assert health["reopens"] >= 1, health
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert daemon.terminate(15) == 0, daemon.stderr[-2000:]
