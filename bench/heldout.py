"""A training run's held-out false alarms measured again on another config's report part.

    .venv/bin/python -m bench.heldout RUN_DIR [RUN_DIR ...] [--config configs/experiments/esc50_clean_background.yaml]

For each run directory (a training output: ``model_int8.tflite``, ``report.json``), the int8 model at the
run's own thresholds plays the ``report`` part of ``--config``'s background (its ``exclude`` patterns
applied) back to back, then the same minutes of mixtures of it, through the daemon's pipeline and event
logic (``training.calibrate.replay.heldout_false_alarms``, as the training report does), each start listed
with what was playing (grouped by label and files). Beside it, the figure the run reported on its own report
part. Used to ask what the held-out figures are once recordings of labels
are no longer counted as background (configs/experiments/esc50_clean_background.yaml).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.streams import publish
from training.calibrate import replay
from training.data import background
from training.evaluate import evaluate
from training.recipe.load import LoadedConfig, load

_LOGGER = logging.getLogger("bench.heldout")
ROOT = Path(__file__).resolve().parents[1]


def report_paths(cfg: LoadedConfig) -> list[Path]:
    """The report part of every background source of ``cfg``, excludes applied."""
    paths: list[Path] = []
    for source in cfg.config.data.background:
        paths += background.list_files(source, cfg.path(source.path))["report"]
    return paths


def measure(run: Path, cfg: LoadedConfig, paths: Sequence[Path]) -> dict[str, Any]:
    """The run's own held-out figure and the one on ``paths``, at the run's thresholds."""
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    labels = list(report["labels"])
    clf = evaluate.classifier(cfg.config, labels, (run / "model_int8.tflite").read_bytes(), "int8")
    again = replay.heldout_false_alarms(clf, paths, report["thresholds"], 60.0 * cfg.config.calibration.mixture_minutes)
    return {"run": str(run), "reported": report.get("heldout_background"), "again": again}


def _line(name: str, figure: dict[str, Any] | None) -> str:
    if not figure:
        return f"  {name:<10} -"
    labels = ", ".join(f"{k} {v}" for k, v in figure["per_label"].items()) or "none"
    return (
        f"  {name:<10} {figure['false_events']:>3} in {figure['hours'] * 60:5.1f} min = "
        f"{figure['false_per_hour']:5.1f}/h (95% bound {figure['upper_95_per_hour']:.1f}): {labels}"
    )


def playing_lines(figure: dict[str, Any] | None) -> list[str]:
    """The starts grouped by label and what was playing: a few files are often behind most of them."""
    groups: dict[tuple[str, str, str], list[bool]] = {}
    for stream in ("plain", "mixtures"):
        part = (figure or {}).get(stream) or {}
        for e in part.get("events", []):
            files = "; ".join(x for x in e["playing"] if not x.endswith(" dBFS"))
            groups.setdefault((stream, e["label"], files), []).append(bool(e["repeat"]))
    return [
        f"    {label} x{len(repeats)} ({repeats.count(False)} alarms) in {stream}: {files}"
        for (stream, label, files), repeats in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="training run directories")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "experiments" / "esc50_clean_background.yaml")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load(args.config)
    paths = report_paths(cfg)
    results = [measure(run, cfg, paths) for run in args.runs]
    lines = [f"report part of {args.config.name}: {len(paths)} files"]
    count = hours = 0.0
    for r in results:
        lines += [r["run"], _line("reported", r["reported"]), _line("again", r["again"]), *playing_lines(r["again"])]
        if r["again"]:
            count, hours = count + r["again"]["false_events"], hours + r["again"]["hours"]
    if hours:
        lines.append(f"all runs again: {count:.0f} false events in {hours:.2f} h = {count / hours:.2f} per hour")
    publish("\n".join(lines), results, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
