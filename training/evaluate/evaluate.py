"""Stage 4: evaluate TFLite models through the device code (``edge.model.classifier.Classifier``).

Clip score = mean of the window scores at ``window_ends(n_frames, window,
hop)``: exactly what the daemon computes.  Keras is never used for a reported
figure.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge import features
from edge.model.audioset import AudiosetHead, AudiosetLabel, Confirm, Veto
from edge.model.bundle import Bundle, Manifest, sha256
from edge.model.classifier import Classifier
from edge.model.evidence import Evidence
from edge.model.outputs import OutputSpec
from edge.schema import ConfigError
from training.evaluate import recall
from training.model import model as model_mod
from training.model.export import audioset_output, int8_input_spec
from training.recipe.config import TrainConfig

_LOGGER = logging.getLogger(__name__)

Scores = npt.NDArray[np.float32]
Rule = Literal["recipe", "none"] | Evidence
"""What the event labels' AudioSet rule is: the recipe's (the confirmation, or none), none at all (the network
alone), or a fitted :class:`Evidence`."""


def manifest_for(
    cfg: TrainConfig,
    labels: Sequence[str],
    model_bytes: bytes,
    *,
    thresholds: dict[str, float] | None = None,
    metrics: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    optional_labels: bool = True,
    rule: Rule = "recipe",
) -> Manifest:
    """A manifest for ``model_bytes`` (float32 or int8, read from the file itself).

    ``labels`` are the event labels; the manifest lists the model's outputs (``_background`` too, as a
    background label), thresholds for the event labels only.
    """
    outputs = model_mod.output_labels(cfg.model, labels)
    spec, output = int8_input_spec(model_bytes, model_mod.input_spec(cfg), len(outputs))
    return Manifest(
        schema_version=1,
        name=cfg.bundle.name,
        version=cfg.bundle.version,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        labels=tuple(outputs),
        background_labels=model_mod.background_labels(cfg.model),
        features=cfg.features,
        fingerprint=cfg.features.fingerprint(),
        window_frames=cfg.window.window_frames,
        hop_frames=cfg.window.hop_frames,
        input=spec,
        output=OutputSpec(**output),
        audioset=audioset_head(cfg, model_bytes, labels, optional_labels, rule),
        thresholds={x: t for x, t in (thresholds or dict.fromkeys(labels, 0.5)).items() if x in labels},
        model_sha256=sha256(model_bytes),
        provenance=dict(provenance or {}),
        metrics=dict(metrics or {}),
    )


def audioset_head(
    cfg: TrainConfig, model_bytes: bytes, labels: Sequence[str], optional_labels: bool = True, rule: Rule = "recipe"
) -> AudiosetHead | None:
    """The bundle's ``audioset`` section for a model with an AudioSet output (None otherwise): the veto always,
    the recipe's rule on the event ``labels`` (the confirmation, or the fitted :class:`Evidence` when ``rule``
    is one), none for ``rule="none"`` (the network alone), the optional labels when asked."""
    output = audioset_output(model_bytes)
    if output is None:
        return None
    class_names = _class_names(cfg)

    def names(classes: Sequence[int]) -> tuple[str, ...]:
        return tuple(class_names[i] for i in classes) if class_names else ()

    v = cfg.audioset.veto
    veto = None
    if v.classes:
        veto = Veto(classes=v.classes, class_names=names(v.classes), threshold=v.threshold, exempt=v.exempt)
    confirm = _confirm(cfg, labels, class_names) if cfg.audioset.confirm.mapping and rule == "recipe" else None
    evidence = rule if isinstance(rule, Evidence) else None
    optional = tuple(
        AudiosetLabel(name=x.name, classes=x.classes, class_names=names(x.classes), threshold=x.threshold,
                      enabled_by_default=x.enabled_by_default)
        for x in (cfg.audioset.labels if optional_labels else ())
    )  # fmt: skip
    return AudiosetHead(output=output, veto=veto, confirm=confirm, evidence=evidence, labels=optional)


def _confirm(cfg: TrainConfig, labels: Sequence[str], class_names: Sequence[str]) -> Confirm:
    """The confirmation: the mapped labels' classes, less the labels left unconfirmed."""
    confirm = cfg.audioset.confirm
    mapped = _mapped(cfg, labels, class_names)
    classes = {x: c for x, c in mapped.items() if x not in confirm.unconfirmed}
    return Confirm(threshold=confirm.threshold, classes=classes, slope=confirm.slope, keep_at=confirm.keep_at)


def _mapped(cfg: TrainConfig, labels: Sequence[str], class_names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """The classes the mapping CSV (an absolute path: training.recipe.load) gives the event labels, named by
    YAMNet's class map."""
    from training.data.data import DataError
    from training.model.audioset_map import checked_mapping

    confirm = cfg.audioset.confirm
    if not class_names:
        raise ConfigError(f"audioset.confirm.class_map: no such file: {confirm.class_map}")
    try:  # one check for training, suggest and here: a class not YAMNet's or a misspelt label is an error
        mapping = checked_mapping(Path(confirm.mapping), class_names, labels)
    except DataError as exc:
        raise ConfigError(f"audioset.confirm.mapping: {exc}") from None
    unmapped = [x for x in labels if x not in mapping]
    if unmapped:
        _LOGGER.info("AudioSet classes: none mapped for %s (their own score alone counts)", ", ".join(unmapped))
    return {x: tuple(mapping[x]) for x in labels if x in mapping}


def recipe_confirm(cfg: TrainConfig, labels: Sequence[str]) -> Confirm:
    """The recipe's confirmation as the bundle carries it (``audioset.confirm.mapping`` must be set)."""
    return _confirm(cfg, labels, _class_names(cfg))


def label_classes(cfg: TrainConfig, labels: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Each event label's AudioSet classes, from the recipe's mapping (``audioset.confirm.mapping``, labels left
    unconfirmed included); {} without."""
    if not cfg.audioset.confirm.mapping:
        return {}
    return _mapped(cfg, labels, _class_names(cfg))


def _class_names(cfg: TrainConfig) -> list[str]:
    """AudioSet display names in index order from YAMNet's class map: the confirmation's, else the one beside
    the checkout; empty where no map is at hand."""
    from training.model.yamnet import YamnetParams, read_class_names

    path = Path(cfg.audioset.confirm.class_map or YamnetParams().class_map_path)
    return read_class_names(path) if path.is_file() else []


def classifier(
    cfg: TrainConfig,
    labels: Sequence[str],
    model_bytes: bytes,
    name: str,
    thresholds: dict[str, float] | None = None,
    rule: Rule = "recipe",
    remember: bool = True,
) -> Classifier:
    """The device's classifier around an in-memory model (no bundle file needed); scores of ``labels`` only
    (the veto and ``rule`` applied, no optional AudioSet labels: they are not calibrated or scored here).  Inside
    :func:`recall.remembering`, the classifiers of one model share its outputs by input window, unless
    ``remember`` is False (a latency is the interpreter's, never the memory's)."""
    m = manifest_for(cfg, labels, model_bytes, thresholds=thresholds, optional_labels=False, rule=rule)
    wrap = recall.wrapper(model_bytes) if remember else None
    return Classifier(Bundle(m, model_bytes, m.to_json(), None, name), threads=1, wrap=wrap)


def clip_scores(clf: Classifier, frames: Any, hop: int) -> Scores:
    """Mean of the window scores at the device's inference points."""
    m = clf.manifest
    ends = features.window_ends(frames.shape[0], m.window_frames, hop)
    scores = [clf.scores(features.window_at(frames, e, m.window_frames, m.features)) for e in ends]
    mean: Scores = np.mean(scores, axis=0).astype(np.float32)
    return mean


def score_clips(clf: Classifier, frames: Sequence[Any], clips: Sequence[int], hop: int) -> Scores:
    """``(len(clips), n_labels)`` clip scores."""
    from tqdm import tqdm

    rows = [
        clip_scores(clf, frames[c], hop) for c in tqdm(clips, desc="evaluate", unit="clip", leave=False, disable=None)
    ]
    return np.stack(rows) if rows else np.zeros((0, len(clf.labels)), dtype=np.float32)


def classification(truth: npt.NDArray[np.int64], pred: npt.NDArray[np.int64], n: int) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (truth, pred), 1)
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(n), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    present = actual > 0
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": actual.tolist(),
        "confusion": cm.tolist(),
    }


def tune_thresholds(scores: Scores, truth: npt.NDArray[np.int64], labels: Sequence[str]) -> dict[str, float]:
    """Per label, the clip-score threshold with the best one-vs-rest F1 on validation clips."""
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    out = {}
    for k, label in enumerate(labels):
        positive = truth == k
        best, best_f1 = 0.5, -1.0
        for t in grid:
            hit = scores[:, k] >= t
            tp = float(np.sum(hit & positive))
            f1 = 2 * tp / max(float(hit.sum() + positive.sum()), 1.0)
            if f1 > best_f1 + 1e-12:
                best, best_f1 = float(t), f1
        out[label] = best if positive.any() else 0.5
    return out


def latency_ms(clf: Classifier, runs: int) -> float:
    """Median wall time of one window inference (prepared tensor, 1 thread), ms."""
    m = clf.manifest
    window = np.full((m.window_frames, m.features.n_bands), m.features.db_floor + 40.0, dtype=np.float32)
    tensor = features.to_input(window, m.features, m.input)
    for _ in range(10):
        clf.invoke(tensor)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        clf.invoke(tensor)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)


def compare(float_scores: Scores, int8_scores: Scores, truth: npt.NDArray[np.int64], n: int) -> dict[str, Any]:
    """Float and int8 classification, the int8 drop and the top-1 agreement."""
    f = classification(truth, float_scores.argmax(axis=1), n)
    q = classification(truth, int8_scores.argmax(axis=1), n)
    agree = float(np.mean(float_scores.argmax(axis=1) == int8_scores.argmax(axis=1))) if len(truth) else 0.0
    return {
        "float": f,
        "int8": q,
        "int8_drop_points": 100.0 * (f["accuracy"] - q["accuracy"]),
        "top1_agreement": agree,
    }
