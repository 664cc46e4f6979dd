"""The console: readable lines on a terminal, JSON lines in a pipe or with ``--json``."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.daemon import run_on_terminal, tone_wav, write_config
from support.models import tone_bundle

from edge.detect.events import Event
from edge.publish.console import HumanConsole, duration, health_line
from edge.publish.mqtt import make_publisher
from edge.publish.mqttconfig import MqttConfig
from edge.publish.payloads import DeviceInfo
from edge.publish.sinks import ConsoleSink

LINE = re.compile(r"^\d\d:\d\d:\d\d  ")


def _event(kind: str, start: float = 1000.0, end: float | None = None) -> Event:
    return Event(
        id="e1", label="door_wood_knock", kind=kind, start=start, end=end, start_offset_s=1.0,  # type: ignore[arg-type]
        end_offset_s=None if end is None else 1.0 + end - start, peak=0.91, mean=0.8, hops=12,
        t_audio=end or start, offset_s=1.0,
    )  # fmt: skip


def _info() -> DeviceInfo:
    return DeviceInfo(model_name="esc50", model_version="3.0.0", labels=("dog", "door_wood_knock"), sw_version="0")


def test_people_see_one_line_per_start_and_end_and_no_states() -> None:
    out = io.StringIO()
    sink = HumanConsole(MqttConfig(device_id="pi"), stream=out)
    sink.start(_info())
    sink.publish_state("dog", False)
    sink.publish_level(1000.0, 1.0, -40.0)
    sink.publish_scores(1000.0, 1.0, [("dog", 0.9)])
    sink.publish_event(_event("start"))
    sink.publish_event(_event("end", end=1004.25))
    sink.publish_health({"rtf": 0.0042, "cpu_percent": 3.14, "rss_mb": 81.2, "dropped_blocks": 0, "uptime_s": 125})
    sink.close()
    lines = out.getvalue().splitlines()
    assert all(LINE.match(line) for line in lines), lines
    text = [line[10:] for line in lines]
    assert text[0] == "listening with esc50 3.0.0 (2 labels); Ctrl-C stops"
    assert text[1] == "door wood knock started (score 0.91)"
    assert text[2] == "door wood knock ended after 4.2 s (peak 0.91, mean 0.80)"
    assert text[3].startswith("health: real-time factor 0.0042, CPU 3.1%, memory 81 MB, 0 dropped blocks, up 2 min 5 s")
    assert text[4] == "stopped"
    assert len(lines) == 5, "no retained states, levels or scores for people"


def test_problems_are_shown() -> None:
    out = io.StringIO()
    sink = HumanConsole(MqttConfig(device_id="pi"), stream=out)
    sink.publish_status_reason("microphone lost: stream stopped")
    sink.publish_status_reason(None)
    lines = [line[10:] for line in out.getvalue().splitlines()]
    assert lines == ["problem: microphone lost: stream stopped", "recovered: audio is flowing again"]


def test_helpers() -> None:
    assert duration(4.24) == "4.2 s"
    assert duration(185) == "3 min 5 s"
    assert duration(7440) == "2 h 4 min"
    assert "errors" not in health_line({"rtf": 0.01, "errors": 0})
    assert "3 errors" in health_line({"rtf": 0.01, "errors": 3})


def test_choice_of_console() -> None:
    assert isinstance(make_publisher(MqttConfig(), human=True), HumanConsole)
    assert type(make_publisher(MqttConfig(), human=False)) is ConsoleSink


# --- the daemon itself, on a terminal and in a pipe ---------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("console")
    model = tone_bundle(root / "tones.auricle")
    clip = tone_wav(root / "tone.wav")
    data = {
        "model": {"path": str(model)},
        "audio": {"source": "file", "file": str(clip), "realtime": False},
        "events": {"hold_s": 0.2, "disabled": ["quiet"]},
    }
    return write_config(root / "auricle.yaml", data)


def test_daemon_on_a_terminal_prints_for_people(config: Path) -> None:
    lines = run_on_terminal("--config", str(config)).splitlines()
    assert all(LINE.match(line) for line in lines), lines
    assert any(re.search(r"  tone 1000 started \(score [01]\.\d\d\)$", line) for line in lines), lines
    assert any(" tone 1000 ended after " in line for line in lines), lines
    assert not any("state/" in line or line.lstrip().startswith("{") for line in lines)


def test_daemon_with_json_on_a_terminal_prints_json_lines(config: Path) -> None:
    lines = run_on_terminal("--config", str(config), "--json").splitlines()
    messages = [json.loads(line) for line in lines]
    assert any(m["topic"].endswith("/event") and m["payload"]["label"] == "tone_1000" for m in messages)


def test_daemon_in_a_pipe_prints_json_lines(config: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert messages[0]["payload"] == "online"
    assert any(m["topic"].endswith("/state/tone_1000") for m in messages), "retained states in JSON mode, as before"
