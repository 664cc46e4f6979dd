"""k-fold cross-validation over a manifest's folds: each fold held out once.

Every fold is a complete run (its own validation split, early stopping,
calibration and thresholds drawn from the training folds only) in
``<output>/cv/fold_<k>``; ``cv.json`` holds the per-fold and mean figures,
written again after each fold (``folds_left`` lists those still to run).

A fold of the shipped recipe takes over an hour on two CPU cores, so a
cross-validation resumes: a finished fold leaves ``cv_fold.json`` (its
headline and a fingerprint of its config), and a rerun reuses every fold whose
fingerprint still matches.  The fingerprint covers the config, not the code or
the audio: after changing either, delete ``<output>/cv``.

``evaluate_again`` (``auricle-train evaluate --cv``) runs only the evaluate stage of
every fold, with another config, over folds already trained: copy a cross-validation's
``cv/`` folder into the new config's output first.  A new threshold floor or rule is
then measured across folds in minutes instead of hours.  It leaves each fold's
``cv_fold.json`` as training wrote it, so a later ``run --cv`` with the new config
trains the folds again rather than reuse them under a config they were not trained with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.durable import write_durably
from training import pipeline
from training.data import data, prepare
from training.model import export
from training.recipe.load import LoadedConfig, replace

_LOGGER = logging.getLogger(__name__)

FOLD_RECORD = "cv_fold.json"


def fold_config(loaded: LoadedConfig, fold: int) -> LoadedConfig:
    """The run config with ``fold`` held out and its own output directory."""
    cfg = loaded.config
    d = dataclasses.replace(cfg.data, train_folds=(), test_folds=(fold,))
    b = dataclasses.replace(cfg.bundle, path="")
    return replace(loaded, data=d, bundle=b, output=str(loaded.output / "cv" / f"fold_{fold}"))


def run(loaded: LoadedConfig) -> str:
    """Run every fold; write ``cv.json``; return a one-line summary."""
    folds = _folds(loaded)
    per_fold: dict[int, dict[str, Any]] = {}
    for fold in folds:  # cv.json after each: a cross-validation cut short shows the folds it has
        per_fold[fold] = _fold(fold_config(loaded, fold))
        path, summary = _write(loaded, per_fold, [k for k in folds if k not in per_fold])
    return _line(len(folds), path, summary)


def evaluate_again(loaded: LoadedConfig) -> str:
    """Every fold's evaluate stage with this config over the folds trained in ``<output>/cv``; ``cv.json``
    written again; a one-line summary.  DataError naming the first fold that has no exported model."""
    configs = {fold: fold_config(loaded, fold) for fold in _folds(loaded)}
    for fl in configs.values():
        if not (fl.output / export.INT8_FILE).exists():
            raise data.DataError(
                f"{fl.output}: no trained fold (no {export.INT8_FILE}): copy a cross-validation's cv/ folder into "
                f"{loaded.output}, or run `auricle-train run --cv`"
            )
    per_fold: dict[int, dict[str, Any]] = {}
    for fold, fl in configs.items():
        headline: dict[str, Any] = pipeline.run_evaluate(fl, prepare.load(fl.output))["headline"]
        _LOGGER.info("%s: evaluated again, int8 clip accuracy %.3f", fl.output, headline["int8_clip_accuracy"])
        per_fold[fold] = headline | open_world(fl.output)
        path, summary = _write(loaded, per_fold, [k for k in configs if k not in per_fold])
    return _line(len(configs), path, summary)


def _folds(loaded: LoadedConfig) -> list[int]:
    """The manifest's folds, at least two (DataError otherwise)."""
    manifest, root = prepare.dataset_paths(loaded)
    folds = data.folds_of(data.load_clips(loaded.config.data, manifest, root))
    if len(folds) < 2:
        raise data.DataError("cross-validation needs a manifest with at least two folds")
    return folds


def _line(folds: int, path: Path, summary: dict[str, Any]) -> str:
    heldout = (
        f", held-out false events {summary['heldout_false_events']} in {summary['heldout_hours']:.2f} h "
        f"({summary['heldout_false_per_hour']:.3g} per hour)"
        if "heldout_false_events" in summary
        else ""
    )
    return (
        f"{folds} folds, int8 clip accuracy {summary['int8_mean']:.3f} +/- {summary['int8_std']:.3f}, "
        f"float {summary['float_mean']:.3f} +/- {summary['float_std']:.3f}{heldout} ({path})"
    )


def _fold(fl: LoadedConfig) -> dict[str, Any]:
    """One fold's headline and open-world figures: reused when this config finished it, else run."""
    done = finished(fl)
    if done is not None:
        _LOGGER.info("%s: reused, int8 clip accuracy %.3f", fl.output / FOLD_RECORD, done["int8_clip_accuracy"])
        return done | open_world(fl.output)
    p = prepare.prepare(fl)
    model = pipeline.run_fit(fl, p)
    pipeline.run_export(fl, p, model)
    headline: dict[str, Any] = pipeline.run_evaluate(fl, p)["headline"]
    _record(fl, headline)
    _LOGGER.info("%s: int8 clip accuracy %.3f", fl.output, headline["int8_clip_accuracy"])
    return headline | open_world(fl.output)


def _write(loaded: LoadedConfig, per_fold: dict[int, dict[str, Any]], left: list[int]) -> tuple[Path, dict[str, Any]]:
    """``cv.json``: every finished fold, the summary over them, and ``folds_left`` (empty when complete)."""
    summary = summarise(per_fold)
    path = loaded.output / "cv.json"
    doc = {"folds": per_fold, "folds_left": left, "summary": summary}
    write_durably(path, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    return path, summary


def fingerprint(loaded: LoadedConfig) -> str:
    """sha256 of a run's parsed config: every setting that differs from its default, so that a new
    option added at its default (the old behaviour) keeps finished folds."""
    text = json.dumps(_settings(loaded.config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _settings(value: Any) -> Any:
    """A dataclass as a dict of its non-default fields (recursively); tuples and lists element-wise."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            default = f.default if f.default is not dataclasses.MISSING else dataclasses.MISSING
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            if default is dataclasses.MISSING or v != default:
                out[f.name] = _settings(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_settings(v) for v in value]
    return value


def finished(fold: LoadedConfig) -> dict[str, Any] | None:
    """The headline of a fold already run with this very config, else None."""
    path = fold.output / FOLD_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _LOGGER.warning("%s: unreadable (%s); running the fold again", path, exc)
        return None
    if not isinstance(record, dict) or record.get("config") != fingerprint(fold):
        _LOGGER.info("%s: made with another config; running the fold again", path)
        return None
    headline = record.get("headline")
    return headline if isinstance(headline, dict) else None


def _record(fold: LoadedConfig, headline: dict[str, Any]) -> None:
    path = fold.output / FOLD_RECORD
    record = {"config": fingerprint(fold), "headline": headline}
    write_durably(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"))


def open_world(folder: Path) -> dict[str, Any]:
    """A fold's open-world figures from its ``report.json``: false events on the held-out background
    (the same audio for every fold: each fold's model is another draw) and validation event recall."""
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, Any] = {}
    heldout, calibration = report.get("heldout_background"), report.get("calibration")
    if isinstance(heldout, dict) and heldout.get("hours"):
        out |= {
            "heldout_false_events": int(heldout["false_events"]),
            "heldout_hours": float(heldout["hours"]),
            "heldout_false_per_label": dict(heldout.get("per_label", {})),
        }
    if isinstance(calibration, dict) and calibration.get("recall") is not None:
        out["val_event_recall"] = float(calibration["recall"])
    return out


def summarise(per_fold: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of the float and int8 clip accuracies over folds; with every fold's
    held-out background figures, their pooled rate: events over hours of all folds' models together.
    The audio is the same for every fold, so pooling averages over models, not over more background."""
    out: dict[str, Any] = {}
    for kind in ("float", "int8"):
        acc = np.array([h[f"{kind}_clip_accuracy"] for h in per_fold.values()], dtype=np.float64)
        out[f"{kind}_mean"], out[f"{kind}_std"] = float(acc.mean()), float(acc.std())
    folds = list(per_fold.values())
    if folds and all("heldout_false_events" in h for h in folds):
        events, hours = sum(h["heldout_false_events"] for h in folds), sum(h["heldout_hours"] for h in folds)
        out |= {"heldout_false_events": events, "heldout_hours": round(hours, 4)}
        out["heldout_false_per_hour"] = round(events / hours, 3)
    if folds and all("val_event_recall" in h for h in folds):
        out["val_event_recall_mean"] = round(float(np.mean([h["val_event_recall"] for h in folds])), 4)
    return out
