"""How much of YAMNet's AudioSet behaviour a fine-tuned model kept: its 521-score head beside YAMNet int8 on
the same windows of held-out background.

    .venv/bin/python -m bench.audioset_kept [--model BUNDLE] [--split report] [--config configs/esc50.yaml]
        [--json-out FILE]

The split of every background source of ``--config`` (default ``report``: never trained on) is cut into
windows of 96 frames that both front ends frame alike (hop 160 samples): the model's window through
``edge`` (``Classifier.audioset_scores``), YAMNet's patch through ``training.model.yamnet`` (the peer file
Frigate runs).  Printed: top-1 agreement, agreement on the top-5 sets, mean and p99 absolute score
difference, and agreement of the decisions a home user sees (Speech, Music, Silence at 0.5), per source.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import streams
from edge.features import compute, window_at
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from training.calibrate import replay
from training.data import background
from training.model import yamnet
from training.recipe.load import LoadedConfig, load

_LOGGER = logging.getLogger("bench.audioset_kept")
FRAMES = yamnet.PATCH_FRAMES
DECISIONS = {"Speech": 0, "Music": 132, "Silence": 494}


def pairs(clf: Classifier, peer: yamnet.Yamnet, samples: streams.Floats) -> tuple[np.ndarray, np.ndarray]:
    """(ours, YAMNet): 521 scores of each model on every 96-frame window of ``samples``."""
    m = clf.manifest
    frames = compute(samples, m.features)
    theirs = yamnet.patches(samples, FRAMES * m.features.hop_samples)
    ours = []
    for k in range(len(theirs)):
        clf.scores(window_at(frames, (k + 1) * FRAMES, m.window_frames, m.features))
        scores = clf.audioset_scores()
        assert scores is not None, "a two-output model"
        ours.append(scores.copy())
    return np.stack(ours), np.stack([peer.infer(p)[0] for p in theirs])


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict[str, Any]:
    top5 = [len(set(np.argsort(a)[-5:]) & set(np.argsort(b)[-5:])) / 5 for a, b in zip(ours, theirs, strict=True)]
    diff = np.abs(ours - theirs)
    out: dict[str, Any] = {
        "windows": len(ours),
        "top1_agreement": round(float(np.mean(ours.argmax(1) == theirs.argmax(1))), 4),
        "top5_overlap": round(float(np.mean(top5)), 4),
        "mean_abs_diff": round(float(diff.mean()), 5),
        "p99_abs_diff": round(float(np.percentile(diff, 99)), 4),
    }
    for name, i in DECISIONS.items():
        out[f"{name.lower()}_decision_agreement"] = round(
            float(np.mean((ours[:, i] >= 0.5) == (theirs[:, i] >= 0.5))), 4
        )
        out[f"{name.lower()}_share_yamnet"] = round(float(np.mean(theirs[:, i] >= 0.5)), 4)
    return out


def _line(name: str, r: dict[str, Any]) -> str:
    return (
        f"  {Path(name).name:<24} {r['windows']:>6} windows  top-1 {r['top1_agreement']:.1%}  "
        f"top-5 overlap {r['top5_overlap']:.1%}  |diff| mean {r['mean_abs_diff']:.4f} p99 "
        f"{r['p99_abs_diff']:.3f}  Speech/Music/Silence >= 0.5 agree "
        f"{r['speech_decision_agreement']:.1%} / {r['music_decision_agreement']:.1%} / "
        f"{r['silence_decision_agreement']:.1%} (YAMNet: {r['speech_share_yamnet']:.0%} / "
        f"{r['music_share_yamnet']:.0%} / {r['silence_share_yamnet']:.0%} of windows)"
    )


def measure(clf: Classifier, peer: yamnet.Yamnet, loaded: LoadedConfig, split: str) -> dict[str, Any]:
    """Agreement per background source of ``loaded`` and over all of them."""
    rate = clf.manifest.features.sample_rate
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for source in loaded.config.data.background:
        paths = background.list_files(source, loaded.path(source.path))[split]
        parts = [x for x in replay.read_part(paths, rate) if len(x) >= yamnet.FRIGATE_HOP_SAMPLES]
        got = [pairs(clf, peer, x) for x in parts]
        if got:
            found[source.path] = (np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got]))
    report: dict[str, Any] = {"sources": {name: agreement(*pair) for name, pair in found.items()}}
    if found:
        report["all"] = agreement(*(np.concatenate(side) for side in zip(*found.values(), strict=True)))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=streams.ROOT / "models" / "esc50.auricle")
    p.add_argument("--split", default="report", choices=("report", "calibrate", "train"))
    p.add_argument("--config", type=Path, default=streams.ROOT / "configs" / "esc50.yaml", help="the backgrounds")
    p.add_argument("--json-out", type=Path, default=streams.ROOT / "runs" / "bench" / "audioset_kept.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    clf = Classifier(read_bundle(args.model), threads=1)
    if clf.manifest.audioset is None:
        raise SystemExit(f"{args.model}: no AudioSet head")
    peers = streams.SHARED / "peers"
    peer = yamnet.Yamnet(yamnet.YamnetParams(model_path=peers / "yamnet_spectra_in.tflite",
                                             class_map_path=peers / "yamnet_class_map.csv"))  # fmt: skip
    report = {"model": str(args.model), "split": args.split} | measure(clf, peer, load(args.config), args.split)
    m = clf.manifest
    lines = [f"{m.name} {m.version}'s AudioSet head against YAMNet int8, split {args.split}"]
    lines += [_line(name, r) for name, r in [*report["sources"].items(), ("all", report.get("all"))] if r]
    streams.publish("\n".join(lines), report, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
