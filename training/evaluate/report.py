"""report.json, a readable report.md and the plots, written to the run directory."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.evaluate import rule_report

_LOGGER = logging.getLogger(__name__)

CONFUSION_PNG, EMBEDDING_PNG, CURVES_PNG = "confusion.png", "embedding.png", "curves.png"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix with every label named."""
    plt = _pyplot()
    m = np.asarray(cm, dtype=np.float64)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = max(6.0, 0.28 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    for i, j in zip(*np.nonzero(m), strict=True):
        colour = "white" if norm[i, j] > 0.5 else "black"
        ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=5, color=colour)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pca_2d(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Project rows of ``x`` onto their first two principal components."""
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected: npt.NDArray[np.float64] = centred @ vt[:2].T
    return projected


def plot_embedding(emb: npt.NDArray[np.float64], truth: Sequence[int], labels: Sequence[str], path: Path) -> None:
    """PCA of penultimate-layer clip embeddings, coloured by class, names at class centres."""
    plt = _pyplot()
    xy = pca_2d(np.asarray(emb, dtype=np.float64))
    t = np.asarray(truth)
    fig, ax = plt.subplots(figsize=(12, 10))
    cmap = plt.get_cmap("tab20")
    markers = "os^Dv"
    for k, label in enumerate(labels):
        pts = xy[t == k]
        if not len(pts):
            continue
        ax.scatter(pts[:, 0], pts[:, 1], s=18, color=cmap(k % 20), marker=markers[(k // 20) % 5], alpha=0.75)
        cx, cy = pts.mean(axis=0)
        ax.text(cx, cy, label, fontsize=7, ha="center", va="center", alpha=0.9)
    ax.set_title("Test clips: PCA of the penultimate layer (mean over windows), coloured by true class")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_history(output: Path) -> list[dict[str, float]]:
    """Epoch rows of all phases, in order, with a 'phase' column."""
    rows: list[dict[str, float]] = []
    for phase, name in enumerate(("head", "finetune", "qat"), start=1):
        path = output / f"history_{name}.csv"
        if path.exists():
            with path.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    rows.append({k: float(v) for k, v in row.items() if v not in ("", None)} | {"phase": phase})
    return rows


def curve_series(history: list[dict[str, float]], augment: str) -> dict[str, list[float]]:
    """The accuracy panel's lines by legend text, only those the history has a value for: the YAMNet
    recipe logs no training accuracy, and only a quantisation-aware phase validates simulated int8."""
    acc = [r.get("accuracy", r.get("scores_accuracy", np.nan)) for r in history]
    val = [r.get("val_clip_acc", np.nan) for r in history]
    qat = " (QAT phase: simulated int8)" if any(r["phase"] == 3 for r in history) else ""
    lines = {f"training window accuracy (augmented: {augment})": acc, f"validation clip accuracy{qat}": val}
    return {name: ys for name, ys in lines.items() if np.isfinite(ys).any()}


def plot_curves(history: list[dict[str, float]], path: Path, augment: str) -> None:
    """Training loss and accuracy, and validation clip accuracy, per epoch across all phases; ``augment``
    says what the training windows went through (``AugmentConfig.described``)."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(1, len(history) + 1)
    a.plot(x, [r.get("loss", np.nan) for r in history], label="training loss")
    a.set_xlabel("epoch (all phases)")
    a.set_ylabel("loss")
    a.legend()
    for name, ys in curve_series(history, augment).items():
        b.plot(x, ys, label=name)
    b.set_xlabel("epoch (all phases)")
    b.set_ylim(0, 1)
    b.legend()
    marks = []
    for phase, style, what in ((1, "--", "dashed: base unfrozen"), (2, ":", "dotted: quantisation-aware phase")):
        boundary = sum(1 for r in history if r["phase"] <= phase)
        if 0 < boundary < len(history):
            marks.append(what)
            for ax in (a, b):
                ax.axvline(boundary + 0.5, color="grey", linestyle=style)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle("Training curves" + (f" ({'; '.join(marks)})" if marks else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def markdown(report: dict[str, Any], labels: Sequence[str]) -> str:
    """A readable summary: headline table, per-class table, plots."""
    h, cls = report["headline"], report["test"]
    lines = [
        f"# Training report: {report['name']} {report['version']}",
        "",
        "Evaluated through the device code (edge.model.classifier.Classifier, TFLite) on "
        f"{h['test_clips']} held-out clips; "
        f"clip score = mean of window scores every {h['hop_frames']} frames.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in h.items()]
    lines += ["", "## Per class (int8, test clips)", "", "| label | precision | recall | F1 | clips | threshold |"]
    lines.append("|---|---|---|---|---|---|")
    q = cls["int8"]
    for k, label in enumerate(labels):
        lines.append(
            f"| {label} | {q['precision'][k]:.2f} | {q['recall'][k]:.2f} | {q['f1'][k]:.2f} | "
            f"{q['support'][k]} | {report['thresholds'][label]:.2f} |"
        )
    lines += calibration_markdown(report)
    lines += rule_report.markdown(report.get("rule"))
    lines += ["", "## Plots", "", f"![confusion]({CONFUSION_PNG})", "", f"![embedding]({EMBEDDING_PNG})", ""]
    lines += [f"![curves]({CURVES_PNG})", ""]
    return "\n".join(lines)


def calibration_markdown(report: dict[str, Any]) -> list[str]:
    """The thresholds chosen by the false-alarm budget and what they leave, when there are any."""
    summary, per_label = report.get("calibration"), report.get("per_label")
    if not summary or not per_label:
        return []
    lines = [
        "",
        "## Thresholds from the false-alarm budget",
        "",
        f"Budget {summary['budget_per_hour']} false events per hour over all labels "
        f"({summary['label_budget_per_hour']:.3g} per label), counted through the daemon's event logic on "
        f"{summary['background_hours'] * 60:.1f} min of the background's calibrate part (played back to back) and "
        "the other labels' validation clips. These are the figures the thresholds were chosen on, not a held-out "
        f"measurement: measured {summary['false_per_hour']:.3g}/h (95% bound {summary['upper_95_per_hour']:.3g}/h), "
        f"validation event recall {_fmt(summary['recall'])}. Labels that cannot meet the budget with recall >= "
        f"{summary['min_recall']}: {', '.join(summary['failing']) or 'none'}.",
        "",
        "| label | threshold | recall | clips | false events | false/h | 95% bound/h | meets budget |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, f in per_label.items():
        lines.append(
            f"| {label} | {f['threshold']:.2f} | {_fmt(f['recall'])} | {f['clips']} | {f['false_events']} | "
            f"{f['false_per_hour']:.3g} | {f['upper_95_per_hour']:.3g} | {'yes' if f['meets_budget'] else 'no'} |"
        )
    return lines + heldout_markdown(report.get("heldout_background"))


def heldout_markdown(heldout: dict[str, Any] | None) -> list[str]:
    """False alarms on the background's report part: audio neither training nor thresholds saw."""
    if not heldout:
        return []
    labels = ", ".join(f"{k} {v}" for k, v in heldout["per_label"].items()) or "none"
    lines = [
        "",
        "## False alarms on held-out background",
        "",
        f"{heldout['false_events']} event starts in {heldout['hours'] * 60:.1f} min of the background's report part "
        f"({heldout['files']} files, never trained on, never used for thresholds, and mixtures of them), through the "
        f"daemon's pipeline and event logic at the bundle's thresholds: **{heldout['false_per_hour']:.3g} per hour** "
        f"(95% bound {heldout['upper_95_per_hour']:.3g}/h). By label: {labels}.",
        "",
        "| stream | minutes | false events | per hour | 95% bound/h |",
        "|---|---|---|---|---|",
    ]
    for name in ("plain", "mixtures"):
        if isinstance(part := heldout.get(name), dict):
            lines.append(
                f"| {name} | {part['hours'] * 60:.1f} | {part['false_events']} | {part['false_per_hour']:.3g} | "
                f"{part['upper_95_per_hour']:.3g} |"
            )
    return lines + _playing(heldout)


def _playing(heldout: dict[str, Any]) -> list[str]:
    """Each false event with what was playing: a few files are often behind most of them."""
    rows = [
        f"| {name} | {e['at_s']:.1f} | {e['label']} | {'repeat' if e['repeat'] else 'alarm'} | "
        f"{'; '.join(e['playing'])} |"
        for name in ("plain", "mixtures")
        if isinstance(part := heldout.get(name), dict)
        for e in part.get("events", [])
    ]
    if not rows:
        return []
    alarms = heldout.get("alarms")
    head = (
        f"{alarms} of the {heldout['false_events']} starts are alarms (not a repeat: Home Assistant's event entity "
        "notifies only those). What was playing at each start (a mixture: the first file, the one under it, the level):"
    )
    return ["", head, "", "| stream | at s | label | start | playing |", "|---|---|---|---|---|", *rows]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
