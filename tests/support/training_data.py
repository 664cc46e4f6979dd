"""Small labelled datasets for the training tests, written into a temporary folder.

Generated audio is deterministic (seeded) and class-dependent, so a tiny model
can tell the classes apart; real ESC-50 clips are only referenced by path,
never copied into the repository.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from support.shared import shared_dir

ESC50 = shared_dir() / "data" / "esc50"
WEIGHTS = shared_dir() / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
BACKGROUND = shared_dir() / "data" / "background"
TEACHER = shared_dir() / "peers" / "yamnet_spectra_in.tflite"

TONES_HZ = {"low": 400.0, "mid": 1500.0, "high": 4000.0}


def tone_clip(hz: float, seconds: float, rate: int, seed: int) -> np.ndarray:
    """A tone with a little noise and a random level (float32, mono)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    level = rng.uniform(0.05, 0.5)
    x = level * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.01, t.size)
    return x.astype(np.float32)


def write(path: Path, samples: np.ndarray, rate: int, fmt: str | None = None) -> Path:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, format=fmt)
    return path


def tone_tree(root: Path, per_class: int = 4, seconds: float = 1.5, rate: int = 16000) -> Path:
    """Folder-per-class dataset of tones (WAV)."""
    for k, (label, hz) in enumerate(TONES_HZ.items()):
        for i in range(per_class):
            write(root / label / f"{label}_{i}.wav", tone_clip(hz, seconds, rate, 100 * k + i), rate)
    return root


def tone_manifest(root: Path, folds: int = 4, per_fold: int = 2, seconds: float = 1.5) -> Path:
    """ESC-50 style CSV + audio/ of tones, ``per_fold`` clips per class and fold."""
    rows = []
    for k, (label, hz) in enumerate(TONES_HZ.items()):
        for fold in range(1, folds + 1):
            for i in range(per_fold):
                name = f"{fold}-{label}-{i}.flac"
                write(root / "audio" / name, tone_clip(hz, seconds, 16000, 1000 * fold + 10 * k + i), 16000)
                rows.append({"filename": name, "fold": fold, "target": k, "category": label})
    return write_manifest(root / "meta.csv", rows)


def write_manifest(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def esc50_subset(root: Path, categories: Sequence[str], per_fold: int) -> Path | None:
    """A manifest in ``root`` naming a few real ESC-50 clips (audio stays where it is)."""
    src = ESC50 / "esc50.csv"
    if not src.is_file():
        return None
    with src.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["category"] in categories]
    picked: list[dict[str, object]] = []
    for cat in categories:
        for fold in ("1", "2", "3", "4"):
            picked.extend([r for r in rows if r["category"] == cat and r["fold"] == fold][:per_fold])
    return write_manifest(root / "esc50_subset.csv", picked)


def missing(*paths: Path) -> str:
    """Empty when every path exists, else a skip reason naming what is missing (shared material)."""
    absent = [str(p) for p in paths if not p.exists()]
    if not absent:
        return ""
    return f"shared material missing (../shared or AURICLE_SHARED): {', '.join(absent)}"


def noise_folder(root: Path, per_part: int = 2, seconds: float = 2.0, rate: int = 16000) -> Path:
    """Background of generated noise: ``train/`` and ``calibrate/`` subfolders and one loose file."""
    rng = np.random.default_rng(7)
    for part in ("train", "calibrate"):
        for i in range(per_part):
            hiss = rng.normal(0, rng.uniform(0.01, 0.1), int(seconds * rate)).astype(np.float32)
            write(root / part / f"noise_{i}.wav", hiss, rate)
    write(root / "loose.wav", rng.normal(0, 0.05, int(seconds * rate)).astype(np.float32), rate)
    return root


def background_subset(root: Path, train: int, calibrate: int) -> Path | None:
    """A manifest in ``root`` naming a few shared background files of each split (audio stays where it is)."""
    src = BACKGROUND / "background.csv"
    if not src.is_file():
        return None
    with src.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked: list[dict[str, object]] = []
    for split, n in (("train", train), ("calibrate", calibrate)):
        for kind in ("speech", "noise", "music"):
            chosen = [r for r in rows if (r["split"], r["kind"]) == (split, kind)][:n]
            picked += [{"filename": r["filename"], "split": split} for r in chosen]
    return write_manifest(root / "background_subset.csv", picked)
