"""One real end-to-end run (prepare, fit 1+1 epochs + 1 quantisation-aware, int8 export, evaluate through edge,
bundle) and a real ``inspect`` - no mocks: real audio, real Keras, real LiteRT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import training_data as td

from edge.bundle import read_bundle
from edge.model import Classifier
from training import cli, export, pipeline

pytestmark = pytest.mark.slow


def _dataset(root: Path) -> tuple[Path, str]:
    """A few real ESC-50 clips when the shared data is there, else generated tones."""
    manifest = td.esc50_subset(root, ["dog", "rain", "church_bells"], per_fold=1)
    if manifest is not None:
        return manifest, str(td.ESC50 / "audio")
    return td.tone_manifest(root / "tones", folds=4, per_fold=1), "audio"


def test_end_to_end_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert td.WEIGHTS.is_file(), "the shared ImageNet weights are needed (../shared/weights)"
    manifest, audio_root = _dataset(tmp_path)
    cfg = tmp_path / "smoke.yaml"
    cfg.write_text(
        f"data: {{manifest: {manifest}, audio_root: {audio_root}, train_folds: [1, 2, 3], test_folds: [4],\n"
        f"  val_fraction: 0.34, min_clips_per_class: 2, cache_dir: cache, workers: 2}}\n"
        f"window: {{window_frames: 48, hop_frames: 8}}\n"
        f"model: {{weights: {td.WEIGHTS}}}\n"
        "fit: {head_epochs: 1, finetune_epochs: 1, qat_epochs: 1, crops_per_clip: 2, batch_size: 16,\n"
        "  unfreeze_blocks: 2}\n"
        "export: {calibration_windows: 16, latency_runs: 20}\n"
        "output: run\nbundle: {name: smoke, version: 0.0.1}\n"
    )
    assert cli.main(["run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "prepare: 12 clips, 3 classes" in out and "evaluate: folds [4] clip accuracy" in out
    run = tmp_path / "run"
    b = read_bundle(run / "smoke.auricle")
    m = b.manifest
    assert m.input.dtype == "int8" and m.output.dtype == "int8"
    assert m.window_frames == 48 and m.hop_frames == 8
    assert len(m.labels) == 3 and set(m.thresholds) == set(m.labels)
    assert {"int8_clip_accuracy", "float_clip_accuracy", "top1_agreement", "params", "macs"} <= set(m.metrics)
    assert m.provenance["training_config"] == cfg.read_text()
    assert "ASSIGN_VARIABLE" not in export.op_names(b.model)
    scores = Classifier(b).scores(np.full((48, 64), -30.0, np.float32))
    assert scores.shape == (3,) and abs(float(scores.sum()) - 1.0) < 0.05
    for name in ("history_qat.csv", "report.json", "report.md", "confusion.png", "embedding.png", "curves.png"):
        assert (run / name).stat().st_size > 0, name
    assert (run / pipeline.REPORT_MD).read_text().count("| ") > 10


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


def test_cross_validation_runs_every_fold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = td.tone_manifest(tmp_path / "tones", folds=2, per_fold=2, seconds=1.0)
    cfg = tmp_path / "cv.yaml"
    cfg.write_text(
        f"data: {{manifest: {manifest}, val_fraction: 0.5, cache_dir: cache, workers: 1}}\n"
        f"window: {{window_frames: 32, hop_frames: 16}}\nmodel: {{weights: none}}\n"
        "fit: {head_epochs: 0, finetune_epochs: 1, crops_per_clip: 1, batch_size: 8, unfreeze_blocks: 1}\n"
        "export: {calibration_windows: 4, latency_runs: 5}\noutput: run\n"
    )
    assert cli.main(["run", "--config", str(cfg), "--cv"]) == 0
    assert "cv: 2 folds, int8 clip accuracy" in capsys.readouterr().out
    cv = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert set(cv["folds"]) == {"1", "2"}
    for fold in (1, 2):
        assert read_bundle(tmp_path / "run" / "cv" / f"fold_{fold}" / "model.auricle").manifest.labels
