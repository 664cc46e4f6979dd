"""YAMNet's AudioSet head over whole files: at every YAMNet hop, the window's level and its 521 scores, cached.

What ``auricle-train audioset-suggest`` and ``screen`` read (training/model/screening.py).  Each window is the
patch ending at a multiple of :data:`STEP_FRAMES` frames (YAMNet's own hop, 0.48 s) through YAMNet's front end
exactly (:data:`training.model.yamnet.YAMNET_FEATURES`); a file shorter than a patch gets one, silence before it.
Its level is the RMS of the samples the patch covers, in dBFS.  Cached per file as
``<cache_dir>/audioset-<model sha>-s48/<file sha256>.npz``; unreadable files are named and skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge import features
from training.data.cache import file_sha256
from training.data.data import DataError, read_audio
from training.model import yamnet

_LOGGER = logging.getLogger(__name__)

STEP_FRAMES = 48
"""YAMNet's own hop between patches: 0.48 s."""
PARAMS = yamnet.YAMNET_FEATURES
Floats = npt.NDArray[np.float32]

_WORKER: dict[str, Any] = {}


@dataclass(frozen=True)
class FileScores:
    """One file through YAMNet's head, a row per window."""

    path: Path
    seconds: float
    """The file's length."""
    end_s: Floats
    """Where each window ends, seconds from the start."""
    level_db: Floats
    """Each window's RMS level, dBFS."""
    scores: Floats
    """``(windows, 521)`` AudioSet scores."""


def windows(samples: Floats, net: yamnet.Yamnet) -> tuple[Floats, Floats, Floats]:
    """(end in seconds, level in dBFS, 521 scores) of every window of ``samples`` (16 kHz mono)."""
    log_mel = yamnet.log_mel(features.compute(samples, PARAMS), PARAMS)
    silence = np.float32(np.log(yamnet.LOG_OFFSET))
    energy = np.concatenate(([0.0], np.cumsum(np.square(samples, dtype=np.float64))))
    ends, levels, rows = [], [], []
    for end in features.window_ends(len(log_mel), yamnet.PATCH_FRAMES, STEP_FRAMES):
        patch = log_mel[max(0, end - yamnet.PATCH_FRAMES) : end]
        if len(patch) < yamnet.PATCH_FRAMES:
            pad = np.full((yamnet.PATCH_FRAMES - len(patch), log_mel.shape[1]), silence, np.float32)
            patch = np.concatenate((pad, patch))
        rows.append(net.infer(patch)[0])
        first = max(0, (end - yamnet.PATCH_FRAMES) * PARAMS.hop_samples)
        last = min(len(samples), PARAMS.frames_end(end))
        levels.append(10.0 * np.log10((energy[last] - energy[first]) / max(1, last - first) + 1e-20))
        ends.append(last / PARAMS.sample_rate)
    if not rows:
        return np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros((0, 521), np.float32)
    return np.asarray(ends, np.float32), np.asarray(levels, np.float32), np.stack(rows).astype(np.float32)


def _init(model: str, class_map: str) -> None:
    _WORKER["yamnet"] = yamnet.Yamnet(yamnet.YamnetParams(model_path=Path(model), class_map_path=Path(class_map)))


def _compute(path: Path, folder: Path) -> tuple[str, str]:
    """Worker: ('ok', cache file) or ('error', reason)."""
    try:
        target = folder / f"{file_sha256(path)}.npz"
        if not target.exists():
            samples = read_audio(path, PARAMS.sample_rate)
            end_s, level_db, scores = windows(samples, _WORKER["yamnet"])
            tmp = target.with_name(f".{target.stem}.{os.getpid()}.npz")
            seconds = np.float64(len(samples) / PARAMS.sample_rate)
            np.savez(tmp, end_s=end_s, level_db=level_db, scores=scores.astype(np.float16), seconds=seconds)
            os.replace(tmp, target)  # atomic: a killed run never leaves half a file
        return "ok", str(target)
    except (DataError, OSError, ValueError) as exc:
        return "error", str(exc)


def score_files(
    paths: Sequence[Path], model: Path, class_map: Path, cache_dir: Path, workers: int = 0, desc: str = "YAMNet"
) -> tuple[list[FileScores], list[tuple[Path, str]]]:
    """Every readable file's windows (computed in a process pool where not cached) and the files skipped, why."""
    from tqdm import tqdm

    folder = cache_dir / f"audioset-{file_sha256(model)[:16]}-s{STEP_FRAMES}"
    folder.mkdir(parents=True, exist_ok=True)
    n = min(workers or os.cpu_count() or 1, max(1, len(paths)))
    with ProcessPoolExecutor(max_workers=n, initializer=_init, initargs=(str(model), str(class_map))) as pool:
        jobs = pool.map(_compute, paths, [folder] * len(paths), chunksize=4)
        results = list(tqdm(jobs, total=len(paths), desc=desc, unit="file", leave=False, disable=None))
    found, skipped = [], []
    for path, (status, value) in zip(paths, results, strict=True):
        if status != "ok":
            _LOGGER.warning("skipping bad file: %s", value)
            skipped.append((path, value))
            continue
        with np.load(value) as z:
            found.append(
                FileScores(path, float(z["seconds"]), z["end_s"], z["level_db"], z["scores"].astype(np.float32))
            )
    return found, skipped
