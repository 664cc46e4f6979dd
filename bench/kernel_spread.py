"""How far int8 kernels, runtime releases and machines move a bundle's outputs, and what the over-the-air
self-test's rule (edge/model/agreement.py) makes of it.

    .venv/bin/python -m bench.kernel_spread [--model BUNDLE] [--clips 32] [--save FILE] [--against FILE ...]
    python -m bench.kernel_spread --windows FILE --save OTHER      # on another machine or runtime

Every hop's window of every 25th ESC-50 fold-3/4 clip goes through the bundle on XNNPACK and on TFLite's builtin
kernels, on this machine's runtime. Each family is compared with XNNPACK here, per window, on every output
(labels and AudioSet classes):
- within 4 output steps (the old rule);
- within the self-test's rule (4 output steps, or 2 steps of the logit an output is the sigmoid of);
- the same on the windows the self-test may store: those on which XNNPACK and the builtin kernels agree within
  1 step here (``window_choice.STABLE_STEPS``).

``--save`` writes the windows and each family's outputs. On another machine (a Pi, or ``../shared/tools/pi``) or
another runtime, ``--windows FILE --save OTHER`` runs the same windows there, and ``--against OTHER ...`` here
adds its families to the table. That is how docs/bundle.md's figures were measured.
"""

from __future__ import annotations

import argparse
import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import numpy.typing as npt

from edge.model import agreement, window_choice
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from edge.model.runtime import Kernels

_LOGGER = logging.getLogger("bench.kernel_spread")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "esc50.auricle"
EVERY = 25
"""Every 25th clip of folds 3 and 4 (32 clips, 672 windows at esc50's hop)."""

Outputs = npt.NDArray[np.float32]
"""One row per window: the label scores, then the AudioSet scores."""


def windows_of(clips: list[npt.NDArray[np.float32]], classifier: Classifier) -> npt.NDArray[np.int16]:
    """Every hop's window of each clip, as int16 PCM."""
    m = classifier.manifest
    need, hop = m.window_samples, m.features.hop_samples * m.hop_frames
    found = [c[i : i + need] for c in clips for i in range(0, len(c) - need + 1, hop)]
    return window_choice.pcm(np.array(found))


def esc50_clips(root: Path | None, limit: int) -> list[npt.NDArray[np.float32]]:
    import soundfile as sf  # only here: a run on saved windows (a Pi) needs no audio files

    from bench import streams

    root = root or streams.ESC50_CSV.parent
    with (root / "esc50.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] in ("3", "4")][::EVERY][:limit]
    return [sf.read(root / "audio" / r["filename"], dtype="float32")[0] for r in rows]


def outputs(classifier: Classifier, pcm: npt.NDArray[np.int16]) -> Outputs:
    rows = []
    for window in pcm:
        scores, audioset = agreement.all_outputs(classifier, window.astype(np.float32) / np.float32(32768.0))
        rows.append(scores if audioset is None else np.concatenate([scores, audioset]))
    return np.array(rows, dtype=np.float32)


def families(model: Path, pcm: npt.NDArray[np.int16]) -> dict[str, Outputs]:
    """Every kernel family of this machine's runtime: its runtime line -> its outputs."""
    bundle = read_bundle(model)
    found = {}
    for kernels in get_args(Kernels):
        classifier = Classifier(bundle, kernels=kernels)
        found[classifier.runtime_text] = outputs(classifier, pcm)
    return found


@dataclass(frozen=True)
class Row:
    """One kernel family against XNNPACK here."""

    family: str
    windows: int
    within_4_steps: float
    """Share of windows with every output within 4 output steps."""
    within_rule: float
    """Share of windows on which the self-test's rule passes."""
    stable_windows: int
    """Windows the self-test may store (XNNPACK and builtin here within 1 step)."""
    stable_within_rule: float
    max_steps: float


def table(reference: Classifier, here: dict[str, Outputs], other: dict[str, Outputs]) -> list[Row]:
    """One row per family, this machine's first."""
    n = len(reference.manifest.labels)

    def judge(a: Outputs, b: Outputs) -> tuple[float, float, bool]:
        return agreement.compare_outputs(reference, [a[:n], a[n:]], [b[:n], b[n:]])

    xnnpack, builtin = (
        next(v for k, v in here.items() if k.endswith(f", {kind} kernels")) for kind in get_args(Kernels)
    )
    stable = np.array(
        [judge(a, b)[0] <= window_choice.STABLE_STEPS + 1e-3 for a, b in zip(xnnpack, builtin, strict=True)]
    )
    rows = []
    for name, found in (here | other).items():
        judged = [judge(a, b) for a, b in zip(xnnpack, found, strict=True)]
        steps, passed = np.array([j[0] for j in judged]), np.array([j[2] for j in judged])
        kept = float(np.mean(passed[stable])) if stable.any() else float("nan")
        within = float(np.mean(steps <= agreement.INT8_TOLERANCE_STEPS + 1e-3))
        rows.append(Row(name, len(judged), within, float(np.mean(passed)), int(stable.sum()), kept, float(steps.max())))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--clips", type=int, default=32, help="ESC-50 clips (every 25th of folds 3 and 4)")
    ap.add_argument("--data", type=Path, help="the ESC-50 folder (default: bench/streams.py's, under ../shared)")
    ap.add_argument("--windows", type=Path, help="run the windows saved in this file instead of ESC-50 clips")
    ap.add_argument("--save", type=Path, help="write the windows and this machine's outputs here (.npz)")
    ap.add_argument("--against", type=Path, nargs="*", default=[], help="outputs saved on other machines")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    reference = Classifier(read_bundle(args.model))
    pcm = np.load(args.windows)["pcm"] if args.windows else windows_of(esc50_clips(args.data, args.clips), reference)
    here = families(args.model, pcm)
    if args.save:
        arrays: dict[str, npt.NDArray[np.generic]] = {"pcm": pcm} | {f"out:{k}": v for k, v in here.items()}
        np.savez(args.save, **arrays)  # type: ignore[arg-type]
        _LOGGER.info("saved %d windows and %d families to %s", len(pcm), len(here), args.save)
    other: dict[str, Outputs] = {}
    for path in args.against:
        with np.load(path) as saved:
            if not np.array_equal(saved["pcm"], pcm):
                raise SystemExit(f"kernel_spread: {path}: not the same windows as this run")
            other |= {k.removeprefix("out:"): saved[k] for k in saved.files if k.startswith("out:")}
    _LOGGER.info("against %s, %s, %d windows", reference.runtime_text, args.model.name, len(pcm))
    _LOGGER.info("%-52s %10s %10s %14s %6s", "family", "<=4 steps", "rule", "stable: rule", "max")
    for row in table(reference, here, other):
        _LOGGER.info(
            "%-52s %9.1f%% %9.1f%% %9.1f%% of %d %6.0f", row.family, 100 * row.within_4_steps,
            100 * row.within_rule, 100 * row.stable_within_rule, row.stable_windows, row.max_steps,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
