"""Config mapping: every class of bad input gets one line naming source, key path and expectation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from edge.features import FeatureParams
from edge.schema import ConfigError, build, describe, setting, to_data


@dataclass(frozen=True, kw_only=True)
class Broker:
    host: str | None = None
    port: int = setting(1883, lo=1, hi=65535, unit="TCP port")
    qos: Literal[0, 1, 2] = 0


@dataclass(frozen=True, kw_only=True)
class Sample:
    broker: Broker = field(default_factory=Broker)
    gain_db: float = setting(0.0, lo=-40, hi=40, unit="dB")
    enabled: bool = True
    labels: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    features: FeatureParams = field(default_factory=FeatureParams)


def _error(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        build(Sample, data, "config.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("config.yaml: ")
    return message


def test_defaults_work() -> None:
    assert build(Sample, None, "x") == Sample()
    assert build(Sample, {}, "x") == Sample()


def test_values_are_converted() -> None:
    cfg = build(Sample, {"broker": {"port": 8883, "qos": 1}, "gain_db": 3, "labels": ["a", "b"]}, "x")
    assert cfg.broker.port == 8883 and cfg.broker.qos == 1
    assert cfg.gain_db == 3.0 and isinstance(cfg.gain_db, float)
    assert cfg.labels == ("a", "b")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"broker": {"port": "abc"}}, "config.yaml: broker.port: expected an integer 1..65535 (TCP port), got 'abc'"),
        ({"broker": {"port": 0}}, "config.yaml: broker.port: expected an integer 1..65535 (TCP port), got 0"),
        ({"broker": {"port": 1.5}}, "broker.port: expected an integer"),
        ({"broker": {"port": True}}, "broker.port: expected an integer"),
        ({"gain_db": 99}, "gain_db: expected a number -40..40 (dB), got 99"),
        ({"gain_db": float("nan")}, "gain_db: expected a number"),
        ({"enabled": "yes"}, "enabled: expected a boolean, got 'yes'"),
        ({"broker": {"qos": 3}}, "broker.qos: expected one of 0, 1, 2, got 3"),
        ({"labels": "dog"}, "labels: expected a list of strings, got 'dog'"),
        ({"labels": ["dog", 3]}, "labels[1]: expected a string, got 3"),
        ({"thresholds": {"dog": "high"}}, "thresholds.dog: expected a number, got 'high'"),
        ({"broker": "localhost"}, "broker: expected a mapping, got 'localhost'"),
        ([1, 2], "<top>: expected a mapping"),
        ({"features": {"scale": "mel"}}, "features.scale: expected one of 'mel_slaney'"),
        ({"features": {"n_fft": 128}}, "features: n_fft (128) must be >= window_samples (400)"),
    ],
)
def test_bad_values(data: object, expected: str) -> None:
    assert expected in _error(data)


def test_unknown_key_suggests_close_match() -> None:
    assert _error({"broker": {"prot": 1}}) == "config.yaml: broker.prot: unknown key (did you mean 'port'?)"
    assert _error({"zzz": 1}) == "config.yaml: zzz: unknown key"


def test_missing_required_field() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Needs:
        name: str

    with pytest.raises(ConfigError, match=r"^m.json: name: missing, expected a string$"):
        build(Needs, {}, "m.json")


def test_round_trip_and_describe() -> None:
    cfg = build(Sample, {"labels": ["a"], "thresholds": {"a": 0.5}}, "x")
    assert build(Sample, to_data(cfg), "x") == cfg
    rows = {key: (default, text) for key, default, text in describe(Sample)}
    assert rows["broker.port"] == (1883, "an integer 1..65535 (TCP port)")
    assert "features.n_bands" in rows
    assert all(text for _, text in rows.values()), "every setting documents what it expects"


def test_container_defaults_are_refused() -> None:
    with pytest.raises(TypeError):
        setting([])
