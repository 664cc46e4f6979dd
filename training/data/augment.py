"""Training windows and their augmentation, all on cached dB frames.

Nothing here recomputes a spectrogram: crops, shifts, gains, masks and mixup
act on the ``(frames, bands)`` dB images the front end already produced.

Approximations, documented because they differ from doing it on waveforms:
- gain is a dB offset on frames above the floor, clamped to the ceiling
  (frames at the floor stay there: digital silence stays silent);
- background noise is added in the power domain per band and frame,
  ``10*log10(10^(a/10) + 10^(b/10))``, which ignores the phase cross-term
  (zero on average for independent sources) and the floor/ceiling clamping
  of the cached frames;
- mixup blends dB images linearly (as SpecAugment/mixup papers do on log-mel
  inputs), not waveforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge import features
from edge.features import FeatureParams
from training.recipe.config import AugmentConfig

Frames = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class Crop:
    """Where a training window comes from."""

    clip: int
    end: int
    """Frame count at the window's end (as in ``edge.features.window_ends``)."""


def active_ends(
    frames: Frames, window: int, floor: float, within_db: float = 0.0, min_frames: int = 1
) -> npt.NDArray[np.int64]:
    """Window end positions whose window holds at least ``min_frames`` frames above the floor and, with
    ``within_db`` > 0, within that many dB of the clip's loudest frame (level: mean power over the bands)."""
    n = frames.shape[0]
    if n <= window:
        return np.array([n], dtype=np.int64)
    x = np.asarray(frames, dtype=np.float64)
    loud = x.max(axis=1) > floor + 1e-3
    if within_db > 0:
        level = 10.0 * np.log10(np.mean(10.0 ** (x / 10.0), axis=1))
        loud &= level >= level.max() - within_db
    loud = loud.astype(np.int64)
    csum = np.concatenate(([0], np.cumsum(loud)))
    ends = np.arange(window, n + 1)
    active = ends[(csum[ends] - csum[ends - window]) >= max(1, min_frames)]
    return active if active.size else ends


def random_crops(
    ends_per_clip: Sequence[npt.NDArray[np.int64]], clips: Sequence[int], per_clip: int, rng: np.random.Generator
) -> list[Crop]:
    """``per_clip`` random windows for each clip in ``clips``, shuffled."""
    crops = [Crop(clip=c, end=int(rng.choice(ends_per_clip[c]))) for c in clips for _ in range(per_clip)]
    order = rng.permutation(len(crops))
    return [crops[i] for i in order]


def gain(window: Frames, db: float, params: FeatureParams) -> Frames:
    """Level change by ``db``; floor frames stay at the floor, the rest clamps to the ceiling."""
    shifted = np.clip(window + np.float32(db), params.db_floor, params.db_ceiling)
    return np.where(window <= params.db_floor, window, shifted).astype(np.float32)


def add_noise(window: Frames, noise: Frames, snr_db: float, params: FeatureParams) -> Frames:
    """Mix ``noise`` (same shape, dB) in the power domain, ``snr_db`` below the window's mean power."""
    p_sig = np.power(10.0, window / 10.0, dtype=np.float64)
    p_noise = np.power(10.0, noise / 10.0, dtype=np.float64)
    scale = p_sig.mean() / max(p_noise.mean(), 1e-30) / 10.0 ** (snr_db / 10.0)
    mixed = 10.0 * np.log10(p_sig + scale * p_noise + 1e-30)
    out: Frames = np.clip(mixed, params.db_floor, params.db_ceiling).astype(np.float32)
    return out


def spec_mask(window: Frames, cfg: AugmentConfig, floor: float, rng: np.random.Generator) -> Frames:
    """SpecAugment: set random time spans and band spans to the floor."""
    out = window.copy()
    n_frames, n_bands = out.shape
    for _ in range(cfg.time_masks):
        width = int(rng.integers(0, min(cfg.time_mask_frames, n_frames) + 1))
        start = int(rng.integers(0, n_frames - width + 1))
        out[start : start + width] = floor
    for _ in range(cfg.freq_masks):
        width = int(rng.integers(0, min(cfg.freq_mask_bands, n_bands) + 1))
        start = int(rng.integers(0, n_bands - width + 1))
        out[:, start : start + width] = floor
    return out


def shift(window: Frames, max_frames: int, rng: np.random.Generator) -> Frames:
    """Circular time shift by up to ``max_frames`` either way."""
    if max_frames <= 0:
        return window
    return np.roll(window, int(rng.integers(-max_frames, max_frames + 1)), axis=0)


class WindowPool:
    """Random windows from a set of files, uniform over their audio time, never pure digital silence."""

    def __init__(self, frames: Sequence[Frames], window: int, params: FeatureParams) -> None:
        self.frames, self.window, self.params = list(frames), window, params
        self.ends = [active_ends(f, window, params.db_floor) for f in self.frames]
        weights = np.array([len(e) for e in self.ends], dtype=np.float64)
        self.p = weights / weights.sum() if len(weights) else weights

    def __len__(self) -> int:
        return len(self.frames)

    def draw(self, rng: np.random.Generator) -> Crop:
        """A random (file, window end)."""
        i = int(rng.choice(len(self.frames), p=self.p))
        return Crop(clip=i, end=int(rng.choice(self.ends[i])))

    def take(self, crop: Crop) -> Frames:
        """The dB window of a drawn crop."""
        w = features.window_at(self.frames[crop.clip], crop.end, self.window, self.params)
        return np.asarray(w, dtype=np.float32)


class Augmenter:
    """Turns crops into augmented dB windows, one-hot targets, and optional mixup."""

    def __init__(
        self,
        cfg: AugmentConfig,
        params: FeatureParams,
        window: int,
        noise: Sequence[Frames] = (),
    ) -> None:
        """``noise``: files (dB frames) mixed under windows in the power domain (background, noise_dir)."""
        self.cfg, self.params, self.window = cfg, params, window
        self.noise = WindowPool(noise, window, params)

    def window_of(self, frames: Frames, end: int, rng: np.random.Generator, mix: bool = True) -> Frames:
        """The augmented window of ``frames`` ending at ``end``; ``mix``: noise mixing allowed."""
        w = np.array(features.window_at(frames, end, self.window, self.params), dtype=np.float32)
        cfg = self.cfg
        w = shift(w, cfg.time_shift_frames, rng)
        if cfg.gain_db > 0:
            w = gain(w, float(rng.uniform(-cfg.gain_db, cfg.gain_db)), self.params)
        if mix and len(self.noise) and rng.random() < cfg.noise_probability:
            snr = float(rng.uniform(cfg.noise_snr_db[0], cfg.noise_snr_db[-1]))
            w = add_noise(w, self.noise.take(self.noise.draw(rng)), snr, self.params)
        if cfg.time_masks or cfg.freq_masks:
            w = spec_mask(w, cfg, self.params.db_floor, rng)
        return w

    def mixup(
        self, windows: Frames, targets: npt.NDArray[np.float32], rng: np.random.Generator
    ) -> tuple[Frames, npt.NDArray[np.float32]]:
        """Blend each example with a shuffled partner, weight ~ Beta(a, a) (kept >= 0.5).

        Targets blend column by column with the same weight, so one call mixes class targets of any
        output type (one-hot with or without a background column, multi-hot, all-zero background)
        and teacher targets concatenated beside them."""
        a = self.cfg.mixup_alpha
        if a <= 0 or len(windows) < 2:
            return windows, targets
        lam = rng.beta(a, a, size=len(windows)).astype(np.float32)
        lam = np.maximum(lam, 1 - lam)  # the first example stays dominant
        perm = rng.permutation(len(windows))
        mixed = lam[:, None, None] * windows + (1 - lam[:, None, None]) * windows[perm]
        return mixed.astype(np.float32), (lam[:, None] * targets + (1 - lam[:, None]) * targets[perm])
