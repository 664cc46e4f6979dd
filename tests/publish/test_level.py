"""The ``level`` payload's floor: digital silence reads -120 dBFS, not -200 (edge/publish/payloads.py)."""

from __future__ import annotations

import json

import numpy as np
from support.models import tone_bundle

from edge.detect.pipeline import Pipeline
from edge.publish.payloads import LEVEL_FLOOR_DBFS, LevelGate, Payloads


class _Levels:
    def __init__(self) -> None:
        self.dbfs: list[float] = []

    def publish_level(self, t: float, offset_s: float, dbfs: float) -> None:
        del t, offset_s
        self.dbfs.append(dbfs)

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


def test_digital_silence_reads_the_floor(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edge.model.bundle import read_bundle
    from edge.model.classifier import Classifier

    clf = Classifier(read_bundle(tone_bundle(tmp_path / "t.auricle", selftest=False)))
    sink = _Levels()
    pipeline = Pipeline(clf, sink=sink)
    pipeline.feed(np.zeros(16000, dtype=np.float32), 1.0)
    assert sink.dbfs and min(sink.dbfs) < LEVEL_FLOOR_DBFS  # what the pipeline measures of zeros
    sent = json.loads(Payloads("1.0.0").level(1.0, 1.0, min(sink.dbfs)))["dbfs"]
    assert sent == LEVEL_FLOOR_DBFS == -120.0
    assert json.loads(Payloads("1.0.0").level(1.0, 1.0, -42.04))["dbfs"] == -42.0


def test_the_level_gate_compares_at_the_floor() -> None:
    now = [0.0]
    gate = LevelGate(interval_s=0.0, change_db=3.0, max_interval_s=900.0, clock=lambda: now[0])
    assert gate.ready(-200.0)
    now[0] = 1.0
    assert not gate.ready(-300.0)  # both are digital silence: no change to send
    assert gate.ready(-110.0)
