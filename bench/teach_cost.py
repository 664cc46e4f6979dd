"""What teaching costs the device: the heads' work per hop against one inference, and ``auricle teach`` with five
clips, wall time here and what it means on a Raspberry Pi 4 (bench/teach.py prints it with the targets).

No Pi time was measured: ``../shared/notes`` gives no Pi-to-here ratio (its emulated Pi times are not Pi times),
so the Pi figure is an estimate, :data:`PI_SLOWER` times the wall time here, and says so.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench import streams
from edge.daemon.learning import RESERVOIR_ROWS
from edge.learn.heads import Head
from edge.learn.personal import Personal
from edge.learn.store import TaughtStore
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from edge.model.embedding import background_embeddings

PI_SLOWER = 10.0
"""Assumed: a Raspberry Pi 4 core (Cortex-A72, 1.5 GHz, NEON) against one core of this x86 machine, for int8
TFLite inference and NumPy float64 matrix products alike (peak 6 against 30-60 GFLOP/s per core); not measured."""
HEADS = 10
TEACH_LABEL, TEACH_CLIPS = "door_wood_knock", 5


def per_hop(clf: Classifier, rounds: int = 7, calls: int = 300) -> dict[str, Any]:
    """Median time of one ``Classifier.scores`` call (front-end window in, scores out) and of what 10 heads add
    to it (the embedding read, then ``Personal.apply``), interleaved in ``rounds``."""
    rng = np.random.default_rng(0)
    window = rng.uniform(-60, 0, (clf.manifest.window_frames, clf.manifest.features.n_bands)).astype(np.float32)
    heads = [
        Head(label=f"taught_{i}", kind="label", weights=tuple(0.01 * rng.standard_normal(1024)), bias=-3.0,
             threshold=0.9, examples=100, negatives=3000)
        for i in range(HEADS)
    ]  # fmt: skip
    personal = Personal(heads, clf.labels, clf.manifest.score_thresholds)
    scores = clf.scores(window)
    infer, add = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(calls):
            clf.scores(window)
        infer.append((time.perf_counter() - began) / calls)
        began = time.perf_counter()
        for _ in range(calls):
            personal.apply(scores, clf.embedding())
        add.append((time.perf_counter() - began) / calls)
    i, a = float(np.median(infer)), float(np.median(add))
    return {"inference_ms": round(i * 1e3, 4), "heads_ms": round(a * 1e3, 4), "heads": HEADS, "share": round(a / i, 4)}


def teach_wall(model: Path, reservoir: int = 0) -> dict[str, Any]:
    """``auricle teach`` of 5 ESC-50 clips into a state dir holding nothing or a reservoir of ``reservoir`` rows
    (a device that has listened: more negatives to fit against), in a process of its own: wall time, and the
    command's own account of it (embedding the clips, all of its work)."""
    with streams.ESC50_CSV.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["category"] == TEACH_LABEL and r["fold"] == "1"][:TEACH_CLIPS]
    files = [str(streams.ESC50_CSV.parent / "audio" / r["filename"]) for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "auricle.yaml"
        config.write_text(yaml.safe_dump({"model": {"path": str(model), "state_dir": str(Path(tmp) / "state")}}))
        if reservoir:
            bundle = read_bundle(model)
            spec = bundle.manifest.embedding
            assert spec is not None and bundle.background
            shipped = background_embeddings(bundle.background, spec, str(model))
            full = shipped[np.random.default_rng(0).integers(len(shipped), size=reservoir)] * 0.9
            sha = hashlib.sha256(model.read_bytes()).hexdigest()  # the store keys a model by its bundle file
            TaughtStore(Path(tmp) / "state").save_reservoir(sha, full, reservoir)
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "edge", "teach", "-c", str(config), "my_knock", *files],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        wall = time.monotonic() - began
    said = re.search(r"embedded in ([\d.]+) s, ([\d.]+) s in all", done.stdout)
    heard = re.search(r"(\d+) heard on this device", done.stdout)
    if done.returncode != 0 or said is None or heard is None or int(heard.group(1)) != reservoir:
        return {"error": (done.stderr or done.stdout).strip()[-300:]}
    return {
        "clips": len(files), "reservoir": reservoir, "wall_s": round(wall, 2), "embedded_s": float(said.group(1)),
        "work_s": float(said.group(2)), "pi_estimate_s": round(PI_SLOWER * wall, 1), "pi_slower": PI_SLOWER,
        "load": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def measure(clf: Classifier, model: Path, *, tiny: bool = False) -> dict[str, Any]:
    hop = per_hop(clf, rounds=3 if tiny else 7, calls=30 if tiny else 300)
    return {"per_hop": hop, "teach": None if tiny else [teach_wall(model), teach_wall(model, RESERVOIR_ROWS)]}


def lines(c: dict[str, Any]) -> list[str]:
    h = c["per_hop"]
    out = [
        f"COST: one inference (Classifier.scores) {h['inference_ms']:.3f} ms; {h['heads']} heads add "
        f"{h['heads_ms']:.4f} ms (embedding read + Personal.apply) = {h['share']:.1%} of it"
    ]
    for t in c["teach"] or ():
        if "error" in t:
            out.append(f"auricle teach failed: {t['error']}")
            continue
        out.append(
            f"auricle teach, {t['clips']} clips of {TEACH_LABEL}, reservoir of {t['reservoir']} rows: "
            f"{t['wall_s']:.1f} s wall here (the command: {t['work_s']:.1f} s, of it {t['embedded_s']:.1f} s "
            "embedding the clips; load "
            f"{t['load']}); on a Pi 4 about {t['pi_estimate_s']:.0f} s, estimated as {t['pi_slower']:g}x (not measured)"
        )
    return out


def targets(c: dict[str, Any], met: Callable[[bool | None], str]) -> list[str]:
    h, t = c["per_hop"], max(c["teach"] or [{}], key=lambda x: x.get("wall_s", 0))
    out = [f"- per-hop cost of {h['heads']} heads <= 5% of one inference: {met(h['share'] <= 0.05)} ({h['share']:.1%})"]
    if t and "error" not in t:
        out.append(
            f"- teaching 5 examples on a Pi 4 <= 10 s: {met(t['pi_estimate_s'] <= 10)} (estimated "
            f"{t['pi_estimate_s']:.0f} s = {t['pi_slower']:g} x {t['wall_s']:.1f} s here with a reservoir of "
            f"{t['reservoir']} rows, the slower case; not measured on a Pi)"
        )
    return out
