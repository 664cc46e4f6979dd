"""The service unit: valid for systemd, restarts forever, watchdog on, secrets outside the config."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "auricle.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_unit_survives_faults() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Type"] == "notify", "READY=1 only once the model is loaded and audio flows"
    assert service["Restart"] == "always"
    assert int(service["WatchdogSec"]) > 0
    assert unit["Unit"]["StartLimitIntervalSec"] == "0", "never stop restarting"
    assert service["ExecStart"].split()[1:3] == ["run", "--config"]
    assert service["EnvironmentFile"].startswith("-"), "the secrets file is optional"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    text = UNIT.read_text().replace("/opt/auricle/.venv/bin/auricle", shutil.which("true") or "/bin/true")
    (tmp_path / "auricle.service").write_text(text)
    proc = subprocess.run(
        [analyze, "verify", str(tmp_path / "auricle.service")], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in proc.stderr.splitlines() if "auricle.service" in line]
    assert proc.returncode == 0 and not problems, proc.stderr
