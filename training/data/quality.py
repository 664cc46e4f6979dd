"""``auricle-train inspect``: flag suspicious clips and draw spectrogram contact sheets.

Statistics (all on the mono, resampled waveform unless stated), chosen to be
simple enough to explain:
- silent: RMS below -60 dBFS;
- clipped: more than 0.1% of samples at |x| >= 0.999;
- DC offset: |mean| above 0.02 (2% of full scale);
- noise-only: the frame-level dB envelope barely moves (std < 2 dB over
  frames not at the floor) AND the mean band spectrum is flat (spectral
  flatness > 0.3): stationary broadband noise, no events (a steady tone is
  stationary but not flat, so it is not flagged);
- near-duplicate: two clips whose mean dB spectra (band means over time)
  differ by under 0.5 dB RMS, or whose files are byte-identical.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge import features
from edge.features import FeatureParams
from training.data import data
from training.data.cache import file_sha256
from training.recipe.config import DataConfig

_LOGGER = logging.getLogger(__name__)

SILENT_DBFS = -60.0
CLIPPED_FRACTION = 0.001
DC_OFFSET = 0.02
NOISE_ENVELOPE_STD_DB = 2.0
NOISE_FLATNESS = 0.3
DUPLICATE_RMS_DB = 0.5


@dataclass(kw_only=True)
class ClipStats:
    """Per-clip statistics and the flags they raise."""

    path: Path
    label: str
    rms_dbfs: float = 0.0
    peak: float = 0.0
    clipped_fraction: float = 0.0
    dc_offset: float = 0.0
    envelope_std_db: float = 0.0
    flatness: float = 0.0
    """Geometric / arithmetic mean of the mean band powers (1 = white)."""
    sha256: str = ""
    spectrum: npt.NDArray[np.float64] | None = None
    group: str = ""
    """Near-duplicates share one (``dup-<n>``); any other clip is its own (its file name)."""
    flags: list[str] = field(default_factory=list)


def clip_stats(path: Path, label: str, params: FeatureParams) -> ClipStats:
    """Statistics of one clip; an unreadable file is flagged 'unreadable'."""
    s = ClipStats(path=path, label=label)
    try:
        x = data.read_audio(path, params.sample_rate).astype(np.float64)
        s.sha256 = file_sha256(path)
    except (data.DataError, OSError) as exc:
        s.flags.append(f"unreadable: {exc}")
        return s
    s.rms_dbfs = float(10 * np.log10(np.mean(x * x) + 1e-20))
    s.peak = float(np.max(np.abs(x)))
    s.clipped_fraction = float(np.mean(np.abs(x) >= 0.999))
    s.dc_offset = float(np.mean(x))
    frames = features.compute(x, params)
    level = frames.mean(axis=1)
    live = level[level > params.db_floor + 1.0]
    s.envelope_std_db = float(np.std(live)) if live.size > 1 else 0.0
    s.spectrum = frames.mean(axis=0).astype(np.float64) if len(frames) else None
    if s.spectrum is not None:
        power = np.power(10.0, s.spectrum / 10.0)
        s.flatness = float(np.exp(np.mean(np.log(power))) / np.mean(power))
    _flag(s)
    return s


def _flag(s: ClipStats) -> None:
    if s.rms_dbfs < SILENT_DBFS:
        s.flags.append(f"silent ({s.rms_dbfs:.0f} dBFS)")
    if s.clipped_fraction > CLIPPED_FRACTION:
        s.flags.append(f"clipped ({100 * s.clipped_fraction:.1f}% of samples)")
    if abs(s.dc_offset) > DC_OFFSET:
        s.flags.append(f"DC offset ({s.dc_offset:+.3f})")
    if s.rms_dbfs >= SILENT_DBFS and s.envelope_std_db < NOISE_ENVELOPE_STD_DB and s.flatness > NOISE_FLATNESS:
        s.flags.append(f"noise-only? (envelope std {s.envelope_std_db:.1f} dB)")


def flag_duplicates(stats: list[ClipStats]) -> None:
    """Mark byte-identical files and clips with nearly identical mean spectra, and give each clip its group:
    the clips linked by such pairs share one (``dup-<n>``), any other clip is a group of its own (its name)."""
    for s in stats:
        s.group = s.path.stem
    usable = [s for s in stats if s.spectrum is not None]
    if len(usable) < 2:
        return
    spectra = np.stack([s.spectrum for s in usable if s.spectrum is not None])
    sq = (spectra**2).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * spectra @ spectra.T, 0) / spectra.shape[1])
    np.fill_diagonal(dist, np.inf)
    parent = list(range(len(usable)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(dist < DUPLICATE_RMS_DB)), strict=True):
        same = usable[i].sha256 == usable[j].sha256
        why = "identical file" if same else f"near-duplicate ({dist[i, j]:.2f} dB RMS)"
        usable[i].flags.append(f"{why} of {usable[j].path.name}")
        usable[j].flags.append(f"{why} of {usable[i].path.name}")
        parent[root(int(i))] = root(int(j))
    sizes = Counter(root(i) for i in range(len(usable)))
    names = {r: f"dup-{n + 1}" for n, r in enumerate(sorted(r for r, k in sizes.items() if k > 1))}
    for i, s in enumerate(usable):
        s.group = names.get(root(i), s.group)


def records(stats: list[ClipStats], base: Path) -> list[dict[str, object]]:
    """One machine-readable row per clip (``inspect --json``/``--csv``): file (relative to ``base`` where it
    can be), label, group (usable as ``data.group_column``), level, peak and flags."""
    rows: list[dict[str, object]] = []
    for s in stats:
        try:
            name = str(s.path.resolve().relative_to(base.resolve()))
        except ValueError:
            name = str(s.path)
        rows.append({"filename": name, "label": s.label, "group": s.group, "rms_dbfs": round(s.rms_dbfs, 1),
                     "peak": round(s.peak, 4), "flags": s.flags})  # fmt: skip
    return rows


def _clips(dataset: Path, args: argparse.Namespace) -> list[data.Clip]:
    if dataset.is_file():
        cfg = DataConfig(label_column=args.label_column, filename_column=args.filename_column)
        return data.load_clips(cfg, dataset, (dataset.parent / args.audio_root).resolve())
    return data.load_clips(DataConfig(), None, dataset)


def inspect_dataset(dataset: Path, out: Path, args: argparse.Namespace) -> tuple[list[ClipStats], Path]:
    """Statistics and flags for every clip, and one contact-sheet PNG per class in ``out``."""
    from tqdm import tqdm

    clips = _clips(dataset, args)
    params = FeatureParams()
    with ProcessPoolExecutor() as pool:
        jobs = pool.map(clip_stats, [c.path for c in clips], [c.label for c in clips], [params] * len(clips))
        stats = list(tqdm(jobs, total=len(clips), desc="inspect", unit="clip", leave=False, disable=None))
    flag_duplicates(stats)
    out.mkdir(parents=True, exist_ok=True)
    by_label: dict[str, list[ClipStats]] = defaultdict(list)
    for s in stats:
        by_label[s.label].append(s)
    for label, members in sorted(by_label.items()):
        contact_sheet(members[: args.per_class], params, out / f"{_safe(label)}.png", label)
    return stats, out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "class"


def contact_sheet(members: list[ClipStats], params: FeatureParams, path: Path, label: str) -> None:
    """A grid of dB-mel spectrograms (time right, frequency up), flags in red."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window (as the report's plots)
    import matplotlib.pyplot as plt

    cols = 4
    rows = max(1, -(-len(members) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, s in zip(axes.flat, members, strict=False):
        try:
            frames = features.compute(data.read_audio(s.path, params.sample_rate), params)
            ax.imshow(frames.T, origin="lower", aspect="auto", vmin=params.db_floor, vmax=params.db_ceiling)
        except data.DataError:
            pass  # already flagged 'unreadable'; the title says so
        ax.set_title(s.path.name, fontsize=8)
        if s.flags:
            ax.text(0.01, 0.02, "; ".join(s.flags)[:70], transform=ax.transAxes, fontsize=7, color="red")
    span = f"{params.db_floor:g}..{params.db_ceiling:g} dB"
    fig.suptitle(f"{label}: dB-mel spectrograms ({params.n_bands} bands, {span})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def table(stats: list[ClipStats]) -> str:
    """Console table of flagged clips (all clips are in the PNGs)."""
    flagged = [s for s in stats if s.flags]
    lines = [f"{'clip':40} {'label':20} {'rms dBFS':>8} {'peak':>6}  flags"]
    for s in flagged:
        lines.append(f"{s.path.name[:40]:40} {s.label[:20]:20} {s.rms_dbfs:8.1f} {s.peak:6.3f}  {'; '.join(s.flags)}")
    if not flagged:
        lines.append("(no clip flagged)")
    return "\n".join(lines)
