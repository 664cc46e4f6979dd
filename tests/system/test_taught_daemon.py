"""A taught sound in the running daemon (a subprocess on the shipped model, a real mosquitto): it is announced to
Home Assistant and raises events, it survives a restart, a teach while the daemon runs is picked up between hops,
and an update refits the heads before the new model goes live."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
from support.daemon import Daemon, write_config
from support.shared import shared_dir

from edge.audio.demo import write_wav
from kit.broker import Mosquitto, Subscriber

pytestmark = pytest.mark.integration
ESC50 = shared_dir() / "data" / "esc50"
OLD_MODEL = Path(__file__).resolve().parents[1] / "data" / "esc50-4.1.0.auricle"
"""The shipped model before 5.0.0 (the same blob as git's history holds): what devices in the field run."""


def _clips(category: str, fold: int, n: int) -> list[Path]:
    with (ESC50 / "esc50.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["category"] == category and r["fold"] == str(fold)]
    return [ESC50 / "audio" / r["filename"] for r in rows[:n]]


def _teach(config: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "edge", "teach", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture
def device(
    tmp_path: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> tuple[Path, str, Subscriber]:
    """A config for the shipped model whose source loops a withheld rooster recording and 3 s of quiet."""
    samples, rate = soundfile.read(_clips("rooster", 2, 1)[0])
    write_wav(tmp_path / "rooster.wav", np.concatenate([samples, np.zeros(3 * rate)]), rate)
    device_id = f"t{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path / "auricle.yaml", {
        "model": {"state_dir": str(tmp_path / "state")},
        "audio": {"source": "file", "file": str(tmp_path / "rooster.wav"), "loop": True},
        "mqtt": {"device_id": device_id, "host": mosquitto.host, "port": mosquitto.port},
    })  # fmt: skip
    return config, device_id, subscriber_factory("#")


def _announced(sub: Subscriber, device_id: str, label: str, timeout_s: float) -> dict[str, object]:
    topic = f"homeassistant/binary_sensor/{device_id}/{label}/config"
    message = sub.wait_for(lambda m: m.topic == topic and bool(m.payload), timeout_s, f"{label} announced")
    config: dict[str, object] = json.loads(message.payload)
    return config


def _event(sub: Subscriber, device_id: str, label: str, timeout_s: float) -> dict[str, object]:
    topic = f"auricle/{device_id}/event"
    message = sub.wait_for(
        lambda m: m.topic == topic and json.loads(m.payload).get("label") == label, timeout_s, f"a {label} event"
    )
    event: dict[str, object] = json.loads(message.payload)
    return event


def test_a_taught_sound_is_announced_raises_events_and_survives_a_restart(
    device: tuple[Path, str, Subscriber],
) -> None:
    config, device_id, sub = device
    _teach(config, "my_rooster", *map(str, _clips("rooster", 1, 5)))
    for _run in range(2):
        sub.clear()
        with Daemon(config) as daemon:
            entity = _announced(sub, device_id, "my_rooster", 30)
            assert entity.get("enabled_by_default", True) is not False  # a taught sound is listened for
            _event(sub, device_id, "my_rooster", 40)
            assert daemon.terminate() == 0, daemon.stderr


def test_a_teach_while_running_is_picked_up(device: tuple[Path, str, Subscriber]) -> None:
    config, device_id, sub = device
    with Daemon(config) as daemon:
        sub.wait_for(lambda m: m.topic == f"auricle/{device_id}/status" and m.payload == b"online", 30, "online")
        _teach(config, "my_rooster", *map(str, _clips("rooster", 1, 5)))
        _announced(sub, device_id, "my_rooster", 20)
        _event(sub, device_id, "my_rooster", 40)
        assert "heads reloaded" in daemon.stderr
        assert daemon.terminate() == 0, daemon.stderr


def test_an_update_refits_the_heads_before_the_new_model_goes_live(
    device: tuple[Path, str, Subscriber], tmp_path: Path, mosquitto: Mosquitto
) -> None:
    import yaml
    from support.ota import answer, edit_manifest, keypair, members, resign, rezip

    from edge.daemon.startup import default_model_path
    from edge.model import bundle
    from kit.broker import publish

    config, device_id, sub = device
    private, public = keypair(tmp_path, "update")
    first_model = tmp_path / "esc50-4.1.0.auricle"  # a device taught on 4.1.0 ...
    first_model.write_bytes(rezip(resign(members(OLD_MODEL), private)))
    data = yaml.safe_load(config.read_text())
    data["model"] |= {"public_key": str(public), "path": str(first_model)}
    write_config(config, data)
    _teach(config, "my_rooster", *map(str, _clips("rooster", 1, 5)))

    def version(source: Path, new: str) -> bytes:
        return rezip(resign(edit_manifest(members(source), lambda m: m.update(version=new)), private))

    shipped_version = bundle.read_bundle(default_model_path()).manifest.version
    newer = version(Path(default_model_path()), shipped_version)  # ... takes the shipped model (5.0.0) over the air
    no_embedding = version(Path("tests/data/esc50-3.0.0.auricle").resolve(), "9.0.0")
    with Daemon(config) as daemon:
        _event(sub, device_id, "my_rooster", 40)
        publish(mosquitto.host, mosquitto.port, f"auricle/{device_id}/model/install", newer)
        done = answer(sub, device_id, bundle.sha256(newer), 60)
        assert done["last"]["result"] == "installed", done["last"]["reason"]
        assert done["active"]["version"] == shipped_version, done
        assert "personal heads refit: my_rooster" in done["last"]["reason"], done
        taught = tmp_path / "state" / "taught"
        assert (taught / f"heads-{bundle.sha256(newer)[:12]}.json").is_file()
        sub.clear()
        _event(sub, device_id, "my_rooster", 40)  # the new model's heads

        publish(mosquitto.host, mosquitto.port, f"auricle/{device_id}/model/install", no_embedding)
        done = answer(sub, device_id, bundle.sha256(no_embedding), 60)
        assert done["last"]["result"] == "installed", done
        assert "personal heads NOT refit" in done["last"]["reason"], done  # said, not silently dropped
        kept = sorted(p.name for p in taught.glob("heads-*.json"))  # the models still on the device keep theirs
        first = bundle.sha256(first_model.read_bytes())
        assert kept == sorted(f"heads-{sha[:12]}.json" for sha in (first, bundle.sha256(newer))), kept
        assert "has no embedding output" in daemon.stderr
        assert daemon.terminate() == 0, daemon.stderr


def test_a_replay_after_teaching_gives_the_live_daemons_events(tmp_path: Path) -> None:
    """``auricle classify --events`` with the state dir's heads equals the daemon on the same stream."""
    parts = [soundfile.read(p)[0] for p in (*_clips("rooster", 2, 2), *_clips("dog", 2, 1), *_clips("cat", 2, 1))]
    stream = tmp_path / "stream.wav"
    write_wav(stream, np.concatenate([np.r_[x, np.zeros(16000)] for x in parts]), 16000)
    config = write_config(tmp_path / "auricle.yaml", {
        "model": {"state_dir": str(tmp_path / "state")},
        "audio": {"source": "file", "file": str(tmp_path / "stream.wav"), "realtime": False},
        "events": {"listening": "all"},
    })  # fmt: skip
    _teach(config, "my_rooster", *map(str, _clips("rooster", 1, 5)))
    _teach(config, "--not", "cat", *map(str, _clips("cat", 1, 3)))
    live = subprocess.run([sys.executable, "-m", "edge", "run", "--json", "-c", str(config)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert live.returncode == 0, live.stderr
    heard = []
    for line in live.stdout.splitlines():
        message = json.loads(line)
        if message["topic"].endswith("/event") and message["payload"]["kind"] == "end":
            heard.append((message["payload"]["label"], round(message["payload"]["start_offset_s"], 3)))
    replay = subprocess.run(
        [sys.executable, "-m", "edge", "classify", "--events", "--json", "-c", str(config), str(stream)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    replayed = [(r["label"], r["start_s"]) for r in map(json.loads, replay.stdout.splitlines()) if "label" in r]
    assert "my_rooster" in {x for x, _ in heard} and sorted(heard) == sorted(replayed), (heard, replayed)
