"""Crash safety of installs: SIGKILL at random moments, then the state directory must be whole.

After every kill the store is recovered as the daemon does at start, and then:
the active (and previous) bundle files exist with the sha256 the pointer
records, the active one passes every check and loads, the last attempt is
settled (never left pending) and agrees with the pointer, no half-written
file is left behind, and a model that was on probation when the process died
has been rolled back, with the model that failed never left as ``previous``.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from support.models import tone_bundle
from support.ota import keypair, signed_copy
from support.shared import ROOT

from edge.model import bundle
from edge.update.checks import Policy, verify
from edge.update.modelstore import STAGING, ModelStore

pytestmark = pytest.mark.integration
TRIALS = 24
DRIVER = ROOT / "tests" / "support" / "ota_driver.py"


def _check(store: ModelStore, policy: Policy) -> str:
    """Recover like the daemon, assert consistency; return the settled last result."""
    before = store.pointer()
    last = store.recover()
    pointer = store.pointer()
    if before.trial and before.active is not None:
        assert pointer.active == before.previous, "a model on probation at the kill is rolled back"
        assert pointer.previous is None or pointer.previous.sha256 != before.active.sha256, (
            f"the model that failed its probation is previous: a rollback would bring it back ({pointer})"
        )
    for entry in (pointer.active, pointer.previous):
        if entry is not None:
            raw = store.path_of(entry).read_bytes()
            assert bundle.sha256(raw) == entry.sha256, f"{entry.file} is not what the pointer says"
    if pointer.active is not None:
        verify(store.path_of(pointer.active).read_bytes(), pointer.active.file, policy, budget_ms=None)
    assert not list((store.root / STAGING).glob("*")) and not list(store.root.rglob(".*.tmp"))
    if last is None:
        return "none"
    assert last["result"] != "pending", last
    active_sha = pointer.active.sha256 if pointer.active else None
    if last["result"] in ("installed", "rolled_back"):
        assert last["sha256"] == active_sha, (last, pointer)
    if last["result"] == "interrupted" and "sha256" in last:
        assert last["sha256"] != active_sha, (last, pointer)
    assert not pointer.trial, "a model left on probation by a crash is rolled back at start"
    return str(last["result"])


def test_kill_9_at_random_points_of_installs(tmp_path: Path) -> None:
    key, pub = keypair(tmp_path, "release")
    paths = [
        signed_copy(tone_bundle(tmp_path / f"{v}.plain", version=v), tmp_path / f"{v}.auricle", key)
        for v in ("0.1.0", "0.2.0", "0.3.0")
    ]
    store = ModelStore(tmp_path / "models")
    policy = Policy(public_key=str(pub), latency_budget_ms=5000)
    rng = random.Random(20260101)
    seen: Counter[str] = Counter()
    installs = 0
    for trial in range(TRIALS):
        probation_s = "60" if trial % 2 else "0"  # odd trials: every switch starts a probation (trial flag)
        proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(store.root), str(pub), probation_s, *map(str, paths)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait(timeout=10)
        before = store.last()
        installs += int(str((before or {}).get("id", "x-0")).rsplit("-", 1)[1]) + 1
        seen[_check(store, policy)] += 1
    print(f"\n{TRIALS} kills after {installs} install/rollback attempts; settled results {dict(seen)}")
    assert sum(seen.values()) == TRIALS
    assert len(list(store.versions.glob("*.auricle"))) <= 3, "retention keeps 3 versions"
