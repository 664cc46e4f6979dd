"""An open-set model's background output is scored but never published: no event, state or entity."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.daemon import tone_wav, write_config
from support.models import tone_bundle

from edge.daemon.config import load_config
from edge.daemon.service import Service
from edge.model.bundle import read_bundle, write_bundle
from edge.model.classifier import Classifier


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tone model with its 'quiet' output declared as the background class."""
    root = tmp_path_factory.mktemp("bg")
    b = read_bundle(tone_bundle(root / "tones.auricle", selftest=False))
    m = dataclasses.replace(
        b.manifest,
        background_labels=("quiet",),
        thresholds={k: v for k, v in b.manifest.thresholds.items() if k != "quiet"},
    )
    write_bundle(root / "open.auricle", m, b.model)
    return root / "open.auricle"


def test_classifier_scores_only_event_labels(bundle: Path) -> None:
    clf = Classifier(read_bundle(bundle))
    assert clf.labels == ("tone_1000", "tone_3000")
    assert clf.manifest.labels == ("quiet", "tone_1000", "tone_3000")


def test_daemon_never_publishes_the_background_class(bundle: Path, tmp_path: Path) -> None:
    clip = tone_wav(tmp_path / "tone.wav", seconds=4.0, tone_s=(1.5, 2.5))
    config = write_config(
        tmp_path / "auricle.yaml",
        {"model": {"path": str(bundle)}, "audio": {"source": "file", "file": str(clip), "realtime": False},
         "events": {"hold_s": 0.2}},
    )  # fmt: skip
    service = Service(load_config(config))
    assert service.device_info().labels == ("tone_1000", "tone_3000")  # discovery is built from these
    done = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--config", str(config), "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert any(m["topic"].endswith("/event") and m["payload"]["label"] == "tone_1000" for m in messages)
    assert not any("quiet" in json.dumps(m) for m in messages), "the background class reached the output"
