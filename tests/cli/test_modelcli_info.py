"""``auricle model info``: per-label calibration table, background labels, the active model by default."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.daemon import write_config
from support.models import tone_bundle

from edge.cli.main import main as cli_main
from edge.daemon.startup import default_model_path
from edge.detect.events import EventParams
from edge.model.bundle import read_bundle, write_bundle
from training.calibrate.search import CalibrationParams, calibrate
from training.calibrate.streams import BackgroundStream, PositiveClip


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_bundle(tmp_path_factory.mktemp("info") / "tones.auricle")


@pytest.fixture(scope="module")
def calibrated(plain: Path) -> Path:
    """The tone bundle with 'quiet' as a background label and thresholds from a calibration."""
    b = read_bundle(plain)
    labels = b.manifest.labels  # quiet, tone_1000, tone_3000
    bg = np.zeros((200, 3), dtype=np.float32)
    bg[50:55, 2] = 0.995  # tone_3000 fires on background at every grid threshold
    clip = np.zeros((30, 3), dtype=np.float32)
    clip[10:20, 1] = 0.8
    cal = calibrate(
        labels,
        [BackgroundStream(bg, 900.0)],
        [PositiveClip(clip, 1, 1.0, 2.0)],
        hop_s=0.1,
        events=EventParams(smoothing_hops=1, hold_s=0.0),
        params=CalibrationParams(budget_per_hour=2.0),
        background_labels=("quiet",),
    )
    manifest = dataclasses.replace(
        b.manifest,
        background_labels=("quiet",),
        thresholds=cal.thresholds(),
        metrics={"int8_clip_accuracy": 0.9, **cal.to_dict()},
    )
    path = plain.with_name("calibrated.auricle")
    write_bundle(path, manifest, b.model)
    return path


def info(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert cli_main(["model", "info", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def row(lines: list[str], label: str) -> list[str]:
    return next(line.split() for line in lines if line.split()[:1] == [label])


def test_table_of_thresholds_recall_and_false_alarms(calibrated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = info(capsys, str(calibrated))
    text = "\n".join(lines)
    assert "labels (2):" in text
    assert row(lines, "label") == ["label", "threshold", "recall", "false/h", "95%", "bound/h", "target"]
    assert row(lines, "tone_1000") == ["tone_1000", "0.05", "1.00", "0", "12", "met"]
    assert " ".join(row(lines, "tone_3000")) == "tone_3000 1.00 - 0 12 off: over budget at every threshold"
    assert "    target: recall >= 0.5 on the validation clips at a threshold whose false alarms on" in lines
    assert "background stay within 1/h per label (false/h: measured there); 1 of 2 labels miss it" in text
    assert "background labels, scored but never published (1): quiet" in text
    assert "calibration: 0.25 h of background, budget 2 false events/h in total; measured 0/h" in text
    assert "int8_clip_accuracy: 0.9" in text
    assert "per_label" not in text, "the figures are in the table, not dumped as JSON"


def test_bundle_without_figures_lists_labels(plain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = info(capsys, str(plain))
    assert "  labels (3): quiet, tone_1000, tone_3000" in lines
    assert not any("threshold" in line or "background labels" in line for line in lines)


def test_active_model_by_default(plain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = read_bundle(default_model_path()).manifest
    assert info(capsys)[0].startswith(f"{shipped.name} {shipped.version}  (")
    config = write_config(tmp_path / "auricle.yaml", {"model": {"path": str(plain)}})
    assert info(capsys, "--config", str(config))[0].startswith(f"tones 0.1.0  ({plain}")
    assert info(capsys, "--config", str(config), default_model_path())[0].startswith(shipped.name), "argument wins"


def test_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  pathh: x\n")
    assert cli_main(["model", "info", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("auricle: ") and "pathh" in err and "\n" not in err


def test_why_a_label_misses_the_target() -> None:
    from edge.cli.model import _verdict

    assert _verdict({"meets_budget": True, "recall": 0.8}, 0.4, 0.5) == "met"
    assert _verdict({"meets_budget": False, "recall": 0.2, "false_per_hour": 0.0}, 0.34, 0.5) == "recall < 0.5"
    assert _verdict({"meets_budget": False, "recall": None}, 0.3, 0.5) == "no validation clips"
    assert _verdict({"meets_budget": False, "recall": 0.0}, 1.0, 0.5) == "off: over budget at every threshold"
    assert _verdict({}, 0.5, 0.5) == "-"


def test_size_and_sha256_are_the_bundles_as_the_readme_and_model_state_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from support.shared import ROOT

    from edge.daemon.config import load_config
    from edge.daemon.startup import starting_model_of

    config = write_config(tmp_path / "auricle.yaml", {"model": {"state_dir": str(tmp_path / "models")}})
    lines = info(capsys, "--config", str(config))
    shipped = Path(default_model_path())
    size = f"{shipped.stat().st_size / 1e6:.2f} MB"
    model_mb = f"{len(read_bundle(shipped).model) / 1e6:.2f} MB"
    assert lines[1] == f"  size: {size} bundle, model.tflite {model_mb} uncompressed"
    assert f"; {size}) and its model card" in (ROOT / "README.md").read_text(), "README states the bundle's size"
    published = starting_model_of(load_config(config)).model
    assert published is not None and published.describe()["sha256"] in lines[2], "model/state's sha256"
    assert lines[2].endswith(f"bundle sha256: {published.sha256} (as in model/state)")


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    """``auricle model info | head -3``: the reader closes the pipe before the output is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "model", "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the bundle is loaded and its lines printed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_info_says_what_the_device_can_learn_with() -> None:
    """The shipped model's embedding and background set, and an old model's lack of one, in one line each."""
    import subprocess
    import sys

    def info(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "edge", "model", "info", *args],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "embedding: 1024 values (auricle teach), background set of 3000 windows" in info()
    assert "embedding: none (auricle teach needs a model with one" in info("tests/data/esc50-3.0.0.auricle")
