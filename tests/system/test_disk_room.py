"""deploy/lib/disk.sh: an install that will not fit is refused before pip starts, in one line naming the disk.

The last CI machine ran out of disk halfway through TensorFlow, and what it printed was pip's OSError. These tests
ask the real df about a real directory: one need far above any disk, one of a single MB.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.shared import ROOT

HELPER = ROOT / "deploy" / "lib" / "disk.sh"
NO_DISK_HAS = 10**12
"""MB: an exabyte, more than any filesystem this runs on has free."""


def _room(path: Path, need_mb: int) -> subprocess.CompletedProcess[str]:
    """``disk_room`` as deploy/setup.sh calls it (sourced, the script named ``setup``)."""
    script = f'set -euo pipefail; . "{HELPER}"; disk_room "$1" "$2" "auricle[dev] in $1"'
    return subprocess.run(
        ["bash", "-c", script, "setup", str(path), str(need_mb)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=os.environ,
    )


def _free_mb(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize // 2**20


def test_an_install_that_fits_goes_on_silently(tmp_path: Path) -> None:
    done = _room(tmp_path, 1)
    assert (done.returncode, done.stderr) == (0, "")


def test_an_install_that_does_not_fit_is_refused_in_one_line_naming_the_disk(tmp_path: Path) -> None:
    venv = tmp_path / "not-yet" / ".venv"  # not made yet: the nearest existing parent's disk is asked
    done = _room(venv, NO_DISK_HAS)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    free = int(lines[0].split(" MB free")[0].rsplit(" ", 1)[1])
    assert abs(free - _free_mb(tmp_path)) <= 64, (free, _free_mb(tmp_path))  # df's figure, not a made-up one
    assert lines[0].startswith(f"setup: not enough disk for auricle[dev] in {venv}: ")
    assert f"the disk holding {venv}, about {NO_DISK_HAS} MB needed" in lines[0]
    assert not venv.parent.exists()  # nothing made on a refused install


def test_setup_refuses_a_venv_on_a_disk_too_small_before_pip_starts(tmp_path: Path) -> None:
    """The whole script: a 64 MB disk (a real tmpfs) cannot hold auricle[edge]; setup says so and makes nothing."""
    if os.geteuid() != 0:
        pytest.skip("mounts a small tmpfs: needs root")
    disk = tmp_path / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True, timeout=30)
    try:
        venv = disk / ".venv"
        done = subprocess.run(
            ["bash", str(ROOT / "deploy" / "setup.sh"), "edge"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=os.environ | {"AURICLE_VENV": str(venv)},
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(f"setup: not enough disk for auricle[edge] in {venv}: ")
        assert "pip" not in done.stderr.lower()
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False, timeout=30)
