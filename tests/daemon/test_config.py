"""The daemon's YAML config: defaults, one-line errors, and the CLI's exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.shared import ROOT

from edge.daemon.config import Config, load_config, parse_config
from edge.schema import ConfigError, describe


def test_no_file_gives_defaults() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.audio.source == "auto"
    assert config.model.path is None
    assert config.mqtt.host is None  # console sink


def test_full_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "auricle.yaml"
    path.write_text(
        "model: {path: m.auricle, threads: 2, inference_hop: 4}\n"
        "audio: {source: mic, device: 2, gate_dbfs: -60}\n"
        "events: {thresholds: {dog: 0.7}, hold_s: 2}\n"
        "mqtt: {host: broker.local, port: 8883}\n"
        "recording: {enabled: true, dir: /tmp/clips}\n"
        "log_level: DEBUG\n"
    )
    config = load_config(path)
    assert config.model.hop_frames == 4
    assert config.audio.device == 2
    assert config.audio.gate_dbfs == -60.0
    assert config.events.thresholds == {"dog": 0.7}
    assert config.mqtt.port == 8883
    assert config.recording.enabled


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("audio: {gate_dbfs: 3}", "cfg.yaml: audio.gate_dbfs: expected a number -200..0"),
        ("model: {threads: 'many'}", "cfg.yaml: model.threads: expected an integer 1..16"),
        ("model: {kernels: gpu}", "cfg.yaml: model.kernels: expected one of 'xnnpack', 'builtin', got 'gpu'"),
        ("audoi: {}", "cfg.yaml: audoi: unknown key (did you mean 'audio'?)"),
        ("audio: {source: file}", "cfg.yaml: audio: source 'file' needs audio.file"),
        ("audio: {device: [1, 2]}", "cfg.yaml: audio: device: expected a name or an index"),
        ("mqtt: {port: 70000}", "cfg.yaml: mqtt.port: expected an integer 1..65535"),
        ("events: {hold_s: -1}", "cfg.yaml: events.hold_s: expected a number 0..3600"),
        ("- just\n- a list", "cfg.yaml: <top>: expected a mapping"),
        ("audio:\n  source: mic\n bad: indent", "cfg.yaml: line 3, column 2: invalid YAML"),
    ],
)
def test_bad_config_is_one_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.yaml")
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read: No such file"):
        load_config(tmp_path / "nope.yaml")


def test_docs_list_every_key() -> None:
    doc = (ROOT / "docs" / "daemon.md").read_text()
    missing = [
        key
        for key, default, what in describe(Config)
        if (f"| `{key}` | `{json.dumps(default)}` | {what} |" not in doc and default is not None)
        or f"| `{key}` |" not in doc
        or what not in doc
    ]
    assert not missing, f"docs/daemon.md lacks {missing}"


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("audio: {realtime: maybe}\n")
    done = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"auricle: {path}: audio.realtime: expected a boolean, got 'maybe'"


def test_example_config_is_valid() -> None:

    from edge.daemon.config import ModelConfig, load_config

    example = ROOT / "deploy" / "config.example.yaml"
    config = load_config(example)
    assert config.mqtt.host == "127.0.0.1"
    assert config.recording.dir == "/var/lib/auricle/clips"
    assert config.model == ModelConfig()  # the model section shows the defaults, updates included


def test_example_config_shows_every_model_setting() -> None:
    import dataclasses

    import yaml

    from edge.daemon.config import ModelConfig

    example = ROOT / "deploy" / "config.example.yaml"
    shown = yaml.safe_load(example.read_text(encoding="utf-8"))["model"]
    assert set(shown) == {f.name for f in dataclasses.fields(ModelConfig)}


def test_renamed_key_reads_under_both_names_but_not_twice(tmp_path: Path) -> None:
    path = tmp_path / "auricle.yaml"
    path.write_text("model: {hop_frames: 7}\n")
    assert load_config(path).model.hop_frames == 7
    path.write_text("model: {hop_frames: 7, inference_hop: 4}\n")
    with pytest.raises(ConfigError, match=r"model\.hop_frames: given twice \(as hop_frames and inference_hop\)"):
        load_config(path)
