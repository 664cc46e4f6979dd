"""The service unit: valid for systemd, restarts forever, watchdog on, secrets outside the config, hardened."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.shared import ROOT

UNIT = ROOT / "systemd" / "auricle.service"


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


def _analyze() -> str:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    return analyze


def _testable_unit(folder: Path) -> Path:
    """The unit with ExecStart pointing at a binary that exists here (verify checks it)."""
    text = UNIT.read_text().replace("/opt/auricle/.venv/bin/auricle", shutil.which("true") or "/bin/true")
    (folder / "auricle.service").write_text(text)
    return folder / "auricle.service"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    proc = subprocess.run(
        [_analyze(), "verify", str(_testable_unit(tmp_path))], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in proc.stderr.splitlines() if "auricle.service" in line]
    assert proc.returncode == 0 and not problems, proc.stderr


def test_hardened_only_where_the_service_needs_access() -> None:
    service = _unit()["Service"]
    assert service["StateDirectory"] == "auricle" and service["UMask"] == "0077"
    assert service["CapabilityBoundingSet"] == "" and service["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert service["PrivateDevices"] == "yes" and service["DeviceAllow"] == "char-alsa rw"
    assert service["BindPaths"] == "-/dev/snd", "the microphone is reachable, and optional"
    assert service["SupplementaryGroups"] == "audio"
    assert "ReadWritePaths" not in service, "StateDirectory= is the only writable place"


def test_no_writable_run_or_shared_memory() -> None:
    """Measured under a real systemd 252 (deploy/check-service.sh): without these two lines /run (and the
    world-writable /run/lock) stays writable under ProtectSystem=strict, because ProtectKernelTunables= and
    friends mount the API file systems, and PrivateDevices= binds the system's /dev/shm in."""
    service = _unit()["Service"]
    assert service["ReadOnlyPaths"] == "/run"
    assert service["TemporaryFileSystem"] == "/dev/shm:ro"


def test_exposure_score_is_at_most_3(tmp_path: Path) -> None:
    proc = subprocess.run(
        [_analyze(), "security", "--offline=true", str(_testable_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("systemd-analyze here cannot score unit files offline (needs systemd >= 250)")
    found = re.search(r"Overall exposure level for auricle\.service: ([0-9.]+)", proc.stdout)
    assert found is not None, proc.stdout[-2000:] + proc.stderr
    assert float(found.group(1)) <= 3.0, proc.stdout


def test_install_script_parses_its_options() -> None:
    script = ROOT / "deploy" / "install-service.sh"
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    usage = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0 and "--uninstall" in usage.stdout
    for bad in (["--bogus"], ["--purge"]):
        proc = subprocess.run(["bash", str(script), *bad], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and proc.stderr, bad
