"""Features computed once per file by edge's front end, cached on disk, memory-mapped.

The key is ``<cache>/<FeatureParams fingerprint>/<sha256 of the file>.npy``: a
changed parameter or a changed file can never reuse stale frames.  Extraction
runs in a process pool with a progress bar; unreadable files are reported by
name and skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge import features
from edge.features import FeatureParams
from training.data.data import Clip, DataError, read_audio, through_codec

_LOGGER = logging.getLogger(__name__)

Frames = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Extracted:
    """Cached frames for the clips that could be read, and the ones skipped."""

    clips: list[Clip]
    frames: list[Frames]
    skipped: list[tuple[Path, str]]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract(path: Path, params: FeatureParams, folder: Path, codec: str = "") -> tuple[str, str]:
    """Worker: ('ok', cache file) or ('error', reason). Runs in a child process."""
    try:
        target = folder / f"{file_sha256(path)}{'-' + codec if codec else ''}.npy"
        if not target.exists():
            samples = through_codec(read_audio(path, params.sample_rate), params.sample_rate, codec)
            frames = features.compute(samples, params)
            tmp = target.with_name(f".{target.stem}.{os.getpid()}.npy")
            np.save(tmp, frames)
            os.replace(tmp, target)  # atomic: a killed run never leaves half a file
        return "ok", str(target)
    except (DataError, OSError, ValueError) as exc:
        return "error", str(exc)


def extract(clips: Sequence[Clip], params: FeatureParams, cache_dir: Path, workers: int = 0) -> Extracted:
    """Frames for every clip (memory-mapped from the cache), computing what is missing."""
    from tqdm import tqdm

    folder = cache_dir / params.fingerprint()
    folder.mkdir(parents=True, exist_ok=True)
    n_workers = workers or os.cpu_count() or 1
    results: list[tuple[str, str]] = []
    with ProcessPoolExecutor(max_workers=n_workers) as pool:
        jobs = pool.map(
            _extract,
            [c.path for c in clips],
            [params] * len(clips),
            [folder] * len(clips),
            [c.codec for c in clips],
            chunksize=8,
        )
        results.extend(tqdm(jobs, total=len(clips), desc="features", unit="clip", leave=False, disable=None))
    kept, frames, skipped = [], [], []
    for clip, (status, value) in zip(clips, results, strict=True):
        if status == "ok":
            kept.append(clip)
            frames.append(np.load(value, mmap_mode="r"))
        else:
            _LOGGER.warning("skipping bad file: %s", value)
            skipped.append((clip.path, value))
    return Extracted(kept, frames, skipped)
