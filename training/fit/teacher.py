"""YAMNet as a teacher: its outputs for every training window, cached beside the features.

One of our 96-frame windows covers the same 0.975 s as one YAMNet patch (same
10 ms hop, same 25 ms frames), so the teacher target of a window ending at
frame count ``e`` is YAMNet on the patch ending at ``e``.  Outputs are computed
once per file at the positions ``edge.features.window_ends(n, 96, step)`` and
stored as ``<cache>/teacher-<model sha>-s<step>/<file sha>.npy`` (float16 rows:
the 1024-d embedding, then the 521 scores); a random crop takes the nearest
cached position.  Augmentation (gain, shift, masks, mixing) is not seen by
the teacher: its target is that of the clean window.

The teacher runs only here; the device never does and no bundle holds it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edge import features
from training.data.cache import file_sha256
from training.data.data import DataError, read_audio

if TYPE_CHECKING:
    from training.data.prepare import Prepared
    from training.recipe.load import LoadedConfig

_LOGGER = logging.getLogger(__name__)

PATCH_FRAMES = 96
EMBEDDING_DIM = 1024
N_SCORES = 521
Rows = npt.NDArray[np.float16]

_WORKER: dict[str, Any] = {}


def positions(n_frames: int, step: int) -> npt.NDArray[np.int64]:
    """Frame counts at which teacher outputs are cached for a file of ``n_frames`` frames."""
    return np.asarray(features.window_ends(n_frames, PATCH_FRAMES, step), dtype=np.int64)


def nearest(ends: npt.NDArray[np.int64], end: int) -> int:
    """Index of the cached position nearest to ``end``."""
    i = int(np.searchsorted(ends, end))
    if i == 0:
        return 0
    if i >= len(ends):
        return len(ends) - 1
    return i if ends[i] - end < end - ends[i - 1] else i - 1


def cache_folder(cache_dir: Path, model: Path, step: int) -> Path:
    """Where a teacher's outputs live: keyed by the model file's content and the step."""
    return cache_dir / f"teacher-{file_sha256(model)[:16]}-s{step}"


def _init(model: str) -> None:
    from training.model.yamnet import Yamnet, YamnetParams

    path = Path(model)
    class_map = path.with_name("yamnet_class_map.csv")
    params = (
        YamnetParams(model_path=path, class_map_path=class_map)
        if class_map.is_file()
        else YamnetParams(model_path=path)
    )
    _WORKER["yamnet"] = Yamnet(params)


def teacher_rows(samples: npt.NDArray[np.float32], step: int) -> Rows:
    """Teacher outputs (embedding, scores) at every cached position of one file's samples."""
    from edge.features import compute
    from training.model import yamnet

    net = _WORKER["yamnet"]
    log_mel = yamnet.log_mel(compute(samples, yamnet.FEATURES))
    silence = np.float32(np.log(yamnet.LOG_OFFSET))
    rows = []
    for end in positions(log_mel.shape[0], step):
        patch = log_mel[max(0, end - PATCH_FRAMES) : end]
        if len(patch) < PATCH_FRAMES:  # a file shorter than a patch: silence before it, as our windows
            pad = np.full((PATCH_FRAMES - len(patch), log_mel.shape[1]), silence, np.float32)
            patch = np.concatenate((pad, patch))
        scores, embedding = net.infer(patch)
        if not np.all(np.isfinite(embedding)):
            raise DataError("the TFLite runtime cannot read YAMNet's embedding (no experimental_preserve_all_tensors)")
        rows.append(np.concatenate((embedding, scores)))
    return np.stack(rows).astype(np.float16)


def _compute(path: Path, sha: str, folder: Path, step: int, rate: int) -> tuple[str, str]:
    """Worker: ('ok', cache file) or ('error', reason)."""
    target = folder / f"{sha}.npy"
    try:
        if not target.exists():
            rows = teacher_rows(read_audio(path, rate), step)
            tmp = target.with_name(f".{target.stem}.{os.getpid()}.npy")
            np.save(tmp, rows)
            os.replace(tmp, target)
        return "ok", str(target)
    except (DataError, OSError, ValueError) as exc:
        return "error", f"{path}: {exc}"


@dataclass(frozen=True)
class Job:
    """One file to run the teacher on: its audio and its content hash (the feature cache's key)."""

    path: Path
    sha: str


def jobs_for(paths: Sequence[Path], feature_cache_files: Sequence[str]) -> list[Job]:
    """Jobs keyed by the sha256 already in each feature cache file's name (no re-hashing)."""
    return [Job(p, Path(f).stem) for p, f in zip(paths, feature_cache_files, strict=True)]


def extract(jobs: Sequence[Job], model: Path, cache_dir: Path, step: int, rate: int, workers: int = 0) -> list[Path]:
    """Teacher output files for every job, computing the missing ones in a process pool."""
    from tqdm import tqdm

    if not model.is_file():
        raise DataError(f"teacher.path: {model}: no such file (YAMNet int8, see docs/training.md)")
    folder = cache_folder(cache_dir, model, step)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [j for j in jobs if not (folder / f"{j.sha}.npy").exists()]
    if todo:
        n = min(workers or os.cpu_count() or 1, len(todo))
        with ProcessPoolExecutor(max_workers=n, initializer=_init, initargs=(str(model),)) as pool:
            args = ([j.path for j in todo], [j.sha for j in todo], [folder] * len(todo))
            results = pool.map(_compute, *args, [step] * len(todo), [rate] * len(todo), chunksize=8)
            for status, value in tqdm(results, total=len(todo), desc="teacher", unit="file", leave=False, disable=None):
                if status != "ok":
                    raise DataError(value)
        _LOGGER.info("teacher outputs computed for %d files (%d cached)", len(todo), len(jobs) - len(todo))
    return [folder / f"{j.sha}.npy" for j in jobs]


Key = tuple[str, int]
"""("clip", index into Prepared.clips) or ("background", index into the background's train part)."""


class Targets:
    """Teacher targets by (file, window end): the standardised embedding and the 521 scores."""

    def __init__(self, rows: dict[Key, Rows], n_frames: dict[Key, int], step: int) -> None:
        self.rows = rows
        self.ends = {k: positions(n_frames[k], step) for k in rows}
        for k, r in rows.items():
            if len(r) != len(self.ends[k]):
                raise DataError(
                    f"teacher cache has {len(r)} positions for a file of {n_frames[k]} frames, "
                    f"expected {len(self.ends[k])}"
                )
        self.mean, self.std = embedding_stats(list(rows.values()))

    def lookup(self, key: Key, end: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(standardised embedding, scores) of the cached position nearest to ``end`` in file ``key``."""
        row = np.asarray(self.rows[key][nearest(self.ends[key], end)], dtype=np.float32)
        return (row[:EMBEDDING_DIM] - self.mean) / self.std, row[EMBEDDING_DIM:]


def for_training(loaded: LoadedConfig, prepared: Prepared) -> Targets | None:
    """Teacher targets of the training clips and the background's train part; None without a teacher."""
    cfg = loaded.config
    if not cfg.teacher.path:
        return None
    keys: list[Key] = [("clip", c) for c in prepared.split.train]
    paths = [prepared.clips[c].path for c in prepared.split.train]
    files = [prepared.cache_files[c] for c in prepared.split.train]
    frames = [prepared.frames[c] for c in prepared.split.train]
    bg = prepared.background.train
    keys += [("background", b) for b in range(len(bg.paths))]
    paths, files, frames = paths + bg.paths, files + bg.cache_files, frames + bg.frames
    out = extract(
        jobs_for(paths, files), loaded.path(cfg.teacher.path), loaded.path(cfg.data.cache_dir),
        cfg.teacher.step_frames, cfg.features.sample_rate, cfg.data.workers,
    )  # fmt: skip
    rows = {k: np.load(f, mmap_mode="r") for k, f in zip(keys, out, strict=True)}
    return Targets(rows, {k: f.shape[0] for k, f in zip(keys, frames, strict=True)}, cfg.teacher.step_frames)


def embedding_stats(rows: Sequence[Rows]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Per-dimension mean and standard deviation of the embeddings (std floored at 1e-3)."""
    total = np.zeros(EMBEDDING_DIM)
    sq = np.zeros(EMBEDDING_DIM)
    n = 0
    for r in rows:
        e = np.asarray(r[:, :EMBEDDING_DIM], dtype=np.float64)
        total += e.sum(axis=0)
        sq += (e * e).sum(axis=0)
        n += len(e)
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(sq / max(n, 1) - mean * mean, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)
