"""Choosing what bench/teach.py measures with, on calibrate material only: ESC-50 folds 1-3 and the background
corpora's calibrate groups outside ``report`` (never the report split, never fold 4).

    .venv/bin/python -m bench.tune_teach [--part confusion fewshot feedback] [--l2 1 10 100]
        [--floor 0.5 0.9 0.99] [--margin 0 2] [--k 5] [--draws 3] [--json-out FILE]

- **confusion**: the shipped model over every clip of folds 1-3 in one stream (1 s of -70 dBFS noise between
  them), through the daemon's pipeline and event logic: the wrong-label event starts on each label's clips,
  most frequent pair first.  The top pair is bench/teach.py's feedback case (``CONFUSION``).
- **fewshot**: the heads' penalty (``edge.learn.heads.L2``) and threshold rule (``ThresholdRule``: floor,
  margin in logits above the highest held-out negative) swept at K examples (5), bench/teach.py's few-shot
  protocol on the calibrate plan: examples from folds 1-2, withheld sounds of fold 3 in a home bed of
  background_more's calibrate part, both corpora's calibrate part back to back.  Each penalty is fitted
  once per draw; each rule re-sets the thresholds on the same held-out negatives (``with_threshold``).
- **feedback**: bench/teach.py's feedback protocol on the calibrate plan (fold 3 clips) at the device's
  defaults.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import streams, teach
from bench import teach_material as tm
from bench import teach_record as tr
from bench.event_scoring import Span, in_window
from edge.detect.teaching import BUDGET_PER_HOUR
from edge.learn.heads import Head, ThresholdRule, split_negatives, with_threshold
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from training.model import yamnet

F32 = tm.F32


def confusion_pairs(clf: Classifier, folds: Sequence[int] = (1, 2, 3)) -> dict[str, Any]:
    """Wrong-label starts per (clip label, event label) of the shipped model on the folds' clips in one stream."""
    rate = clf.manifest.features.sample_rate

    def make() -> tuple[F32, list[Span]]:
        items = [item for f in folds for item in streams.fold_items(streams.ESC50_CSV, f, rate, None)]
        return streams.build_stream(items, 1.0, rate, 5)

    hops = tr.cached_hops(clf, f"folds{''.join(map(str, folds))}-gap1-seed5", make)
    found = [d for d, _ in tm.replay(hops, None, teach.model_detector(clf, None))]
    pairs: collections.Counter[tuple[str, str]] = collections.Counter()
    heard = 0
    for span in hops.spans:
        near = [d for d in found if in_window(span, d.start_s)]
        heard += any(d.label == span.label for d in near)
        pairs.update((span.label, d.label) for d in near if d.label != span.label)
    return {
        "folds": list(folds), "clips": len(hops.spans), "recall": round(heard / len(hops.spans), 4),
        "pairs": [[a, b, n] for (a, b), n in pairs.most_common(12)],
    }  # fmt: skip


def rethreshold(heads: Sequence[Head], yes: dict[str, F32], common: F32, rule: ThresholdRule) -> list[Head]:
    """The label heads with their thresholds set again by ``rule`` on the held-out negatives each was fitted
    beside (``fit_like_device``'s negatives, ``fit_head``'s split)."""
    labels, out = sorted(yes), []
    for h in heads:
        negs = np.concatenate([common, *(yes[x] for x in labels if x != h.label)])
        out.append(with_threshold(h, yes[h.label], split_negatives(negs)[1], BUDGET_PER_HOUR, 18000.0, rule))
    return out


def sweep(
    fs: teach.FewShot, fits: Sequence[tuple[float, float]], rules: Sequence[ThresholdRule], k: int
) -> list[dict[str, Any]]:
    """Every (penalty, spread floor) and rule at K examples, pooled over the plan's draws."""
    common, rows = np.concatenate([fs.bundle, fs.reservoir]), []
    for l2, spread in fits:
        runs: dict[ThresholdRule, list[dict[str, Any]]] = {rule: [] for rule in rules}
        for d in teach.draws(fs.names, fs.plan):
            yes = fs.examples(d, k)
            heads = tm.fit_cached(fs.base, yes, {}, common, l2=l2, spread_floor=spread)
            for rule in rules:
                runs[rule].append(fs.run(rethreshold(heads, yes, common, rule)))
        for rule, r in runs.items():
            row = teach.pooled({"k": k, "negatives": "bundle+reservoir", "runs": r}, fs.home, fs.background)
            rows.append({"l2": l2, "spread": spread, "floor": rule.floor, "margin": rule.margin} | row)
            logging.getLogger("bench.tune_teach").info("%s", _line(rows[-1]))
    return rows


def _line(r: dict[str, Any]) -> str:
    thr = "/".join(f"{v:.4g}" for v in r["threshold_min_median_max"])
    return (
        f"l2 {r['l2']:>6g} spread {r['spread']:>5g} floor {r['floor']:>5g} margin {r['margin']:>4g}  "
        f"recall {r['recall']:>5.0%} ({r['heard']}/{r['sounds']})  false/h home {r['home_false_per_h']:>7.2f}  "
        f"background {r['background_false_per_h']:>7.2f}  thresholds {thr}"
    )


def table(report: dict[str, Any]) -> str:
    lines = []
    c = report.get("confusion")
    if c:
        lines.append(
            f"CONFUSIONS of {report['model']} on folds {c['folds']} ({c['clips']} clips, recall {c['recall']:.0%}):"
        )
        lines.append("  " + ", ".join(f"{a} -> {b} {n}" for a, b, n in c["pairs"]))
    if report.get("fewshot"):
        lines.append(f"FEW-SHOT SWEEP (calibrate), K={report['k']}, {report['draws']} draws:")
        lines += ["  " + _line(r) for r in report["fewshot"]]
    if report.get("feedback"):
        lines += teach._feedback_lines(report["feedback"], "calibrate", report["model"])
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=streams.ROOT / "models" / "esc50.auricle")
    p.add_argument("--part", nargs="+", choices=("confusion", "fewshot", "feedback"), default=["confusion", "fewshot"])
    p.add_argument("--l2", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    p.add_argument("--spread", type=float, nargs="+", default=[0.0], help="spread floors (heads.SPREAD_FLOOR)")
    p.add_argument("--floor", type=float, nargs="+", default=[0.5, 0.9, 0.99])
    p.add_argument("--margin", type=float, nargs="+", default=[0.0, 2.0])
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--cache", type=Path, default=tr.CACHE)
    p.add_argument("--json-out", type=Path, default=streams.ROOT / "runs" / "bench" / "tune_teach.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tr.CACHE = args.cache
    clf = Classifier(read_bundle(args.model), threads=1)
    plan = dataclasses.replace(teach.PLANS["calibrate"], draws=args.draws)
    report: dict[str, Any] = {"k": args.k, "draws": args.draws, "model": f"{clf.manifest.name} {clf.manifest.version}"}
    if "confusion" in args.part:
        report["confusion"] = confusion_pairs(clf)
    if "fewshot" in args.part:
        peers = streams.SHARED / "peers"
        peer = yamnet.Yamnet(yamnet.YamnetParams(model_path=peers / "yamnet_spectra_in.tflite",
                                                 class_map_path=peers / "yamnet_class_map.csv"))  # fmt: skip
        fs = teach.setup(plan, tr.YamnetBase(peer, clf.manifest))
        rules = [ThresholdRule(floor=f, margin=m) for f in args.floor for m in args.margin]
        report["fewshot"] = sweep(fs, [(a, b) for a in args.l2 for b in args.spread], rules, args.k)
    if "feedback" in args.part:
        report["feedback"] = teach.feedback(plan, clf)
    streams.publish(table(report), report, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
