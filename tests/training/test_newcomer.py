"""A newcomer's first model, as docs/training.md "Your own labels" tells it: their own sounds in one flat folder
of ``<label>_<number>.wav`` files with a none-of-these class, ``audioset-suggest`` and ``screen`` on them, the
shipped recipe (configs/esc50.yaml) with only the overrides the docs list for a new dataset - and, for CI, the
recipe's epochs and sizes cut down - then the device's own ``auricle classify`` on sounds it never heard.

The sounds are made here (beeps, hiss, a wailing sweep, a mains hum as the "other" class, room tone), never
committed; nothing of ESC-50 is used."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import training_data as td
from support.shared import ROOT, shared_dir

from edge.model.bundle import read_bundle
from training import cli
from training.data import prepare

pytestmark = pytest.mark.slow

RATE = 16000
RECIPE = ROOT / "configs" / "esc50.yaml"
YAMNET = shared_dir() / "peers" / "yamnet_spectra_in.tflite"
"""The recipe's model.weights; stated in the test's config, since a clone in a CI folder has no ../shared beside
it (docs/training.md: a recipe's relative paths resolve from its file)."""
"""Where the recipe looks for YAMNet (``model.weights``, relative to configs/)."""
LABELS = ("beep", "hiss", "wail")


def _bed(rng: np.random.Generator, n: int, level: float = 2e-4) -> np.ndarray:
    """Room tone: brown noise."""
    return np.cumsum(rng.normal(0, 1, n)) * level


def _beep(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / RATE
    gate = (t * rng.uniform(1.5, 3.0)) % 1 < 0.5
    return np.sin(2 * np.pi * rng.uniform(800, 1600) * t) * gate * rng.uniform(0.1, 0.4)


def _hiss(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(0, rng.uniform(0.03, 0.15), n) * np.minimum(1.0, np.arange(n) / (0.2 * RATE))


def _wail(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / RATE
    hz = rng.uniform(600, 900) + rng.uniform(250, 450) * np.sin(
        2 * np.pi * rng.uniform(0.4, 0.8) * t + rng.uniform(0, 6)
    )
    return np.sin(2 * np.pi * np.cumsum(hz) / RATE) * rng.uniform(0.1, 0.4)


def _hum(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.sign(np.sin(2 * np.pi * rng.uniform(90, 130) * np.arange(n) / RATE)) * rng.uniform(0.05, 0.15)


SOUNDS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "beep": _beep, "hiss": _hiss, "wail": _wail, "hum": _hum,
}  # fmt: skip


def _flat_folder(root: Path, per_label: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for label, make in SOUNDS.items():
        for i in range(per_label):
            n = 2 * RATE
            td.write(root / f"{label}_{i:03d}.wav", (_bed(rng, n) + make(rng, n)).astype(np.float32), RATE)
    return root


def _room(root: Path) -> Path:
    """Room tone in train/ and calibrate/, and one kitchen recording with a beep in it (for screen to find)."""
    rng = np.random.default_rng(5)
    for part in ("train", "calibrate"):
        for i in range(3):
            td.write(root / part / f"room_{i}.wav", _bed(rng, 6 * RATE, 6e-4).astype(np.float32), RATE)
    kitchen = _bed(rng, 8 * RATE, 6e-4)
    kitchen[3 * RATE : 5 * RATE] += 0.3 * np.sin(2 * np.pi * 1000 * np.arange(2 * RATE) / RATE)
    td.write(root / "train" / "kitchen.wav", kitchen.astype(np.float32), RATE)
    return root


def _config(tmp_path: Path) -> Path:
    """The recipe with the overrides of docs/training.md "Your own labels", then CI's smaller epochs and sizes."""
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(
        f"extends: {RECIPE}\n"
        "data:\n"
        "  manifest: ''\n  audio_root: sounds\n  group_column: ''\n  train_folds: []\n  test_folds: []\n"
        "  test_fraction: 0.3\n  other_labels: [hum]\n"
        "  background:\n    - {path: room, exclude_from: exclude.txt}\n"
        "  cache_dir: cache\n"  # CI: features cached in the test's folder
        f"model: {{weights: {YAMNET}}}\n"  # wherever the shared folder is (a CI clone has none beside it)
        "audioset:\n  confirm: {mapping: ''}\n  labels: []\n"
        "output: run\nbundle: {name: mine, version: 1.0.0}\n"
        # CI: a minute of training instead of fifteen
        "fit: {head_epochs: 4, finetune_epochs: 2, cache_copies: 1, crops_per_clip: 6, batch_size: 32}\n"
        "calibration: {mixture_minutes: 0.2}\nexport: {calibration_windows: 16, latency_runs: 10}\n"
    )
    return cfg


def _classify(bundle: Path, folder: Path) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "edge", "classify", "--model", str(bundle), "--json", str(folder)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {Path(r["file"]).name: r for r in map(json.loads, done.stdout.splitlines())}


def test_a_newcomer_trains_the_shipped_recipe_on_a_flat_folder_and_classify_gets_the_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not YAMNET.is_file():
        pytest.skip(f"shared material missing: {YAMNET.resolve()} (the recipe's model.weights)")
    _flat_folder(tmp_path / "sounds", per_label=10, seed=0)
    _room(tmp_path / "room")
    cfg = _config(tmp_path)

    # Which AudioSet classes are mine, and which background sounds like them.
    assert cli.main(["audioset-suggest", "--config", str(cfg), "-o", str(tmp_path / "map.csv")]) == 0
    out = capsys.readouterr().out
    assert "audioset-suggest: 18 training clips of 3 labels" in out and "hum" not in out
    with (tmp_path / "map.csv").open(newline="") as fh:
        mapping = {r["label"]: r["audioset_classes"].split(";") for r in csv.DictReader(fh)}
    assert set(mapping) == set(LABELS) and "Beep, bleep" in mapping["beep"] and "White noise" in mapping["hiss"]
    screen = [
        "screen",
        "--config",
        str(cfg),
        "--mapping",
        str(tmp_path / "map.csv"),
        "-o",
        str(tmp_path / "exclude.txt"),
    ]
    assert cli.main(screen) == 0
    assert "screen: 1 file sounds like the labels" in capsys.readouterr().out
    listed = [x for x in (tmp_path / "exclude.txt").read_text().splitlines() if x and not x.startswith("#")]
    assert listed == ["room/train/kitchen.wav"]

    assert cli.main(["run", "--config", str(cfg)]) == 0
    assert "evaluate: stratified hold-out clip accuracy" in capsys.readouterr().out
    run = tmp_path / "run"
    bundle = read_bundle(run / "mine.auricle")
    assert bundle.manifest.labels == LABELS, "the other label is never an output"
    background = prepare.load(run).background
    assert "kitchen.wav" not in [p.name for p in background.train.paths], "screened out"
    assert sum(p.name.startswith("hum_") for p in background.train.paths + background.calibrate.paths) >= 5
    log = (run / cli.RUN_LOG).read_text()
    for stage in ("features:", "prepare:", "fit head:", "fit finetune:", "export:", "calibrate:", "bundle:", "run:"):
        assert f" {stage} " in log, stage

    _flat_folder(tmp_path / "new", per_label=4, seed=99)  # sounds it never heard
    rows = _classify(run / "mine.auricle", tmp_path / "new")
    events = {name: r for name, r in rows.items() if not name.startswith("hum_")}
    right = sum(r["label"] == name.split("_")[0] for name, r in events.items())
    assert right >= 9, f"{right} of {len(events)} right (chance: 4): {rows}"
    assert all(r["label"] in LABELS for r in rows.values())
    hum = np.mean([r["score"] for name, r in rows.items() if name.startswith("hum_")])
    assert hum < np.mean([r["score"] for r in events.values()]), "the other class scores below the labels"
