"""The daemon's configuration file (YAML), validated once at start-up.

Every section is a frozen dataclass whose fields carry their range and unit
(:func:`edge.schema.setting`); :func:`load_config` turns any mistake into one
line naming the file and the key path.  ``docs/daemon.md`` lists every key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from edge.audio.mic import MicParams
from edge.detect.clips import RecordingParams
from edge.detect.events import EventParams
from edge.publish.mqttconfig import MqttConfig
from edge.schema import ConfigError, build, from_yaml, read_text, setting
from edge.update.checks import Policy


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Policy):
    """Section ``model``: which bundle runs and how (what an update must satisfy is :class:`Policy`)."""

    path: str | None = setting(None, doc="bundle file; null = the shipped default model")
    hop_frames: int | None = setting(
        None, lo=1, hi=4096, unit="frames between inferences; null = bundle's", aliases=("inference_hop",)
    )
    state_dir: str = setting(
        "/var/lib/auricle/models", doc="installed models (over the air); its active model wins over model.path"
    )


@dataclass(frozen=True, kw_only=True)
class AudioConfig(MicParams):
    """Section ``audio``: where samples come from (the microphone's settings are :class:`MicParams`)."""

    source: Literal["auto", "mic", "file", "stdin"] = setting(
        "auto", doc="auto = the microphone when there is one, else the generated demo clip"
    )
    file: str | None = setting(None, doc="audio file for source 'file' (WAV, or FLAC/OGG with soundfile)")
    realtime: bool = setting(True, doc="file source: pace at real time (false = as fast as possible)")
    loop: bool = setting(False, doc="file source: start again at the end")
    stdin_rate_hz: int = setting(16000, lo=1000, hi=384000, unit="Hz of s16le mono PCM on stdin")
    gate_dbfs: float | None = setting(None, lo=-200.0, hi=0.0, unit="dBFS; hops quieter skip inference; null = off")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source == "file" and not self.file:
            raise ValueError("source 'file' needs audio.file")


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole daemon configuration (the top level of the YAML file)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    events: EventParams = field(default_factory=EventParams)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    recording: RecordingParams = field(default_factory=RecordingParams)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting("INFO", doc="logging threshold")


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate the config file; None gives the built-in defaults."""
    if path is None:
        return Config()
    return parse_config(read_text(path), str(path))


def parse_config(text: str, name: str) -> Config:
    """Validate YAML text; errors name ``name`` (the file) and the key path or line."""
    return from_yaml(Config, text, name)


def broker_section(path: str | os.PathLike[str]) -> MqttConfig | None:
    """The file's ``mqtt`` section alone, for a file whose other sections are wrong: the daemon can still
    tell the broker why it does not start.  None when that section is unreadable too, or names no broker."""
    import yaml

    try:
        data = yaml.safe_load(read_text(path))
        section = data.get("mqtt") if isinstance(data, dict) else None
        mqtt = build(MqttConfig, section, str(path), "mqtt")
    except (ConfigError, yaml.YAMLError):
        return None
    return mqtt if mqtt.host is not None else None
