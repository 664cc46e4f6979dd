"""deploy/lib/apt.sh: apt-get waits for a package lock another apt holds, says so in one line, gives up at a limit.

On a Pi's first boot apt-daily and unattended-upgrades hold apt's locks for minutes, and a plain apt-get exits 100
at once. These tests hold the real locks the way dpkg and apt take them (fcntl), so they need root on a Debian
system; elsewhere they skip.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.shared import ROOT

HELPER = ROOT / "deploy" / "lib" / "apt.sh"
DPKG_LOCK = Path("/var/lib/dpkg/lock-frontend")
PACKAGE = "libsndfile1"
"""Installed by deploy/setup.sh: apt-get install takes the lock and finds nothing to do (no download)."""
HOLD_S = 3.0
WAITING = "setup: waiting up to 600 s for the package lock (held by process"

pytestmark = pytest.mark.integration


def _installed(package: str) -> bool:
    query = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, timeout=30, check=False
    )
    return query.stdout.endswith("install ok installed")


@pytest.fixture
def debian_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("holds apt's own locks and runs apt-get: needs root")
    if not (shutil.which("apt-get") and shutil.which("dpkg-query") and DPKG_LOCK.parent.is_dir()):
        pytest.skip("not a Debian system (no apt-get, dpkg-query or /var/lib/dpkg)")


@contextmanager
def _held(path: Path) -> Iterator[None]:
    """Hold ``path``'s fcntl write lock, as dpkg and apt do; released on exit."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pytest.skip(f"{path} is held by a real apt right now")
        yield
    finally:
        os.close(fd)


def _helper(script: str, **env: str) -> subprocess.Popen[str]:
    """Run ``script`` with deploy/lib/apt.sh sourced, named ``setup`` as deploy/setup.sh is."""
    return subprocess.Popen(
        ["bash", "-c", f'set -euo pipefail; . "{HELPER}"; {script}', "setup"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | env,
    )


def _waits_while_held(lock: Path, script: str) -> tuple[subprocess.Popen[str], str, bool]:
    """Start ``script`` while ``lock`` is held, release it after HOLD_S; whether it was still waiting then."""
    with _held(lock):
        proc = _helper(script)
        time.sleep(HOLD_S)  # bounded: the helper either waits through it or has already failed
        waiting = proc.poll() is None
    _, err = proc.communicate(timeout=120)
    return proc, err, waiting


def test_install_waits_for_the_dpkg_lock(debian_root: None) -> None:
    if not _installed(PACKAGE):
        pytest.skip(f"{PACKAGE} is not installed: apt-get install would download it")
    proc, err, waiting = _waits_while_held(
        DPKG_LOCK, f"apt_get install -y -qq --no-install-recommends {PACKAGE} >/dev/null"
    )
    assert waiting, f"apt-get did not wait for the lock (exit {proc.returncode}): {err}"
    assert proc.returncode == 0, err
    assert err.count(WAITING) == 1, err
    assert f"held by process {os.getpid()} " in err, "the line names who holds the lock"
    assert "Could not get lock" not in err, "apt's own lock error is not shown once the lock came free"


def test_update_waits_for_the_lists_lock(debian_root: None, tmp_path: Path) -> None:
    """apt-get update ignores DPkg::Lock::Timeout (apt 2.6 fails at once on the lists lock): the helper retries.
    A private lists directory and no sources, so nothing is downloaded and the system's lists are not touched."""
    lists, cache, parts = tmp_path / "lists", tmp_path / "cache", tmp_path / "sources.list.d"
    for folder in (lists / "partial", cache / "archives" / "partial", parts):
        folder.mkdir(parents=True)
    options = (
        f"-o Dir::State::Lists={lists} -o Dir::Cache={cache} "
        f"-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts={parts}"
    )
    proc, err, waiting = _waits_while_held(lists / "lock", f"apt_get update -qq {options}")
    assert waiting, f"apt-get update did not wait for the lock (exit {proc.returncode}): {err}"
    assert proc.returncode == 0, err
    assert err.count(WAITING) == 1, err


def test_gives_up_at_its_limit(debian_root: None) -> None:
    began = time.monotonic()
    with _held(DPKG_LOCK):
        proc = _helper(f"apt_get install -y -qq {PACKAGE} >/dev/null", AURICLE_APT_LOCK_TIMEOUT="1")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 100, err
    assert "setup: waiting up to 1 s for the package lock" in err
    assert "setup: the package lock is still held after 1 s (AURICLE_APT_LOCK_TIMEOUT waits longer)" in err
    assert "Could not get lock /var/lib/dpkg/lock-frontend" in err, "apt's own reason is shown"
    assert time.monotonic() - began < 30


def _code(line: str) -> str:
    """A shell line without its comment and its quoted strings (messages may name apt-get)."""
    code = "" if line.lstrip().startswith("#") else line.split(" #")[0]
    return re.sub(r"\"[^\"]*\"|'[^']*'", "", code)


def test_every_apt_get_in_deploy_goes_through_the_helper() -> None:
    """Only deploy/lib/apt.sh runs apt-get; `apt-get indextargets` (check-service's mirror) takes no lock."""
    run_apt = re.compile(r"(?<!command -v )\bapt-get\b(?!\s+indextargets)")
    direct = [
        f"{script.relative_to(ROOT)}: {line.strip()}"
        for script in sorted((ROOT / "deploy").rglob("*.sh"))
        if script != HELPER
        for line in script.read_text().splitlines()
        if run_apt.search(_code(line))
    ]
    assert not direct, "\n".join(direct)
