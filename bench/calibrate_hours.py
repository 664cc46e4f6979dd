"""The verdict hours: the four hours in a home that recipe choices are made on, for one or more bundles, beside
YAMNet as Frigate runs it, on the same samples.

    .venv/bin/python -m bench.calibrate_hours --model BUNDLE [BUNDLE ...] [--json-out FILE]

Each hour is bench/home_hour.py's, built from a background corpus's ``calibrate`` part (never trained on, never
reported): ``background.csv`` and ``background_more.csv`` (``--beds``), each with 90 sounds of ESC-50 fold 1 at
seed 7 and of fold 2 at seed 8 (``--hours``). Two corpora, because the one the never-tuned report hour comes from
(background_more) is quieter for YAMNet than the other: a verdict taken on one corpus alone did not carry
(models/MODEL_CARD.md, 5.2.0). The sounds are of training folds, as every calibrate hour's are (fold 4 is
reported): about four in five are clips the network trained on, the rest its validation clips (the 15% of folds
1-3 held back by recording: 77 of fold 1's 400 clips and 71 of fold 2's in every recipe so far), never trained on.
So the recall here is mostly of heard sounds in a new bed, and the false events are what a choice is judged on.

Every bundle and YAMNet run through the daemon's pipeline and event logic at defaults (bench/streams.py) on each
hour; the table gives each hour's home-label recall and false event starts (home labels / all labels), then the
four hours together: recall over their 360 sounds, false events summed over the 4 h. Beside the home-label false
events, how many distinct (label, source) pairs they are: the background.csv hours replay their two noise files
about 15 times an hour, so one confusion on one file can make most of a column (esc50_seed2 in
configs/experiments/README.md). Nothing here is a report figure: the report hours are
``bench.home_hour --split report``.

``--floors 0.95 0.96 ...`` adds a column per bundle and floor: the bundle's thresholds raised to that floor, on
the same hop scores (no inference again). It is how a threshold floor is chosen by the written rule: the lowest
floor with no home-label false event on the eight hours ``--hours 1 7 2 8 1 17 2 18`` (models/MODEL_CARD.md,
5.3.0). A replayed floor is not a calibrated one: calibration with that floor may also raise a label above it.

``--draws 3`` judges recipes, not networks (models/MODEL_CARD.md, "After 5.3.0", "Three draws per recipe"): the
bundles are taken three at a time in the order given, each three one recipe trained at three training seeds, and a
last table pools each recipe's draws at its calibrated thresholds and at every floor: their recall over all their
sounds (the same sounds for each draw, so the mean of theirs) and their home-label false events summed. Its figure
is that recall at the lowest floor where the sum is at most one per draw per 8 h.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import home_hour, home_stream, streams
from bench.event_scoring import HOME_LABELS, Detection
from edge.daemon.config import load_config
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier

_LOGGER = logging.getLogger(__name__)
BEDS = (streams.BACKGROUND_CSV, streams.SHARED / "data" / "background_more" / "background_more.csv")
HOURS = ((1, 7), (2, 8))
"""(ESC-50 fold, seed) of each hour on each bed."""


@dataclass(frozen=True)
class Hour:
    bed: Path
    fold: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.bed.stem} fold {self.fold} seed {self.seed}"


def run_hour(hour: Hour, classifiers: Sequence[Classifier], args: argparse.Namespace) -> dict[str, Any]:
    """One hour: built once, every bundle and YAMNet at each threshold on it; home_hour's report."""
    where = ["--split", "calibrate", "--fold", str(hour.fold), "--seed", str(hour.seed), "--background", str(hour.bed)]
    size = ["--minutes", str(args.minutes), "--sounds", str(args.sounds), "--esc50", str(args.esc50)]
    ns = home_hour.parse_args([*where, *size, "--threshold", *map(str, args.threshold)])
    first = classifiers[0]
    rate = first.manifest.features.sample_rate
    labels = [x for x in HOME_LABELS if all(x in c.labels for c in classifiers)]
    speech, other = home_stream.bed_material(hour.bed, "calibrate", rate)
    rng = np.random.default_rng([hour.seed, 3])
    sounds = home_stream.draw_sounds(args.esc50, hour.fold, labels, args.sounds, rate, rng)
    home = home_stream.build_home(speech, other, sounds, args.minutes, rate, hour.seed)
    config = load_config(None)
    found: dict[str, list[Detection]] = {}
    floored: dict[str, list[Detection]] = {}
    for c in classifiers:
        found[_name(c)], starts = streams.floored_detections(c, home.samples, config, args.floors)
        floored |= {f"{_name(c)} floor {floor:g}": s for floor, s in zip(args.floors, starts, strict=True)}
    mine, named = home_hour.detect(home, first, ns, ours=found[_name(first)])
    found |= floored | {name: starts for name, starts in mine.items() if name not in found}  # YAMNet, last
    report = home_hour.build_report(home, found, named, ns, hour.fold)
    return {"hour": hour.name} | report


def totals(reports: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per detector over the hours: home-label recall over all their sounds, false event starts summed."""
    out: dict[str, dict[str, float]] = {}
    for report in reports:
        for name, views in report["detectors"].items():
            t = out.setdefault(
                name, dict.fromkeys(("recalled", "sounds", "home_false", "home_distinct", "all_false"), 0)
            )
            t.setdefault("hours", 0.0)
            total = views["home"]["recall"]["total"]
            t["recalled"] += total["recalled"]
            t["sounds"] += total["clips"]
            t["home_false"] += views["home"]["false"]["total"]["events"]
            t["home_distinct"] += views["home"]["false"]["distinct"]
            t["all_false"] += views["all"]["false"]["total"]["events"]
            t["hours"] += report["stream"]["minutes"] / 60.0
    for t in out.values():
        t["recall"] = round(t["recalled"] / t["sounds"], 4) if t["sounds"] else 0.0
        t["hours"] = round(t["hours"], 3)
    return out


def table(reports: Sequence[dict[str, Any]], summed: dict[str, dict[str, float]]) -> str:
    """Rows: the hours, then all of them; columns: the detectors (recall, false starts home / all)."""
    names = list(summed)
    width = max(24, *(len(n) + 2 for n in names))
    lines = [f"{'hour':34}" + "".join(n.rjust(width) for n in names)]
    for report in reports:
        cells = []
        for name in names:
            v = report["detectors"][name]
            recall = v["home"]["recall"]["total"]["recall"]
            home, every = v["home"]["false"]["total"]["events"], v["all"]["false"]["total"]["events"]
            cells.append(f"{recall:.0%}  {home} ({v['home']['false']['distinct']}) / {every}")
        lines.append(f"{report['hour']:34}" + "".join(c.rjust(width) for c in cells))
    hours = next(iter(summed.values()))["hours"] if summed else 0.0
    cells = [
        f"{t['recall']:.1%}  {t['home_false']:g} ({t['home_distinct']:g}) / {t['all_false']:g}" for t in summed.values()
    ]
    lines.append(f"{f'all {len(reports)} ({hours:g} h)':34}" + "".join(c.rjust(width) for c in cells))
    lines.append(
        "cells: home-label recall, then false event starts of home labels (in brackets: distinct label and source, a "
        "bed file replayed counting once) / of all labels in the hour (the last row: recall over every sound, summed)"
    )
    return "\n".join(lines)


def pooled(
    summed: dict[str, dict[str, float]], names: Sequence[str], draws: int, floors: Sequence[float]
) -> list[dict[str, Any]]:
    """Each recipe (``draws`` consecutive bundles) at its calibrated thresholds, then at each floor upwards: the
    draws' recall pooled, their home-label false events summed, and the rule's figure: the first of those rows
    with at most one home-label false event per draw per 8 h (None where none is)."""
    out = []
    for first in range(0, len(names), draws):
        group = names[first : first + draws]
        rows: list[dict[str, Any]] = []
        for floor in (None, *sorted(floors)):
            cells = [summed[n if floor is None else f"{n} floor {floor:g}"] for n in group]
            sounds = sum(c["sounds"] for c in cells)
            rows.append(
                {
                    "floor": "calibrated" if floor is None else floor,
                    "recall": round(sum(c["recalled"] for c in cells) / sounds, 4) if sounds else 0.0,
                    "home_false": sum(c["home_false"] for c in cells),
                }
            )
        budget = sum(summed[n]["hours"] for n in group) / 8.0
        figure = next((r for r in rows if r["home_false"] <= budget), None)
        out.append({"draws": list(group), "rows": rows, "budget": round(budget, 3), "figure": figure})
    return out


def pooled_table(recipes: Sequence[dict[str, Any]]) -> str:
    """One line per recipe and floor; the figure marked."""
    lines = ["recipes, their draws pooled (recall over every draw's sounds, home-label false events summed):"]
    for recipe in recipes:
        lines.append("  " + " + ".join(recipe["draws"]))
        for row in recipe["rows"]:
            floor = row["floor"] if isinstance(row["floor"], str) else f"floor {row['floor']:g}"
            mark = "  <- figure" if row is recipe["figure"] else ""
            lines.append(f"    {floor:12} {row['recall']:.1%}  {row['home_false']:g}{mark}")
        if recipe["figure"] is None:
            lines.append(f"    no floor with at most {recipe['budget']:g} home-label false events")
    return "\n".join(lines)


def _name(classifier: Classifier) -> str:
    m = classifier.manifest
    return f"ours {m.name} {m.version}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", default=[streams.ROOT / "edge" / "models" / "esc50.auricle"])
    parser.add_argument("--beds", type=Path, nargs="+", default=list(BEDS), help="background CSVs (kind and split)")
    parser.add_argument("--hours", type=int, nargs="+", default=[v for h in HOURS for v in h], help="FOLD SEED ...")
    parser.add_argument("--esc50", type=Path, default=streams.ESC50_CSV, help="esc50.csv, with audio/ beside it")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sounds", type=int, default=90)
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.8, 0.5], help="YAMNet score(s) that fire")
    parser.add_argument(
        "--floors", type=float, nargs="+", default=[], help="also each bundle's thresholds raised to these (0..1)"
    )
    parser.add_argument(
        "--draws", type=int, default=0, help="pool the bundles N at a time, each N one recipe's draws (0: no pooling)"
    )
    parser.add_argument("--json-out", type=Path, default=streams.ROOT / "runs" / "bench" / "calibrate_hours.json")
    args = parser.parse_args(argv)
    if len(args.hours) % 2:
        parser.error("--hours: pairs of FOLD SEED")
    if any(not 0.0 <= f <= 1.0 for f in args.floors):
        parser.error("--floors: scores between 0 and 1")
    if args.draws < 0 or (args.draws and len(args.model) % args.draws):
        parser.error(
            f"--draws {args.draws}: the {len(args.model)} bundles of --model are not whole recipes of that many"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    classifiers = [Classifier(read_bundle(path), threads=1) for path in args.model]
    if len({_name(c) for c in classifiers}) < len(classifiers):
        _LOGGER.error("calibrate_hours: two bundles share a name and version; give each its own")
        return 2
    pairs = list(zip(args.hours[::2], args.hours[1::2], strict=True))
    hours = [Hour(bed, fold, seed) for bed in args.beds for fold, seed in pairs]
    reports = []
    for hour in hours:
        _LOGGER.info("%s", hour.name)
        reports.append(run_hour(hour, classifiers, args))
    summed = totals(reports)
    doc: dict[str, Any] = {"models": [str(p) for p in args.model], "hours": reports, "totals": summed}
    text = table(reports, summed)
    if args.draws:
        doc["recipes"] = pooled(summed, [_name(c) for c in classifiers], args.draws, args.floors)
        text += "\n" + pooled_table(doc["recipes"])
    streams.publish(text, doc, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
