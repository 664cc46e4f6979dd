"""The stages behind ``auricle-train``: prepare, fit, export, evaluate (+ bundle), run, CV.

Each stage reads what the previous one left in the run directory, so any of
them can be re-run alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.model.bundle import load_private_key, write_bundle
from training import measure
from training import rule as audioset_rule
from training.data.prepare import Prepared
from training.evaluate import evaluate, recall, report, rule_report
from training.fit import audioset_fit, fit
from training.fit.windows import batch_inputs
from training.model import export
from training.model import model as model_mod
from training.recipe import stages
from training.recipe.load import LoadedConfig, replace

_LOGGER = logging.getLogger(__name__)

STATS = "model_stats.json"
SELFTEST_CLIPS = 8
"""The most confident validation clips the self-test window is chosen from (edge/model/window_choice.py)."""
REPORT_JSON, REPORT_MD = "report.json", "report.md"


def resolved_model_config(loaded: LoadedConfig) -> LoadedConfig:
    """The config with ``model.weights`` as an absolute path (Keras is given the file)."""
    m = loaded.config.model
    if m.weights in ("imagenet", "none"):
        return loaded
    return replace(loaded, model=dataclasses.replace(m, weights=str(loaded.path(m.weights))))


def run_fit(loaded: LoadedConfig, prepared: Prepared) -> Any:
    """Train and record params, MACs and wall time."""
    t0 = time.monotonic()
    resolved = resolved_model_config(loaded)
    model = (audioset_fit if loaded.config.model.arch == "yamnet" else fit).train(resolved, prepared)
    stats = {
        "params": int(model.count_params()),
        "macs": model_mod.count_macs(model),
        "fit_seconds": round(time.monotonic() - t0, 1),
    }
    (loaded.output / STATS).write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    return model


def run_export(loaded: LoadedConfig, prepared: Prepared, model: Any | None = None) -> tuple[bytes, bytes]:
    """Float32 and int8 TFLite files in the run directory."""
    cfg, out = loaded.config, loaded.output
    model = model if model is not None else fit.load_model(out)
    qat = out / fit.QAT_MODEL_FILE
    int8_source = fit.load_model(out, fit.QAT_MODEL_FILE) if qat.exists() else model
    windows = fit.calibration_windows(cfg, prepared)
    float_bytes, int8_bytes = export.export_pair(model, windows, cfg.features, model_mod.input_spec(cfg), int8_source)
    (out / export.FLOAT_FILE).write_bytes(float_bytes)
    (out / export.INT8_FILE).write_bytes(int8_bytes)
    return float_bytes, int8_bytes


def run_evaluate(loaded: LoadedConfig, prepared: Prepared) -> dict[str, Any]:
    """Evaluate both TFLite files through edge; write report files and the bundle.  Every window runs through a
    model once: the same audio measured again (another rule) reuses its outputs (training/evaluate/recall.py)."""
    with recall.remembering():
        return _evaluate(loaded, prepared)


def _evaluate(loaded: LoadedConfig, prepared: Prepared) -> dict[str, Any]:
    out = loaded.output
    float_bytes = (out / export.FLOAT_FILE).read_bytes()
    int8_bytes = (out / export.INT8_FILE).read_bytes()
    targets = np.asarray(prepared.targets)
    test, val = list(prepared.split.test), list(prepared.split.val)
    loaded, confirm_fit = audioset_rule.fit_confirmation(loaded, prepared, int8_bytes)
    rule, fitted = audioset_rule.evidence_rule(loaded, prepared, int8_bytes)
    loaded, hops = audioset_rule.learn_unconfirmed(loaded, prepared, int8_bytes)
    with stages.timed("evaluate clips", f"{len(test)} test clips (float32 and int8), {len(val)} validation clips"):
        pair = (("float", float_bytes), ("int8", int8_bytes))
        scores = {k: measure.scores(loaded, prepared, b, k, test, rule) for k, b in pair}
        result = evaluate.compare(scores["float"], scores["int8"], targets[test], len(prepared.labels))
        val_scores = measure.scores(loaded, prepared, int8_bytes, "int8", val, rule)
    thresholds = evaluate.tune_thresholds(val_scores, targets[val], prepared.labels)
    with stages.timed("calibrate") as stage:
        calibration = measure.calibrate(loaded, prepared, int8_bytes, rule)
        stage.detail = (
            "no calibrate background: thresholds by best F1 on the validation clips"
            if calibration is None
            else f"thresholds for {calibration.budget_per_hour:g} false events/h on "
            f"{calibration.background_hours * 60:.1f} min of calibrate background, {len(calibration.failing())} "
            "labels failing"
        )
    if calibration is not None:
        thresholds = calibration.thresholds()
    full = _assemble(loaded, prepared, result, thresholds, float_bytes, int8_bytes)
    full |= audioset_rule.against_the_network_alone(loaded, prepared, int8_bytes, scores["int8"], fitted)
    if confirm_fit:
        full["confirm_fit"] = confirm_fit
    heldout = None
    if calibration is not None:
        full |= calibration.to_dict()
        with stages.timed("held-out background") as stage:
            heldout = measure.heldout(loaded, prepared, int8_bytes, thresholds, rule)
            stage.detail = (
                "" if heldout is None else f"{heldout['false_events']} false events in {heldout['hours']:.2f} h"
            )
        if heldout is not None:
            full["heldout_background"] = heldout
    if "rule" in full and rule == "recipe" and loaded.config.audioset.confirm.mapping:
        with stages.timed("the rule beside the network alone") as stage:
            full["rule"] |= audioset_rule.confirmation_report(loaded, prepared, int8_bytes, calibration, heldout, hops)
            stage.detail = rule_report.verdict(full["rule"])
    _write_reports(loaded, prepared, full, scores)
    surest = np.argsort(-val_scores.max(axis=1), kind="stable")[:SELFTEST_CLIPS]
    confident = [val[int(i)] for i in surest] if val else test[:1]
    with stages.timed("bundle") as stage:
        clips = [prepared.clips[i].path for i in confident]
        stage.detail = str(_write_bundle(loaded, prepared, full, int8_bytes, clips, rule))
    return full


def _latency(loaded: LoadedConfig, prepared: Prepared, model_bytes: bytes, name: str) -> float:
    clf = evaluate.classifier(loaded.config, prepared.labels, model_bytes, name, remember=False)
    return evaluate.latency_ms(clf, loaded.config.export.latency_runs)


def _assemble(
    loaded: LoadedConfig, prepared: Prepared, result: dict[str, Any], thresholds: dict[str, float],
    float_bytes: bytes, int8_bytes: bytes,
) -> dict[str, Any]:  # fmt: skip
    cfg, out = loaded.config, loaded.output
    stats = json.loads((out / STATS).read_text()) if (out / STATS).exists() else {}
    held = sorted({f for i in prepared.split.test if (f := prepared.clips[i].fold) is not None})
    headline = {
        "test": f"folds {held}" if held else "stratified hold-out",
        "test_clips": len(prepared.split.test),
        "hop_frames": cfg.window.hop_frames,
        "int8_from": "quantisation-aware weights" if (out / fit.QAT_MODEL_FILE).exists() else "post-training",
        "float_clip_accuracy": round(result["float"]["accuracy"], 4),
        "int8_clip_accuracy": round(result["int8"]["accuracy"], 4),
        "float_macro_f1": round(result["float"]["macro_f1"], 4),
        "int8_macro_f1": round(result["int8"]["macro_f1"], 4),
        "int8_drop_points": round(result["int8_drop_points"], 2),
        "top1_agreement": round(result["top1_agreement"], 4),
        "params": stats.get("params"),
        "macs": stats.get("macs"),
        "int8_model_bytes": len(int8_bytes),
        "float_model_bytes": len(float_bytes),
        "int8_latency_ms": round(_latency(loaded, prepared, int8_bytes, "int8"), 4),
        "float_latency_ms": round(_latency(loaded, prepared, float_bytes, "float"), 4),
        "fit_seconds": stats.get("fit_seconds"),
    }
    return {
        "name": cfg.bundle.name,
        "version": cfg.bundle.version,
        "labels": prepared.labels,
        "headline": headline,
        "test": result,
        "thresholds": thresholds,
        "skipped": [str(p) for p, _ in prepared.skipped],
    }


def _write_reports(loaded: LoadedConfig, prepared: Prepared, full: dict[str, Any], scores: dict[str, Any]) -> None:
    out, labels = loaded.output, prepared.labels
    report.write_json(full, out / REPORT_JSON)
    report.plot_confusion(full["test"]["int8"]["confusion"], labels, out / report.CONFUSION_PNG,
                          "int8 model, held-out clips (rows: true class, normalised)")  # fmt: skip
    report.plot_curves(report.read_history(out), out / report.CURVES_PNG, loaded.config.augment.described())
    try:
        emb = embeddings(loaded, prepared)
        truth = [prepared.targets[i] for i in prepared.split.test]
        report.plot_embedding(emb, truth, labels, out / report.EMBEDDING_PNG)
    except FileNotFoundError as exc:
        _LOGGER.warning("no embedding plot: %s", exc)
    (out / REPORT_MD).write_text(report.markdown(full, labels), encoding="utf-8")


def embeddings(loaded: LoadedConfig, prepared: Prepared) -> np.ndarray:
    """Penultimate-layer features per test clip (mean over its windows), from the Keras model: every clip's
    windows in one batched pass (a call per clip spends most of its time outside the network)."""
    cfg = loaded.config
    emb_model = model_mod.embedding_model(fit.load_model(loaded.output))
    spec = model_mod.input_spec(cfg)
    per_clip = [fit.clip_windows(prepared.frames[c], cfg, cfg.window.hop_frames) for c in prepared.split.test]
    if not per_clip:
        return np.zeros((0, 0), dtype=np.float32)
    found = emb_model.predict(batch_inputs(np.concatenate(per_clip), cfg, spec), batch_size=256, verbose=0)
    ends = np.cumsum([len(w) for w in per_clip])[:-1]
    return np.stack([part.mean(axis=0) for part in np.split(np.asarray(found), ends)])


def bundle_path(loaded: LoadedConfig) -> Path:
    b = loaded.config.bundle
    return loaded.path(b.path) if b.path else loaded.output / f"{b.name}.auricle"


def _write_bundle(
    loaded: LoadedConfig,
    prepared: Prepared,
    full: dict[str, Any],
    int8_bytes: bytes,
    selftest_clips: list[Path],
    rule: evaluate.Rule = "recipe",
) -> Path:
    """The bundle, with a self-test (a window of ``selftest_clips``, validation clips the model is sure
    of, chosen by edge/model/window_choice.py ``choose_window``, and the scores it gives) that devices check
    before taking the bundle over the air."""
    from edge.model.selftest import selftest_for
    from training.data.data import read_audio

    cfg = loaded.config
    metrics = {k: v for k, v in full["headline"].items() if k not in ("hop_frames",)}
    metrics |= {k: full[k] for k in ("per_label", "calibration", "heldout_background", "rule") if k in full}
    provenance = {"training_config": loaded.text, "trainer": "auricle-train", "labels_from": cfg.data.manifest}
    manifest = evaluate.manifest_for(
        cfg, prepared.labels, int8_bytes, thresholds=full["thresholds"], metrics=metrics, provenance=provenance,
        rule=rule,
    )  # fmt: skip
    key = load_private_key(loaded.path(cfg.bundle.signing_key)) if cfg.bundle.signing_key else None
    path = bundle_path(loaded)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = [read_audio(clip, cfg.features.sample_rate) for clip in selftest_clips]
    test = selftest_for(manifest, int8_bytes, samples)
    write_bundle(path, manifest, int8_bytes, private_key=key, selftest=test)
    return path
