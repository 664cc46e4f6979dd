"""Thresholds from a false-alarm budget, on scripted score streams through EventDetector."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from scipy.stats import chi2

from edge.detect.events import EventDetector, EventParams
from training.calibrate.result import Calibration, LabelCalibration, poisson_upper_95
from training.calibrate.search import OFF, CalibrationParams, calibrate, floored_grid
from training.calibrate.streams import BackgroundStream, PositiveClip

HOP_S = 0.1
LABELS = ("a", "b", "c")
SHARP = EventParams(smoothing_hops=1, hold_s=0.0)
"""No smoothing, no hold: one event per run of passing hops."""


def stream(seconds: float, pulses: dict[int, list[tuple[float, float, float]]], floor: float = 0.02) -> np.ndarray:
    """Scores (hops x 3) at ``floor`` with pulses ``{label: [(start_s, end_s, score)]}``."""
    scores = np.full((round(seconds / HOP_S), len(LABELS)), floor, dtype=np.float32)
    for label, spans in pulses.items():
        for start_s, end_s, score in spans:
            scores[round(start_s / HOP_S) : round(end_s / HOP_S), label] = score
    return scores


def hour_of(scores: np.ndarray) -> BackgroundStream:
    """The scripted scores stand for an hour of background: budget 3/h over 3 labels = 1 event each."""
    return BackgroundStream(scores, 3600.0)


def by_label(cal: Calibration) -> dict[str, LabelCalibration]:
    return {x.label: x for x in cal.labels}


def run(
    bg: np.ndarray, clips: Sequence[PositiveClip] = (), *, events: EventParams = SHARP, budget: float = 3.0, **kw: Any
) -> dict[str, LabelCalibration]:
    """Calibrate LABELS on an hour of ``bg`` (default budget: one event per label per hour)."""
    params = CalibrationParams(budget_per_hour=budget, **kw)
    return by_label(calibrate(LABELS, [hour_of(bg)], clips, hop_s=HOP_S, events=events, params=params))


def test_threshold_is_the_lowest_within_budget() -> None:
    # label a: three isolated pulses peaking at 0.305, 0.505, 0.705 -> 3, 2, 1, 0 events as the threshold rises
    bg = stream(20, {0: [(1, 1.5, 0.305), (5, 5.5, 0.505), (9, 9.5, 0.705)]})
    a = run(bg)["a"]
    assert a.threshold == pytest.approx(0.51)
    assert a.false_events == 1 and a.hours == pytest.approx(1.0) and a.false_per_hour == pytest.approx(1.0)
    assert a.upper_95_per_hour == pytest.approx(chi2.ppf(0.95, 4) / 2)
    # a tighter budget (0.5 per label per hour) needs zero events: above the last pulse
    assert run(bg, budget=1.5)["a"].threshold == pytest.approx(0.71)
    quiet = run(bg)["c"]
    assert quiet.threshold == pytest.approx(0.05) and quiet.false_events == 0
    assert quiet.upper_95_per_hour == pytest.approx(3.0)


def test_a_floor_keeps_every_threshold_at_or_above_it() -> None:
    bg = stream(20, {0: [(1, 1.5, 0.305), (5, 5.5, 0.505), (9, 9.5, 0.705)], 1: [(3, 3.5, 0.305)]})
    grid = floored_grid(0.4)
    assert grid[0] == 0.4 and grid[-1] == 0.99
    got = run(bg, budget=1.5, grid=grid)  # no event allowed
    assert got["a"].threshold == pytest.approx(0.71)  # above the floor anyway
    assert got["b"].threshold == pytest.approx(0.4) and got["c"].threshold == pytest.approx(0.4)
    assert run(bg, budget=1.5)["b"].threshold == pytest.approx(0.31)  # without the floor: just above its pulse
    with pytest.raises(ValueError, match="above every candidate"):
        floored_grid(0.995)


def test_label_that_cannot_meet_the_budget_is_off_and_flagged() -> None:
    bg = stream(20, {1: [(1, 2, 0.995), (5, 6, 0.995)]})
    clip = PositiveClip(stream(4, {1: [(1, 2, 0.995)]}), 1, 1.0, 2.0)
    cal = calibrate(
        LABELS, [hour_of(bg)], [clip], hop_s=HOP_S, events=SHARP, params=CalibrationParams(budget_per_hour=3)
    )
    b = by_label(cal)["b"]
    assert b.threshold == OFF and not b.meets_budget
    assert (b.false_events, b.recall) == (0, 0.0), "figures measured at 1.0"
    assert cal.failing() == ("a", "b", "c"), "a and c have no positive clips: recall unmeasured, not met"
    assert cal.to_dict()["per_label"]["b"]["meets_budget"] is False


def test_in_budget_but_low_recall_keeps_the_lowest_threshold_and_is_flagged() -> None:
    bg = stream(20, {0: [(1, 1.5, 0.605), (5, 5.5, 0.605)]})
    clips = [PositiveClip(stream(4, {0: [(1, 2, score)]}), 0, 1.0, 2.0) for score in (0.9, 0.4, 0.3)]
    a = run(bg, clips)["a"]
    assert a.threshold == pytest.approx(0.61)
    assert (a.hits, a.clips) == (1, 3) and not a.meets_budget
    assert run(bg, clips, min_recall=0.3)["a"].meets_budget


def test_recall_window_half_a_second_before_to_one_after() -> None:
    # the sound lasts 2.0-3.0 s; an event starting at 1.4 or 4.1 s misses, at 1.6 or 3.9 s hits
    clips = [PositiveClip(stream(6, {0: [(t, t + 0.3, 0.9)]}), 0, 2.0, 3.0) for t in (1.4, 1.6, 3.9, 4.1)]
    a = run(stream(5, {}), clips)["a"]
    assert (a.hits, a.clips, a.recall) == (2, 4, 0.5)
    assert a.false_events == 0, "the label's own events on its clip are never false alarms"


def test_positive_clip_is_background_for_the_other_labels() -> None:
    clip = PositiveClip(stream(36, {0: [(1, 2, 0.9)], 2: [(5, 6, 0.805), (20, 21, 0.805)]}), 0, 1.0, 2.0)
    found = run(stream(5, {}), [clip], budget=1.0)
    a, c = found["a"], found["c"]
    assert c.hours == pytest.approx(1.01) and a.hours == pytest.approx(1.0)
    # budget 1/3 per hour on 1.01 h: zero events allowed, so c goes above its pulses
    assert c.threshold == pytest.approx(0.81)
    assert a.recall == 1.0


def test_hold_merges_pulses_and_smoothing_averages() -> None:
    # two pulses 0.5 s apart: one event with a 1 s hold, two without; budget 1 per label per hour
    bg = stream(20, {0: [(1, 1.5, 0.605), (2, 2.5, 0.605)]})
    assert run(bg, events=EventParams(smoothing_hops=1, hold_s=1.0))["a"].threshold == pytest.approx(0.05)
    assert run(bg)["a"].threshold == pytest.approx(0.61)
    # single-hop spikes of 0.975: the mean over 5 hops is 0.195, so only thresholds <= 0.19 fire
    spikes = stream(20, {1: [(3, 3.1, 0.975), (10, 10.1, 0.975)]}, floor=0.0)
    assert run(spikes, events=EventParams(smoothing_hops=5))["b"].threshold == pytest.approx(0.20)
    assert run(spikes)["b"].threshold == pytest.approx(0.98)


def test_threshold_stays_within_budget_above_it() -> None:
    # one long event at low thresholds splits into two at higher ones (a dip to 0.405):
    # budget 1 event/h -> 0.05..0.40 give 1, 0.41..0.70 give 2, above give 0 -> choose 0.71, not 0.05
    bg = stream(20, {0: [(1, 2, 0.705), (2, 3, 0.405), (3, 4, 0.705)]})
    assert run(bg)["a"].threshold == pytest.approx(0.71)


def reference(
    scores: list[np.ndarray], clips: list[PositiveClip], grid: Sequence[float], events: EventParams
) -> tuple[np.ndarray, np.ndarray]:
    """False-event and hit counts (grid x labels) with one plain EventDetector per candidate and stream."""
    false = np.zeros((len(grid), len(LABELS)), dtype=int)
    hits = np.zeros_like(false)
    streams: list[tuple[np.ndarray, PositiveClip | None]] = [(s, None) for s in scores] + [(c.scores, c) for c in clips]
    for j, thr in enumerate(grid):
        for rows, clip in streams:
            det = EventDetector(LABELS, dict.fromkeys(LABELS, thr), events)
            starts = [e for h, row in enumerate(rows) for e in det.update(row, h * HOP_S) if e.kind == "start"]
            for e in starts:
                i = LABELS.index(e.label)
                if clip is None or i != clip.label:
                    false[j, i] += 1
            if clip is not None:
                hits[j, clip.label] += any(
                    LABELS.index(e.label) == clip.label and clip.start_s - 0.5 <= e.start <= clip.end_s + 1.0
                    for e in starts
                )
    return false, hits


def test_chunked_pruned_sweep_equals_one_detector_per_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    scores = [rng.beta(0.6, 3.0, (300, 3)).astype(np.float32) for _ in range(2)]
    clips = [PositiveClip(rng.beta(0.6, 3.0, (40, 3)).astype(np.float32), k % 3, 1.0, 2.5) for k in range(6)]
    grid = tuple(round(0.3 + 0.05 * k, 2) for k in range(13))
    events = EventParams(smoothing_hops=3, hold_s=0.3)
    false, hits = reference(scores, clips, grid, events)
    background = [BackgroundStream(s, 3600.0) for s in scores]
    params = CalibrationParams(budget_per_hour=6.0, grid=grid, min_recall=0.0)
    monkeypatch.setattr("training.calibrate.search._COLUMNS_PER_DETECTOR", 7)  # chunks of two candidates
    cal = calibrate(LABELS, background, clips, hop_s=HOP_S, events=events, params=params)
    for i, x in enumerate(cal.labels):
        within = false[:, i] / x.hours <= 2.0  # budget 6/h over 3 labels
        bad = np.flatnonzero(~within)
        j = int(bad[-1]) + 1 if len(bad) else 0
        assert x.threshold == (grid[j] if j < len(grid) else OFF), x.label
        if j < len(grid):
            assert (x.false_events, x.hits) == (false[j, i], hits[j, i]), x.label


def test_totals_background_labels_and_json() -> None:
    labels = ("a", "b", "_background")
    bg = np.zeros((100, 3), dtype=np.float32)
    bg[10:12, 0] = 0.9
    bg[:, 2] = 0.99
    cal = calibrate(
        labels,
        [BackgroundStream(bg, 1800.0)],
        [PositiveClip(np.full((30, 3), 0.9, dtype=np.float32), 1, 0.5, 2.5)],
        hop_s=HOP_S,
        events=SHARP,
        params=CalibrationParams(budget_per_hour=40.0, grid=(0.5, 0.95)),
        background_labels=("_background",),
    )
    assert [x.label for x in cal.labels] == ["a", "b"]
    assert cal.thresholds() == {"a": 0.5, "b": 0.5}
    assert cal.label_budget_per_hour == 20.0 and cal.background_hours == pytest.approx(0.5)
    # a: 1 event on background + 1 on b's 3 s clip, over 0.5 h + 3 s
    assert cal.false_events == 2 and cal.recall == 1.0
    assert cal.false_per_hour == pytest.approx(2 / (0.5 + 3 / 3600))
    assert cal.upper_95_per_hour == pytest.approx(poisson_upper_95(2, 0.5))
    data = json.loads(json.dumps(cal.to_dict()))
    assert set(data) == {"per_label", "calibration"}
    assert set(data["per_label"]["a"]) >= {"threshold", "recall", "false_per_hour", "upper_95_per_hour", "meets_budget"}
    assert data["calibration"]["background_hours"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"background": [BackgroundStream(np.zeros((5, 2)), 10.0)]}, r"background\[0\]: expected scores of shape"),
        ({"background": [BackgroundStream(np.zeros((5, 3)), 0.0)]}, r"duration_s must be > 0"),
        ({"positives": [PositiveClip(np.zeros((5, 3)), 3, 0.0, 1.0)]}, r"positives\[0\]: label 3"),
        ({"positives": [PositiveClip(np.zeros((5, 3)), 0, 2.0, 1.0)]}, r"start_s <= end_s"),
        ({"hop_s": 0.0}, r"hop_s must be > 0"),
        ({"background_labels": ("z",)}, r"not among the labels: z"),
        ({"background": []}, r"label 'a': no background exposure"),
    ],
)
def test_bad_input_is_one_clear_error(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "background": [BackgroundStream(np.zeros((5, 3)), 10.0)],
        "positives": [],
        "hop_s": HOP_S,
    }
    args |= kwargs
    with pytest.raises(ValueError, match=message):
        calibrate(LABELS, **args)  # type: ignore[arg-type]


def test_bad_params() -> None:
    with pytest.raises(ValueError, match="ascending"):
        CalibrationParams(grid=(0.5, 0.4))
    with pytest.raises(ValueError, match="budget_per_hour"):
        CalibrationParams(budget_per_hour=0)
