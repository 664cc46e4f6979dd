"""Evaluate a bundle on ESC-50 fold 4 through the device code and compare with the targets.

Usage: .venv/bin/python bench/train_esc50.py [BUNDLE] [--fold 4] [--data ../shared/data/esc50]

Clip score = mean of the window scores at the bundle's own hop (what the
daemon does), through ``edge.model.classifier.Classifier`` on the bundle's int8 model.
Prints the figures and the comparison in the same run; never gates CI.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from training.data import cache, data
from training.evaluate import evaluate
from training.recipe.config import DataConfig

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.85
REFERENCES = (("human listeners (Piczak 2015)", 0.813), ("YAMNet embedding + linear head", 0.83))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", default=str(ROOT / "models" / "esc50.auricle"))
    ap.add_argument("--fold", type=int, default=4)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "esc50"))
    ap.add_argument("--cache", default=str(ROOT / ".cache" / "features"))
    args = ap.parse_args()
    bundle = read_bundle(args.bundle)
    m = bundle.manifest
    manifest = Path(args.data) / "esc50.csv"
    clips = [c for c in data.load_clips(DataConfig(), manifest, Path(args.data) / "audio") if c.fold == args.fold]
    extracted = cache.extract(clips, m.features, Path(args.cache))
    index = {label: i for i, label in enumerate(m.labels)}
    truth = np.array([index[c.label] for c in extracted.clips])
    clf = Classifier(bundle)
    t0 = time.perf_counter()
    scores = evaluate.score_clips(clf, extracted.frames, range(len(extracted.clips)), m.hop_frames)
    seconds = time.perf_counter() - t0
    r = evaluate.classification(truth, scores.argmax(axis=1), len(m.labels))
    print(f"bundle {args.bundle}: {m.name} {m.version}, {m.input.dtype} {list(m.input.shape)}, hop {m.hop_frames}")
    print(
        f"ESC-50 fold {args.fold}: {len(truth)} clips, clip accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}"
    )
    print(f"  scored in {seconds:.1f} s; per-window latency {evaluate.latency_ms(clf, 300):.3f} ms (1 thread)")
    verdict = "MEETS" if r["accuracy"] >= TARGET else "BELOW"
    print(f"  target >= {TARGET:.0%}: {verdict} ({100 * (r['accuracy'] - TARGET):+.1f} points)")
    for name, acc in REFERENCES:
        print(f"  vs {name} {acc:.1%}: {100 * (r['accuracy'] - acc):+.1f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
