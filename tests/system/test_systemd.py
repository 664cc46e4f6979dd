"""The service unit: valid for systemd, restarts forever (not on a config error), watchdog on, secrets outside the
config, hardened; install-service.sh uninstalls on a host without systemd."""

from __future__ import annotations

import configparser
import os
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
    assert service["RestartPreventExitStatus"] == "2", "but not on a config error: the same file every 3 s forever"
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


NO_SYSTEMD = """#!/bin/sh
echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2
echo "Failed to connect to bus: Host is down" >&2
exit 1
"""
"""systemctl as it answers on a host without systemd (a container, a chroot)."""

THROWAWAY_ROOT = """
set -e
mount -t tmpfs tmpfs "$T"
mkdir "$T/upper" "$T/work" "$T/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$T/root"
mkdir -p "$T/root/srv/auricle/deploy" "$T/root/srv/no-systemd"
cp "$SCRIPT" "$T/root/srv/auricle/deploy/install-service.sh"
printf '%s' "$FAKE_SYSTEMCTL" >"$T/root/srv/no-systemd/systemctl" && chmod 755 "$T/root/srv/no-systemd/systemctl"
echo throwaway-root-ready
exec chroot "$T/root" /bin/bash -c "$INSIDE"
"""
"""A copy-on-write view of this machine (overlayfs over /, in a private mount namespace): what the script
deletes or writes there, users included, is gone when the namespace ends."""

PURGE_WITHOUT_SYSTEMD = """
rm -rf /run/systemd/system   # not booted with systemd (in the view only)
useradd --system --home /var/lib/auricle --shell /usr/sbin/nologin auricle
mkdir -p /opt/auricle/.venv /etc/auricle /var/lib/auricle/models /etc/systemd/system/multi-user.target.wants
touch /etc/auricle/config.yaml /etc/systemd/system/auricle.service
ln -sf /etc/systemd/system/auricle.service /etc/systemd/system/multi-user.target.wants/auricle.service
status=0
PATH=/srv/no-systemd:$PATH bash /srv/auricle/deploy/install-service.sh --uninstall --purge || status=$?
echo "exit $status"
for path in /opt/auricle /etc/auricle /var/lib/auricle /etc/systemd/system/auricle.service \\
  /etc/systemd/system/multi-user.target.wants/auricle.service; do
  if [ -e "$path" ] || [ -L "$path" ]; then echo "left $path"; fi
done
if id auricle >/dev/null 2>&1; then echo "left user auricle"; fi
"""


def _in_throwaway_root(inside: str, tmp_path: Path) -> str:
    """Run ``inside`` as root in a throwaway view of this machine; its stdout and stderr."""
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "chroot", "useradd", "userdel")):
        pytest.skip("needs root, unshare, chroot, useradd and userdel to uninstall in a throwaway root")
    env = os.environ | {
        "T": str(tmp_path),
        "SCRIPT": str(ROOT / "deploy" / "install-service.sh"),
        "FAKE_SYSTEMCTL": NO_SYSTEMD,
        "INSIDE": inside,
    }
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", THROWAWAY_ROOT],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    if "throwaway-root-ready" not in proc.stdout:
        pytest.skip(f"cannot make a throwaway root here (a private mount namespace and overlayfs): {proc.stderr}")
    return proc.stdout + proc.stderr


def test_uninstall_purge_without_systemd(tmp_path: Path) -> None:
    """A host without systemd (a container, or systemd not running): --uninstall --purge removes everything,
    skipping systemctl with a note, instead of stopping at `systemctl daemon-reload` (set -e)."""
    out = _in_throwaway_root(PURGE_WITHOUT_SYSTEMD, tmp_path)
    assert "exit 0" in out, out
    assert "left " not in out, out
    assert "systemd is not running here: removing the unit file without systemctl" in out
    assert "auricle removed, with its config, state and user" in out
