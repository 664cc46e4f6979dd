"""The installed unit under a real systemd: deploy/check-service.sh boots it in a container.

The boot itself needs root and systemd-nspawn and takes about 90 s once its Debian root is cached
(about 3 minutes the first time), so it runs only with AURICLE_SYSTEMD_CHECK=1:

    sudo AURICLE_SYSTEMD_CHECK=1 deploy/test.sh tests/system/test_systemd_boot.py

Without it the test is skipped: CI does not boot the unit (docs/daemon.md, "Checked under a real systemd").
"""

from __future__ import annotations

import os
import subprocess

import pytest
from support.shared import ROOT

SCRIPT = ROOT / "deploy" / "check-service.sh"
BOOT = os.environ.get("AURICLE_SYSTEMD_CHECK") == "1"

# One line per thing the issue asks for; the script prints each as "ok    ..." when it holds.
CHECKS = (
    "installed and started the service",
    "READY=1 with the example config",
    "READY=1 with audio from a WAV file and the broker",
    "watchdog armed",
    "a seccomp filter",
    "event published",
    "the daemon wrote",
    "writable for the daemon: /var/lib/auricle",
    "the daemon's /tmp is its own",
    "root in the daemon's namespace cannot write",
    "a non-sound device node (10:200) in /dev/snd gets EPERM",
    "kill -9 of PID",
    "events again after the restart",
    "killed by the watchdog and restarted",
    "a config error (exit 2) is not restarted",
    "the retained status/reason names the config error",
    "the good config back",
    "exposure 1.3",
    "no denied operation",
)


def test_check_script_parses_its_options() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], timeout=30).returncode == 0
    usage = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0 and "--rebuild" in usage.stdout and "systemd-nspawn" in usage.stdout
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--bogus" in bad.stderr


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not BOOT, reason="boots the unit under a real systemd (root, ~90 s): AURICLE_SYSTEMD_CHECK=1")
def test_the_installed_unit_works_under_a_real_systemd() -> None:
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=850)
    report = proc.stdout + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    passed = [line for line in proc.stdout.splitlines() if line.startswith("ok ")]
    for check in CHECKS:
        assert any(check in line for line in passed), f"not checked: {check}\n{report}"
