"""Learning without forgetting on 2 cores: the frozen blocks' activations, computed once and kept.

``model.arch: yamnet`` (training/fit/audioset_fit.py) freezes YAMNet's lower blocks, so what they make of a
window never changes: ``fit.cache_copies`` augmented passes over the training windows and the clean
validation windows go through them once, with the untouched network's 521 AudioSet scores (the AudioSet
head's targets), and are kept as float16 in ``lwf_cache/`` of the run folder.  A resumed run reads
them back; the phases train on them in shuffled batches.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.data.prepare import Prepared
from training.fit.windows import TrainWindows, batch_inputs
from training.model import audioset
from training.model import model as model_mod
from training.recipe.config import TrainConfig

CACHE_DIR = "lwf_cache"
AUDIOSET = audioset.SCORES
PREDICT_BATCH = 256

Half = npt.NDArray[np.float16]


@dataclass(frozen=True)
class Cached:
    """Frozen-block activations with their targets (or, for validation, their clip)."""

    acts: Half
    scores: npt.NDArray[np.float32]
    """Our labels' targets (training) or the clip index of each window (validation, one column)."""
    audioset: Half
    """The untouched network's 521 scores."""


def predict(model: Any, x: Any) -> Any:
    """``model.predict_on_batch(x)``; on a mirrored network ``x`` is split over the devices instead.

    Keras' ``predict_on_batch`` hands every replica the whole batch and concatenates their outputs,
    so with two devices each window would come back twice.
    """
    if model.distribute_strategy.num_replicas_in_sync == 1:
        return model.predict_on_batch(x)
    return model.predict(x, batch_size=len(x), verbose=0)


def cache_training(source: TrainWindows, lower: Any, upper: Any, out: Path, copies: int) -> Cached:
    """``copies`` augmented passes through the frozen blocks, with the untouched AudioSet scores (resumable)."""
    parts = []
    for copy in range(copies):
        path = out / CACHE_DIR / f"train-{copy}.npz"
        if not path.exists():
            _save(path, _pass(source, lower, upper))
            logging.getLogger(__name__).info("cached augmented pass %d of %d", copy + 1, copies)
        parts.append(_load(path))
    return Cached(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("acts", "scores", "audioset")))


def _pass(source: TrainWindows, lower: Any, upper: Any) -> Cached:
    acts, targets, teacher = [], [], []
    for x, y in source():
        a = predict(lower, x)
        acts.append(a.astype(np.float16))
        targets.append(np.asarray(y, dtype=np.float32))
        teacher.append(np.asarray(predict(upper, a)[AUDIOSET], dtype=np.float16))
    return Cached(np.concatenate(acts), np.concatenate(targets), np.concatenate(teacher))


def cache_validation(cfg: TrainConfig, prepared: Prepared, lower: Any, upper: Any, out: Path) -> Cached:
    """Clean windows of the validation clips at ``fit.val_hop_frames``, clip index as the target."""
    from training.fit.fit import clip_windows

    path = out / CACHE_DIR / "val.npz"
    if path.exists():
        return _load(path)
    spec, windows, owner = model_mod.input_spec(cfg), [], []
    for i, c in enumerate(prepared.split.val):
        w = clip_windows(prepared.frames[c], cfg, cfg.fit.val_hop_frames)
        windows.append(w)
        owner += [i] * len(w)
    flat = np.concatenate(windows) if windows else np.zeros((0, cfg.window.window_frames, cfg.features.n_bands))
    acts = [predict(lower, batch_inputs(flat[i : i + PREDICT_BATCH], cfg, spec))
            for i in range(0, len(flat), PREDICT_BATCH)]  # fmt: skip
    a = np.concatenate(acts).astype(np.float16) if acts else np.zeros((0,), np.float16)
    teacher = [predict(upper, a[i : i + PREDICT_BATCH])[AUDIOSET] for i in range(0, len(a), PREDICT_BATCH)]
    cached = Cached(a, np.asarray(owner, np.float32)[:, None], np.concatenate(teacher).astype(np.float16))
    _save(path, cached)
    return cached


def _save(path: Path, cached: Cached) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, acts=cached.acts, scores=cached.scores, audioset=cached.audioset)
    tmp.replace(path)


def _load(path: Path) -> Cached:
    with np.load(path) as z:
        return Cached(z["acts"], z["scores"], z["audioset"])


def batches(data: Cached, batch_size: int, seed: int) -> Any:
    """Shuffled batches of cached windows each epoch (a Keras ``PyDataset``), float16 widened to float32."""
    import keras

    class Batches(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(data.acts))

        def __len__(self) -> int:
            return math.ceil(len(data.acts) / batch_size)

        def __getitem__(self, i: int) -> Any:
            idx = np.sort(self.order[i * batch_size : (i + 1) * batch_size])
            y = {model_mod.SCORES: data.scores[idx], AUDIOSET: data.audioset[idx].astype(np.float32)}
            return data.acts[idx].astype(np.float32), y

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(data.acts))

    return Batches()
