"""Set up once, start offline: a second ``deploy/setup.sh`` needs no network and no pip."""

from __future__ import annotations

import subprocess
import time

import pytest
from support.shared import ROOT


def _can_cut_the_network() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _can_cut_the_network(), reason="needs `unshare -n` (root) to run without a network")
@pytest.mark.parametrize("extras", ["edge", "dev"])
def test_second_setup_runs_without_a_network(extras: str) -> None:
    # the first setup: under deploy/test.sh a no-op, but after an edit to edge/ it reinstalls the non-editable
    # .venv-edge (its stamp hashes the package's files), so "second" is made true here rather than assumed
    first = subprocess.run(
        ["bash", str(ROOT / "deploy" / "setup.sh"), extras], capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stderr[-2000:]
    began = time.monotonic()
    done = subprocess.run(
        ["unshare", "-n", "bash", str(ROOT / "deploy" / "setup.sh"), extras],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "installing auricle" not in done.stderr, "pip ran although nothing changed"
    assert time.monotonic() - began < 30
