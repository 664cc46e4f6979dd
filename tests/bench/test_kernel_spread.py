"""bench/kernel_spread.py: kernel families against XNNPACK, by the old four-step rule and by the self-test's."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from support.shared import ROOT, shared_dir

from bench import kernel_spread
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier

ESC50 = shared_dir() / "data" / "esc50"
MODEL = ROOT / "models" / "esc50.auricle"


@pytest.fixture(scope="module")
def pcm() -> np.ndarray:
    if not (ESC50 / "esc50.csv").is_file():
        pytest.skip(f"no ESC-50 clips at {ESC50} (../shared, or AURICLE_SHARED)")
    return kernel_spread.windows_of(kernel_spread.esc50_clips(ESC50, 6), Classifier(read_bundle(MODEL)))


def test_the_rule_passes_what_output_steps_cannot_tell_apart(pcm: np.ndarray) -> None:
    reference = Classifier(read_bundle(MODEL))
    rows = {
        r.family.rsplit(", ", 1)[1]: r for r in kernel_spread.table(reference, kernel_spread.families(MODEL, pcm), {})
    }
    same, other = rows["xnnpack kernels"], rows["builtin kernels"]
    assert same.windows == other.windows == len(pcm) > 100
    assert same.within_rule == same.within_4_steps == 1.0 and same.max_steps == 0.0
    assert other.max_steps > 4 and other.within_4_steps < other.within_rule  # the logit rule is what passes them
    assert other.stable_windows >= 1 and other.stable_within_rule == 1.0


def test_saved_outputs_come_back_as_other_families(
    pcm: np.ndarray, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saved = tmp_path / "here.npz"
    np.savez(tmp_path / "windows.npz", pcm=pcm[:40])
    with caplog.at_level(logging.INFO, logger="bench.kernel_spread"):
        assert kernel_spread.main(["--windows", str(tmp_path / "windows.npz"), "--save", str(saved)]) == 0
        caplog.clear()
        assert kernel_spread.main(["--windows", str(tmp_path / "windows.npz"), "--against", str(saved)]) == 0
    families = [line for line in caplog.messages if " kernels " in line and "%" in line]
    assert len(families) == 2  # the saved families carry this machine's names: the same two rows
    np.savez(tmp_path / "other.npz", pcm=pcm[40:80])
    with pytest.raises(SystemExit, match="not the same windows"):
        kernel_spread.main(["--windows", str(tmp_path / "other.npz"), "--against", str(saved)])
