"""Runtime changes saved in the state directory: what comes back, what a new model or an edited config does
to them, and a bad file (edge/daemon/controls.py).  The daemon itself: tests/system/test_saved_controls.py."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from edge.daemon.controls import FILE, Controls, parse
from edge.daemon.startup import default_model_path
from edge.detect.events import EventDetector, EventParams
from edge.model.bundle import Manifest, read_bundle

SHIPPED = read_bundle(default_model_path()).manifest


def manifest(labels: tuple[str, ...]) -> Manifest:
    """The shipped manifest with other labels (bundle thresholds 0.3 for each, each an alert label, so each is
    listened for by default) and no optional AudioSet labels."""
    return dataclasses.replace(
        SHIPPED, labels=labels, thresholds=dict.fromkeys(labels, 0.3), alert_labels=labels, audioset=None
    )


OLD = manifest(("dog", "cat", "siren"))
NEW = manifest(("dog", "siren", "glass_breaking"))


def change(det: EventDetector, saved: Controls, model: Manifest, request: dict[str, object]) -> None:
    assert saved.handle(json.dumps(request).encode(), det, model).ok


def test_what_was_changed_comes_back_and_only_that(tmp_path: Path) -> None:
    params = EventParams(thresholds={"siren": 0.4})
    saved = Controls(tmp_path, params)
    det = saved.detector_for(OLD)
    change(det, saved, OLD, {"listen": {"dog": False}, "thresholds": {"cat": 0.5}})
    change(det, saved, OLD, {"thresholds": {"siren": 0.4}})  # the config's own value: nothing to keep
    data = json.loads((tmp_path / FILE).read_text())
    assert data["format"] == 1 and isinstance(data["saved"], float)
    assert data["labels"] == {
        "dog": {"listen": False, "config_listen": None},
        "cat": {"threshold": 0.5, "config_threshold": None},
    }
    again = Controls(tmp_path, params).detector_for(OLD)  # a restart
    assert again.enabled() == ("cat", "siren")
    assert again.thresholds() == {"dog": 0.3, "cat": 0.5, "siren": 0.4}
    change(again, saved, OLD, {"listen": {"dog": True}, "thresholds": {"cat": 0.3}})  # back as configured
    assert json.loads((tmp_path / FILE).read_text())["labels"] == {}


def test_a_new_model_keeps_the_labels_it_still_has(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    params = EventParams()
    saved = Controls(tmp_path, params)
    change(saved.detector_for(OLD), saved, OLD, {"listen": {"dog": False}, "thresholds": {"cat": 0.6}})
    with caplog.at_level(logging.INFO):
        new = saved.detector_for(NEW)  # an update over the air, or a restart with another model
    assert new.enabled() == ("siren", "glass_breaking") and new.thresholds()["dog"] == 0.3
    assert "cat was set at runtime, but this model has no such label: forgotten" in caplog.text
    assert json.loads((tmp_path / FILE).read_text())["labels"] == {"dog": {"listen": False, "config_listen": None}}


def test_an_edited_config_wins_over_an_older_runtime_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    saved = Controls(tmp_path, EventParams())
    det = saved.detector_for(OLD)
    change(det, saved, OLD, {"listen": {"dog": False, "siren": False}, "thresholds": {"cat": 0.6, "dog": 0.7}})
    edited = EventParams(enabled=("dog", "cat"), thresholds={"cat": 0.45})  # written after the changes
    with caplog.at_level(logging.INFO):
        det = Controls(tmp_path, edited).detector_for(OLD)
    assert det.enabled() == ("dog", "cat")  # dog: now named in events.enabled; siren: the config still names it not
    assert det.thresholds() == {"dog": 0.7, "cat": 0.45, "siren": 0.3}
    assert "dog is now in events.enabled in the config" in caplog.text
    assert "events.thresholds.cat is 0.45 in the config, edited after it was set to 0.6: config wins" in caplog.text
    assert json.loads((tmp_path / FILE).read_text())["labels"] == {
        "dog": {"threshold": 0.7, "config_threshold": None},
        "siren": {"listen": False, "config_listen": None},
    }


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "\udcff",
        "[]",
        '{"format": 2, "labels": {}}',
        '{"format": 1, "labels": {"dog": {"threshold": 7}}}',
        '{"format": 1, "labels": {"dog": {"listen": "no"}}}',
        '{"format": 1, "labels": {"dog": {"threshold": NaN}}}',
        '{"format": 1, "labels": {"dog": {"volume": 11}}}',
    ],
)
def test_a_bad_file_is_set_aside_in_one_line(tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / FILE
    raw = text.encode("utf-8", errors="surrogateescape")
    path.write_bytes(raw)
    with caplog.at_level(logging.INFO):
        det = Controls(tmp_path, EventParams()).detector_for(OLD)
    assert det.enabled() == OLD.labels
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.WARNING
    assert f"{path}: " in caplog.text
    assert "starting from the config (the file is moved to controls.json.bad)" in caplog.text
    assert not path.exists() and (tmp_path / "controls.json.bad").read_bytes() == raw


def test_an_unwritable_state_dir_costs_one_line_per_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    saved = Controls(blocker / "models", EventParams())
    det = saved.detector_for(OLD)
    change(det, saved, OLD, {"listen": {"dog": False}})
    assert det.enabled() == ("cat", "siren")  # the change itself holds
    assert "cannot save to" in caplog.text and "runtime changes last until the daemon restarts" in caplog.text


def test_parse_reads_what_is_written() -> None:
    text = '{"format": 1, "saved": 1.0, "labels": {"dog": {"listen": true, "config_listen": "disabled"}}}'
    assert parse(text)["dog"].listen is True and parse(text)["dog"].config_listen == "disabled"


def test_a_set_command_without_a_model_changes_nothing(tmp_path: Path) -> None:
    result = Controls(tmp_path, EventParams()).handle(b'{"listen": {"dog": false}}', None, None)
    assert not result.ok and result.error == "set: no model is running"
    assert not (tmp_path / FILE).exists()
