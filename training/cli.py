"""``auricle-train``: inspect a dataset, then prepare, fit, export, evaluate - or ``run`` all."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from edge.model.bundle import BundleError
from edge.schema import ConfigError
from training.data.data import DataError
from training.recipe import stages
from training.recipe.load import LoadedConfig, load

_LOGGER = logging.getLogger(__name__)

_EXPECTED = (ConfigError, DataError, BundleError, FileNotFoundError)
RUN_LOG = "run.log"
"""The run folder's log: one line per stage with its time (``--log`` names another file)."""


def _say(line: str) -> None:
    """A stage's summary: on the terminal, and in the run's log."""
    print(line)
    stages.printed(line)


def _prepare(loaded: LoadedConfig) -> None:
    from training.data import prepare

    t0 = time.monotonic()
    p = prepare.prepare(loaded)
    params = loaded.config.features
    _say(f"prepare: {p.summary(params.hop_samples / params.sample_rate)} ({time.monotonic() - t0:.0f} s)")
    folds = any(c.fold is not None for c in p.clips)  # folds decide the test clips, not a fraction
    print("\n".join(p.class_lines(None if folds else loaded.config.data.test_fraction)))


def _fit(loaded: LoadedConfig) -> None:
    from training import pipeline
    from training.data import prepare

    t0 = time.monotonic()
    model = pipeline.run_fit(loaded, prepare.load(loaded.output))
    _say(f"fit: {model.count_params()} parameters, model in {loaded.output} ({time.monotonic() - t0:.0f} s)")


def _export(loaded: LoadedConfig) -> None:
    from training import pipeline
    from training.data import prepare

    t0 = time.monotonic()
    f, q = pipeline.run_export(loaded, prepare.load(loaded.output))
    sizes = f"float32 {len(f) / 1024:.0f} KiB, int8 {len(q) / 1024:.0f} KiB"
    _say(f"export: {sizes} (loads in the device runtime) ({time.monotonic() - t0:.0f} s)")


def _evaluate(loaded: LoadedConfig) -> None:
    from training import pipeline
    from training.data import prepare

    t0 = time.monotonic()
    full = pipeline.run_evaluate(loaded, prepare.load(loaded.output))
    h, cal = full["headline"], full.get("calibration")
    budget = (
        f"; thresholds for {cal['budget_per_hour']:g} false events/h: {cal['false_per_hour']:.3g}/h on "
        f"{cal['background_hours'] * 60:.1f} min of calibrate background, validation recall "
        f"{cal['recall'] if cal['recall'] is None else round(cal['recall'], 3)}, {len(cal['failing'])} labels failing"
        if cal
        else ""
    )
    _say(
        f"evaluate: {h['test']} clip accuracy float {h['float_clip_accuracy']:.3f} int8 {h['int8_clip_accuracy']:.3f} "
        f"(drop {h['int8_drop_points']:.1f} points, agreement {h['top1_agreement']:.3f}), "
        f"int8 {h['int8_latency_ms']:.2f} ms/window{budget}; bundle {pipeline.bundle_path(loaded)} "
        f"({time.monotonic() - t0:.0f} s)"
    )


def _run(loaded: LoadedConfig) -> None:
    t0 = time.monotonic()
    for stage in (_prepare, _fit, _export, _evaluate):
        stage(loaded)
    _say(f"run: done in {time.monotonic() - t0:.0f} s")


def _cv(loaded: LoadedConfig) -> None:
    from training import crossval

    summary = crossval.run(loaded)
    _say(f"cv: {summary}")


def _cv_evaluate(loaded: LoadedConfig) -> None:
    from training import crossval

    summary = crossval.evaluate_again(loaded)
    _say(f"cv evaluate: {summary}")


def _inspect(args: argparse.Namespace) -> int:
    from training.data import quality

    rows, out = quality.inspect_dataset(Path(args.dataset), Path(args.out), args)
    flagged = sum(1 for r in rows if r.flags)
    if args.csv:
        _write_manifest(quality.records(rows, Path(args.csv).parent), Path(args.csv))
    if args.json:
        for record in quality.records(rows, Path(args.dataset) if Path(args.dataset).is_dir() else Path.cwd()):
            print(json.dumps(record))
        return 0
    print(quality.table(rows))
    groups = len({r.group for r in rows if r.group.startswith("dup-")})
    print(f"inspect: {len(rows)} clips, {flagged} flagged, {groups} near-duplicate groups, contact sheets in {out}")
    return 0


def _write_manifest(rows: list[dict[str, object]], path: Path) -> None:
    """A CSV manifest with a ``group`` column: ``data.manifest: FILE`` and ``data.group_column: group`` keep
    near-duplicates on one side of every split."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["filename", "label", "group"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _embed(args: argparse.Namespace) -> int:
    """``auricle-train embed``: a bundle with its embedding output declared and a background set."""
    from training.model.embedding import EmbeddingError, background_files, background_kinds, embed_bundle

    csvs = [Path(x) for x in args.background]
    files = background_files(csvs)
    if not files:
        print(f"auricle-train: embed: no 'train' files in {', '.join(args.background)}", file=sys.stderr)
        return 2
    key = Path(args.key) if args.key else None
    try:
        m = embed_bundle(
            Path(args.bundle), Path(args.output), args.version, files, args.windows, key, args.size,
            kinds=background_kinds(csvs),
        )  # fmt: skip
    except EmbeddingError as exc:
        print(f"auricle-train: embed: {args.bundle}: {exc}", file=sys.stderr)
        return 2
    from edge.model.bundle import read_bundle
    from edge.model.embedding import background_embeddings

    b = read_bundle(args.output)
    rows = len(background_embeddings(b.background, m.embedding, args.output)) if b.background and m.embedding else 0
    size = m.embedding.size if m.embedding else 0
    print(f"embed: wrote {args.output}: {m.name} {m.version}, {size}-value embedding, {rows} background rows")
    return 0


def _suggest(args: argparse.Namespace) -> int:
    """``auricle-train audioset-suggest``: the AudioSet classes that fire on each label's training clips."""
    from training.model import audioset_map

    found = audioset_map.suggest(load(args.config), args.top, args.threshold, args.min_share)
    print("\n".join(audioset_map.lines(found)))
    if args.output:
        audioset_map.write_mapping(Path(args.output), found)
        unmapped = sum(1 for s in found.suggestions if not s.proposed)
        print(
            f"audioset-suggest: wrote {args.output} ({unmapped} labels unmapped): edit it, then name it as "
            "audioset.confirm.mapping"
        )
    return 0


def _screen(args: argparse.Namespace) -> int:
    """``auricle-train screen``: background files that sound like the labels, as an exclude list."""
    from training.model import screening

    found = screening.screen(load(args.config), Path(args.mapping) if args.mapping else None, args.threshold)
    print("\n".join(screening.lines(found, args.show)))
    if args.output:
        screening.write_exclude(Path(args.output), found)
        print(f"screen: wrote {args.output}: name it as exclude_from in each data.background source to leave them out")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "inspect": _inspect,
    "embed": _embed,
    "audioset-suggest": _suggest,
    "screen": _screen,
}
"""The commands that do not run a stage."""

STAGES: dict[str, Callable[[LoadedConfig], None]] = {
    "prepare": _prepare,
    "fit": _fit,
    "export": _export,
    "evaluate": _evaluate,
    "run": _run,
}


def _unit(text: str) -> float:
    """A score or share in [0, 1], for argparse."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def _count(text: str) -> int:
    """A whole number from 1, for argparse."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, got {text!r}")
    return int(text)


def raise_open_files_limit(wanted: int = 65536) -> None:
    """Every cached file (clips, background, teacher outputs) stays memory-mapped, each holding a descriptor:
    thousands of them pass the common soft limit of 1024, so lift it toward the hard limit."""
    try:
        import resource
    except ImportError:  # not on this platform: nothing to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="auricle-train", description=__doc__)
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("inspect", help="flag suspicious clips and write spectrogram contact sheets")
    p.add_argument("dataset", help="CSV manifest or folder-per-class tree")
    p.add_argument("--out", default="inspect", help="folder for the PNG contact sheets")
    p.add_argument("--audio-root", default="audio", help="manifest file names are relative to this")
    p.add_argument("--label-column", default="category")
    p.add_argument("--filename-column", default="filename")
    p.add_argument("--per-class", type=int, default=12, help="clips per contact sheet")
    p.add_argument("--json", action="store_true", help="one JSON object per clip (file, label, group, flags)")
    p.add_argument("--csv", metavar="FILE", help="write a manifest with a near-duplicate group column")
    p = sub.add_parser("embed", help="declare a bundle's embedding output (for teaching on the device)")
    p.add_argument("bundle", help="a bundle whose heads read a 1024-value embedding (esc50 4.0.0)")
    p.add_argument("--version", required=True, help="the new bundle's version (a minor step: 4.1.0)")
    p.add_argument("--output", "-o", required=True, help="where to write the new bundle")
    p.add_argument("--background", nargs="+", required=True, help="background CSVs; their 'train' files are used")
    p.add_argument("--windows", type=int, default=1500, help="background windows the bundle carries")
    p.add_argument("--key", help="ed25519 private key (PEM) to sign with")
    p.add_argument("--size", type=int, default=1024, help="values in the embedding (YAMNet's: 1024)")
    p = sub.add_parser("audioset-suggest", help="propose AudioSet classes for each label from its training clips")
    p.add_argument("--config", required=True, help="training YAML (its dataset, YAMNet file and mapping)")
    p.add_argument("--top", type=_count, default=3, metavar="N", help="classes shown and proposed per label (3)")
    p.add_argument("--threshold", type=_unit, help="a class fires at this score (default audioset.confirm.threshold)")
    p.add_argument("--min-share", type=_unit, default=0.5, help="propose a class firing on this share of windows")
    p.add_argument("--output", "-o", metavar="CSV", help="write the proposals as a label,audioset_classes mapping")
    p = sub.add_parser("screen", help="list background files that sound like the labels; write an exclude list")
    p.add_argument("--config", required=True, help="training YAML (its background sources, YAMNet file, mapping)")
    p.add_argument("--mapping", metavar="CSV", help="label,audioset_classes (default audioset.confirm.mapping)")
    p.add_argument(
        "--threshold", type=_unit, default=0.3, help="a window scoring this on a label's class lists its file"
    )
    p.add_argument("--show", type=_count, default=5, metavar="N", help="files shown per label (all go to --output)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the list for data.background's exclude_from")
    for name, helptext in (
        ("prepare", "load the dataset, cache features, split"),
        ("fit", "train the model (resumable)"),
        ("export", "write float32 and int8 TFLite files"),
        ("evaluate", "evaluate through edge, write the report and the bundle"),
        ("run", "all stages"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--config", required=True, help="training YAML")
        s.add_argument("--log", metavar="FILE", help=f"one line per stage with its time (default <output>/{RUN_LOG})")
        if name == "run":
            s.add_argument("--cv", action="store_true", help="k-fold cross-validation over the dataset's folds")
        if name == "evaluate":
            s.add_argument(
                "--cv",
                action="store_true",
                help="every fold already trained in <output>/cv evaluated again (no training)",
            )
    return ap


HARMLESS_WARNINGS = (
    "The structure of `inputs` doesn't match the expected structure",  # Keras 3 on a one-input functional model
    "Statistics for quantized inputs were expected",  # the converter; calibration sets the input's quantisation
)
"""Python warnings that say nothing about the run (a first run printed the first one 42 times)."""


def quiet_first_run() -> None:
    """Leave out what says nothing: the known-harmless warnings, and on a machine without an NVIDIA driver the
    TensorFlow runtime's C++ log below FATAL (its CUDA probe's 'failed call to cuInit' error and start-up
    lines).  ``TF_CPP_MIN_LOG_LEVEL`` set by the user wins."""
    for message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message) + ".*")
    if not any(Path(p).exists() for p in ("/dev/nvidiactl", "/proc/driver/nvidia")):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet_first_run()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(stages.not_file_only)
    raise_open_files_limit()
    try:
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        loaded = load(args.config)
        stage = STAGES[args.command]
        if getattr(args, "cv", False):
            stage = _cv_evaluate if args.command == "evaluate" else _cv
        with stages.to_file(Path(args.log) if args.log else loaded.output / RUN_LOG):
            stages.printed(f"auricle-train {args.command} --config {args.config}")
            stage(loaded)
    except _EXPECTED as exc:
        print(f"auricle-train: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
