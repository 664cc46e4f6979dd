"""Real end-to-end runs (prepare, fit, int8 export, evaluate through edge, thresholds, bundle) and a real
``inspect`` - no mocks: real audio, real Keras, real LiteRT, the real teacher."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import training_data as td

from edge import features
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from training import cli, crossval, pipeline
from training.data.prepare import Prepared
from training.model import export
from training.recipe.load import LoadedConfig, load

pytestmark = pytest.mark.slow


def test_end_to_end_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The 3.0.0 recipe in small: background sources (a shared manifest and a folder), an explicit background
    class, YAMNet distillation with teacher outputs cached for a handful of clips, one epoch per phase
    (quantisation-aware too), thresholds from a false-alarm budget on a few minutes of background."""
    reason = td.missing(td.WEIGHTS, td.TEACHER, td.ESC50 / "esc50.csv", td.BACKGROUND / "background.csv")
    if reason:
        pytest.skip(reason)
    manifest = td.esc50_subset(tmp_path, ["dog", "rain", "church_bells"], per_fold=1)
    bg = td.background_subset(tmp_path, train=2, calibrate=6)
    noise = td.noise_folder(tmp_path / "noise", per_part=1)
    cfg = tmp_path / "smoke.yaml"
    cfg.write_text(
        f"data: {{manifest: {manifest}, audio_root: {td.ESC50 / 'audio'}, train_folds: [1, 2, 3], test_folds: [4],\n"
        f"  val_fraction: 0.34, min_clips_per_class: 2, cache_dir: cache, workers: 2,\n"
        f"  background: [{{path: {bg}, audio_root: {td.BACKGROUND}}}, {{path: {noise}}}]}}\n"
        "window: {window_frames: 96, hop_frames: 20}\n"
        f"model: {{weights: {td.WEIGHTS}, output: softmax_background}}\n"
        "fit: {head_epochs: 1, finetune_epochs: 1, qat_epochs: 1, crops_per_clip: 2, batch_size: 16,\n"
        "  unfreeze_blocks: 2, background_fraction: 0.3, distill_weight: 1.0, distill_scores_weight: 0.5}\n"
        f"teacher: {{path: {td.TEACHER}}}\n"
        "calibration: {budget_per_hour: 2.0, mixture_minutes: 0.5, min_calibrate_hours: 0.1}\n"
        "export: {calibration_windows: 16, latency_runs: 20}\n"
        "output: run\nbundle: {name: smoke, version: 0.0.1}\n"
    )
    assert cli.main(["run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "prepare: 12 clips, 3 classes" in out and "; background train 8 files" in out
    assert "evaluate: folds [4] clip accuracy" in out and "thresholds for 2 false events/h" in out
    run = tmp_path / "run"
    b = read_bundle(run / "smoke.auricle")
    m = b.manifest
    assert m.input.dtype == "int8" and m.output.dtype == "int8"
    assert m.window_frames == 96 and m.hop_frames == 20
    assert m.labels == ("church_bells", "dog", "rain", "_background") and m.background_labels == ("_background",)
    assert set(m.thresholds) == set(m.event_labels)
    per_label = m.metrics["per_label"]
    assert set(per_label) == set(m.event_labels)
    assert {x: f["threshold"] for x, f in per_label.items()} == m.thresholds
    assert {"recall", "false_per_hour", "upper_95_per_hour", "meets_budget"} <= set(per_label["dog"])
    assert m.metrics["calibration"]["budget_per_hour"] == 2.0
    assert 0.1 <= m.metrics["calibration"]["background_hours"] < 0.11  # stretched by mixtures to 6 min (3 without)
    assert {"int8_clip_accuracy", "float_clip_accuracy", "top1_agreement", "params", "macs"} <= set(m.metrics)
    assert m.provenance["training_config"] == cfg.read_text()
    assert "ASSIGN_VARIABLE" not in export.op_names(b.model)
    from edge.model.selftest import parse_selftest, run_selftest

    assert b.selftest is not None and m.selftest_sha256 is not None  # what a device checks before an OTA switch
    check = run_selftest(Classifier(b), parse_selftest(b.selftest, m, str(b.path)), budget_ms=1000.0)
    assert check.max_diff_steps == 0.0  # same runtime, same model: the stored scores exactly
    clf = Classifier(b)  # the exported model has the class head only: 4 outputs, the background one dropped
    assert clf.invoke(features.to_input(np.full((96, 64), -30.0, np.float32), m.features, m.input)).shape == (4,)
    assert clf.scores(np.full((96, 64), -30.0, np.float32)).shape == (3,)
    teacher_files = list((tmp_path / "cache").glob("teacher-*/*.npy"))
    assert len(teacher_files) == 6 + 8  # the training clips (2 folds of 3 minus validation) and background train
    assert "teacher_embedding_loss" in (run / "history_head.csv").read_text()
    for name in ("history_qat.csv", "report.json", "report.md", "confusion.png", "embedding.png", "curves.png"):
        assert (run / name).stat().st_size > 0, name
    assert "## Thresholds from the false-alarm budget" in (run / pipeline.REPORT_MD).read_text()
    heldout = m.metrics["heldout_background"]  # the report part: groups held out from the thresholds
    # the report part keeps mixture_minutes: min_calibrate_hours stretches the calibrate part only
    assert heldout["files"] >= 1 and heldout["mixtures"]["hours"] == pytest.approx(0.5 / 60, rel=0.3)
    assert heldout["false_events"] == sum(heldout["per_label"].values())
    for stream in ("plain", "mixtures"):  # each start with what was playing (tests/training/test_heldout_playing.py)
        part = heldout[stream]
        assert len(part["events"]) == part["false_events"] >= part["alarms"]
        assert all(e["playing"] for e in part["events"])
    assert "## False alarms on held-out background" in (run / pipeline.REPORT_MD).read_text()


def test_inspect_flags_bad_clips_and_draws_sheets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = td.tone_tree(tmp_path / "tree", per_class=2, seconds=1.0)
    td.write(root / "low" / "silent.wav", np.zeros(16000, np.float32), 16000)
    td.write(root / "mid" / "clipped.wav", np.clip(3 * td.tone_clip(1500, 1.0, 16000, 7), -1, 1), 16000)
    td.write(root / "high" / "dc.wav", td.tone_clip(4000, 1.0, 16000, 8) * 0.3 + 0.2, 16000)
    noise = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    td.write(root / "high" / "hiss.wav", noise, 16000)
    (root / "low" / "low_0_copy.wav").write_bytes((root / "low" / "low_0.wav").read_bytes())
    (root / "mid" / "broken.wav").write_bytes(b"nope")
    assert cli.main(["inspect", str(root), "--out", str(tmp_path / "sheets")]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.endswith((")", "wav")) or "wav" in line}
    assert "silent" in lines["silent.wav"]
    assert "clipped" in lines["clipped.wav"]
    assert "DC offset" in lines["dc.wav"]
    assert "noise-only" in lines["hiss.wav"]
    assert "identical file of low_0" in lines["low_0_copy.wav"]
    assert "unreadable" in lines["broken.wav"]
    assert "low_1.wav" not in lines  # a clean tone is not flagged
    sheets = sorted(p.name for p in (tmp_path / "sheets").glob("*.png"))
    assert sheets == ["high.png", "low.png", "mid.png"]
    manifest = tmp_path / "groups.csv"
    assert cli.main(["inspect", str(root), "--out", str(tmp_path / "sheets"), "--json", "--csv", str(manifest)]) == 0
    rows = {Path(str(r["filename"])).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["low_0_copy.wav"]["group"] == rows["low_0.wav"]["group"] == "dup-1"  # usable as group_column
    assert rows["low_1.wav"]["group"] == "low_1" and rows["low_1.wav"]["flags"] == []
    assert rows["broken.wav"]["flags"] and rows["low_0.wav"]["label"] == "low"
    with manifest.open(newline="") as fh:
        listed = {Path(r["filename"]).name: r for r in csv.DictReader(fh)}
    assert listed["low_0_copy.wav"]["group"] == "dup-1" and set(listed["mid_0.wav"]) == {"filename", "label", "group"}
    assert (manifest.parent / listed["mid_0.wav"]["filename"]).is_file()  # names relative to the manifest


def test_cross_validation_runs_every_fold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Needs no shared material: tones, a generated background folder, per-label sigmoid outputs."""
    manifest = td.tone_manifest(tmp_path / "tones", folds=2, per_fold=2, seconds=1.0)
    noise = td.noise_folder(tmp_path / "noise", per_part=1)
    cfg = tmp_path / "cv.yaml"
    cfg.write_text(
        f"data: {{manifest: {manifest}, val_fraction: 0.5, cache_dir: cache, workers: 1,\n"
        f"  background: [{{path: {noise}, report_fraction: 0}}]}}\n"
        f"window: {{window_frames: 32, hop_frames: 16}}\nmodel: {{weights: none, output: sigmoid}}\n"
        "fit: {head_epochs: 0, finetune_epochs: 1, crops_per_clip: 1, batch_size: 8, unfreeze_blocks: 1,\n"
        "  background_fraction: 0.25}\n"
        "calibration: {mixture_minutes: 0.5}\n"  # not the default 30 min per fold: thresholds are not the point
        "export: {calibration_windows: 4, latency_runs: 5}\noutput: run\n"
    )
    fit = pipeline.run_fit

    def stopped_in_fold_2(fl: LoadedConfig, p: Prepared) -> Any:
        if fl.output.name == "fold_2":
            raise KeyboardInterrupt("the session ended")  # as a long cross-validation is cut short
        return fit(fl, p)

    monkeypatch.setattr(pipeline, "run_fit", stopped_in_fold_2)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["run", "--config", str(cfg), "--cv"])
    monkeypatch.undo()
    partial = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert set(partial["folds"]) == {"1"} and partial["folds_left"] == [2]
    assert partial["summary"]["int8_mean"] == partial["folds"]["1"]["int8_clip_accuracy"]
    model1 = tmp_path / "run" / "cv" / "fold_1" / export.INT8_FILE
    stamp1 = model1.stat().st_mtime_ns
    assert cli.main(["run", "--config", str(cfg), "--cv"]) == 0
    assert "cv: 2 folds, int8 clip accuracy" in capsys.readouterr().out
    cv = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert set(cv["folds"]) == {"1", "2"} and cv["folds_left"] == []
    assert model1.stat().st_mtime_ns == stamp1  # the finished fold was not trained again
    for fold in (1, 2):
        m = read_bundle(tmp_path / "run" / "cv" / f"fold_{fold}" / "model.auricle").manifest
        assert m.labels == ("high", "low", "mid") and not m.background_labels
        assert set(m.metrics["per_label"]) == set(m.labels)  # thresholds from the calibrate noise
    # A rerun reuses every finished fold with the same config; a fold made with another config runs again.
    record = tmp_path / "run" / "cv" / "fold_2" / crossval.FOLD_RECORD
    model2 = record.with_name(export.INT8_FILE)
    stamp = model2.stat().st_mtime_ns
    (tmp_path / "run" / "cv" / "fold_1" / crossval.FOLD_RECORD).write_text(
        json.dumps({"config": "another", "headline": {}}), encoding="utf-8"
    )
    assert cli.main(["run", "--config", str(cfg), "--cv"]) == 0
    again = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert again["folds"]["2"] == cv["folds"]["2"] and model2.stat().st_mtime_ns == stamp  # not trained again
    rerun = json.loads((tmp_path / "run" / "cv" / "fold_1" / crossval.FOLD_RECORD).read_text())
    assert rerun["config"] == crossval.fingerprint(crossval.fold_config(load(cfg), 1))
    assert set(again["folds"]["1"]) == set(cv["folds"]["1"])

    # The trained folds evaluated again under another config (a threshold floor), without training: copy cv/.
    floored = tmp_path / "floored.yaml"
    floored.write_text(f"extends: {cfg.name}\ncalibration: {{min_threshold: 0.97}}\noutput: floored\n")
    assert cli.main(["evaluate", "--config", str(floored), "--cv"]) == 2
    assert "fold_1: no trained fold (no model_int8.tflite)" in capsys.readouterr().err
    shutil.copytree(tmp_path / "run" / "cv", tmp_path / "floored" / "cv")
    model = tmp_path / "floored" / "cv" / "fold_1" / export.INT8_FILE
    stamp = model.stat().st_mtime_ns
    assert cli.main(["evaluate", "--config", str(floored), "--cv"]) == 0
    assert "cv evaluate: 2 folds, int8 clip accuracy" in capsys.readouterr().out
    redone = json.loads((tmp_path / "floored" / "cv.json").read_text())
    assert set(redone["folds"]) == {"1", "2"} and redone["folds_left"] == [] and model.stat().st_mtime_ns == stamp
    for fold in ("1", "2"):
        assert redone["folds"][fold]["int8_clip_accuracy"] == again["folds"][fold]["int8_clip_accuracy"]  # same nets
        m = read_bundle(tmp_path / "floored" / "cv" / f"fold_{fold}" / "model.auricle").manifest
        assert (
            min(m.thresholds.values())
            >= 0.97
            > min(read_bundle(tmp_path / "run" / "cv" / f"fold_{fold}" / "model.auricle").manifest.thresholds.values())
        )
