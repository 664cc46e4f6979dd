"""The device's install alone (``deploy/setup.sh`` makes ``.venv-edge`` with ``auricle[edge]``).

It must read FLAC (field recorders and ESC-50 write FLAC) and must not have
TensorFlow: everything on the device runs without it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from support.models import tone_bundle
from support.shared import ROOT

EDGE = ROOT / ".venv-edge"

pytestmark = pytest.mark.skipif(
    not (EDGE / "bin" / "auricle").exists(), reason=f"no edge-only install at {EDGE} (deploy/setup.sh dev makes it)"
)


def test_edge_install_has_no_tensorflow() -> None:
    done = subprocess.run(
        [str(EDGE / "bin" / "python"), "-c", "import tensorflow"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "No module named 'tensorflow'" in done.stderr


def test_edge_install_classifies_flac(tmp_path: Path) -> None:
    import soundfile

    rate = 16000
    t = np.arange(2 * rate) / rate
    path = tmp_path / "tone.flac"
    soundfile.write(str(path), 0.3 * np.sin(2 * np.pi * 1000 * t), rate, subtype="PCM_16")
    model = tone_bundle(tmp_path / "tones.auricle")
    done = subprocess.run(
        [str(EDGE / "bin" / "auricle"), "classify", str(path), "--model", str(model), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert '"label": "tone_1000"' in done.stdout
