"""Event logic on scripted score sequences: smoothing, hysteresis, hold, cooldown, allow/deny."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge.detect.events import Event, EventDetector, EventParams
from edge.detect.set_command import ControlChange
from edge.schema import ConfigError, build

LABELS = ("dog", "siren", "quiet")
T0, DT = 1000.0, 0.1


def hop_t(i: int) -> float:
    return T0 + i * DT


def run(detector: EventDetector, rows: list[list[float]]) -> list[tuple[int, Event]]:
    """Feed rows of scores (one per hop); return (hop index, event) for every event."""
    found = []
    for i, row in enumerate(rows):
        found += [(i, e) for e in detector.update(np.array(row, dtype=np.float32), hop_t(i))]
    return found


def dog(values: list[float]) -> list[list[float]]:
    return [[v, 0.0, 0.0] for v in values]


def make(**kwargs: object) -> EventDetector:
    params = build(EventParams, kwargs, "test")
    return EventDetector(LABELS, {"dog": 0.5, "siren": 0.5, "quiet": 0.9}, params)


def test_k_of_n_start_hold_and_stats() -> None:
    det = make(smoothing="k_of_n", smoothing_hops=3, k=2, hold_s=0.25)
    events = run(det, dog([0.0, 0.9, 0.0, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]))
    assert [(i, e.kind) for i, e in events] == [(3, "start"), (8, "end")]
    start, end = events[0][1], events[1][1]
    assert start.label == end.label == "dog"
    assert start.id == end.id
    assert start.start == pytest.approx(hop_t(1))  # first passing hop inside the deciding window
    assert start.t_audio == pytest.approx(hop_t(3))
    assert start.end is None
    assert start.hops == 3
    assert start.peak == pytest.approx(0.9)
    assert start.mean == pytest.approx(0.6)
    # hop 5 (0.1) still passes 2-of-3, so it is the last hop of the sound
    assert end.end == pytest.approx(hop_t(5))
    assert end.t_audio == pytest.approx(hop_t(8))
    assert end.hops == 5
    assert end.mean == pytest.approx((0.9 + 0.0 + 0.9 + 0.9 + 0.1) / 5)
    assert end.peak == pytest.approx(0.9)


def test_k_of_n_needs_k_hops_from_the_start() -> None:
    det = make(smoothing="k_of_n", smoothing_hops=3, k=2, hold_s=0.0)
    assert run(det, dog([0.9])) == []


def test_mean_smoothing_and_zero_hold() -> None:
    det = make(smoothing="mean", smoothing_hops=2, hold_s=0.0, release=1.0)  # no hysteresis: ON and OFF at 0.5
    events = run(det, dog([0.4, 0.7, 0.2, 0.8, 0.9, 0.0, 0.0]))
    kinds = [(i, e.kind) for i, e in events]
    # means: .4 .55 .45 .5 .85 .45 0 -> ON at 1, OFF at 2, ON at 3 (>= passes), OFF at 5
    assert kinds == [(1, "start"), (2, "end"), (3, "start"), (5, "end")]
    assert events[2][1].start == pytest.approx(hop_t(3))
    assert events[0][1].id != events[2][1].id


def test_cooldown_blocks_a_quick_restart() -> None:
    det = make(smoothing="mean", smoothing_hops=2, hold_s=0.0, cooldown_s=0.15, release=1.0)
    events = run(det, dog([0.4, 0.7, 0.2, 0.8, 0.9, 0.0, 0.0]))
    # the end at hop 2 starts the cooldown: hop 3 (0.1 s later) may not start, hop 4 (0.2 s) may
    assert [(i, e.kind) for i, e in events] == [(1, "start"), (2, "end"), (4, "start"), (5, "end")]


def test_hold_keeps_one_event_across_a_short_gap() -> None:
    det = make(smoothing="mean", smoothing_hops=1, hold_s=0.35)
    events = run(det, dog([0.9, 0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1]))
    assert [(i, e.kind) for i, e in events] == [(0, "start"), (8, "end")]
    assert events[1][1].end == pytest.approx(hop_t(4))
    assert events[1][1].hops == 5


WAVERING = [0.6, 0.47, 0.46, 0.6, 0.3, 0.0, 0.0]
"""A sound whose score wavers just under its threshold (0.5) twice, then stops."""


def test_release_keeps_a_wavering_sound_one_event() -> None:
    det = make(smoothing="mean", smoothing_hops=1, hold_s=0.0)  # release 0.9 by default: ON above 0.45
    events = run(det, dog(WAVERING))
    assert [(i, e.kind) for i, e in events] == [(0, "start"), (4, "end")]
    assert events[1][1].end == pytest.approx(hop_t(3))  # the last hop that held it ON
    assert events[1][1].hops == 4 and events[1][1].mean == pytest.approx((0.6 + 0.47 + 0.46 + 0.6) / 4)
    split = run(make(smoothing="mean", smoothing_hops=1, hold_s=0.0, release=1.0), dog(WAVERING))
    assert [(i, e.kind) for i, e in split] == [(0, "start"), (1, "end"), (3, "start"), (4, "end")]


def test_release_never_starts_an_event() -> None:
    det = make(smoothing="mean", smoothing_hops=1, hold_s=0.0)
    assert run(det, dog([0.47, 0.49, 0.46, 0.0])) == []  # above the release level, never at the threshold


def test_release_follows_the_threshold_in_force_and_k_of_n() -> None:
    det = make(smoothing="k_of_n", smoothing_hops=2, k=2, hold_s=0.0, release=0.5)
    det.apply(ControlChange(thresholds={"dog": 0.8}))  # release level 0.4
    events = run(det, dog([0.9, 0.9, 0.5, 0.45, 0.35, 0.9, 0.0]))
    # 2 of 2 at 0.8 from hop 1; 2 of 2 at 0.4 until hop 3; hop 4 (0.35) ends it; hop 5 alone starts nothing
    assert [(i, e.kind) for i, e in events] == [(1, "start"), (4, "end")]
    assert events[1][1].end == pytest.approx(hop_t(3))


def test_overlapping_labels_are_independent() -> None:
    det = make(smoothing="mean", smoothing_hops=1, hold_s=0.0)
    rows = [[0.9, 0.0, 0.0], [0.9, 0.8, 0.0], [0.1, 0.8, 0.0], [0.1, 0.1, 0.0]]
    events = run(det, rows)
    assert [(i, e.label, e.kind) for i, e in events] == [
        (0, "dog", "start"),
        (1, "siren", "start"),
        (2, "dog", "end"),
        (3, "siren", "end"),
    ]


def test_active_shows_both_while_on() -> None:
    det = make(smoothing="mean", smoothing_hops=1)
    run(det, [[0.9, 0.8, 0.0], [0.7, 0.9, 0.0]])
    active = det.active()
    assert set(active) == {"dog", "siren"}
    assert active["dog"].hops == 2
    assert active["dog"].peak == pytest.approx(0.9)


def test_per_label_thresholds_from_bundle_and_config() -> None:
    det = make(smoothing="mean", smoothing_hops=1, thresholds={"dog": 0.95})
    assert det.thresholds() == {"dog": 0.95, "siren": 0.5, "quiet": 0.9}
    assert run(det, [[0.9, 0.0, 0.85]]) == []
    assert [e.label for _, e in run(det, [[0.96, 0.0, 0.91]])] == ["dog", "quiet"]


def test_allow_and_deny_lists() -> None:
    allow = make(smoothing="mean", smoothing_hops=1, enabled=["dog"])
    deny = make(smoothing="mean", smoothing_hops=1, disabled=["siren"])
    assert allow.enabled() == ("dog",)
    assert deny.enabled() == ("dog", "quiet")
    assert [e.label for _, e in run(allow, [[0.9, 0.9, 0.95]])] == ["dog"]
    assert [e.label for _, e in run(deny, [[0.9, 0.9, 0.95]])] == ["dog", "quiet"]
    with pytest.raises(ConfigError, match="label 'siren' is both enabled and disabled"):
        make(enabled=["siren"], disabled=["siren"])


def test_disabling_an_active_label_ends_it_on_the_next_hop() -> None:
    det = make(smoothing="mean", smoothing_hops=1, hold_s=10.0)
    run(det, [[0.9, 0.0, 0.0]])
    det.apply(ControlChange(disabled=("dog",)))
    events = det.update(np.array([0.9, 0.0, 0.0], dtype=np.float32), hop_t(1))
    assert [(e.label, e.kind) for e in events] == [("dog", "end")]
    assert det.active() == {}
    det.apply(ControlChange(disabled=()))
    events = det.update(np.array([0.9, 0.0, 0.0], dtype=np.float32), hop_t(2))
    assert [(e.label, e.kind) for e in events] == [("dog", "start")]


def test_apply_changes_thresholds_and_rejects_unknown_labels() -> None:
    det = make(smoothing="mean", smoothing_hops=1)
    det.apply(ControlChange(thresholds={"siren": 0.2}, enabled=("siren",)))
    assert det.thresholds()["siren"] == pytest.approx(0.2)
    assert det.enabled() == ("siren",)
    with pytest.raises(ConfigError, match="unknown label 'dgo' \\(did you mean 'dog'\\?\\)"):
        det.apply(ControlChange(thresholds={"dgo": 0.2}))
    assert det.thresholds()["dog"] == pytest.approx(0.5)


def test_flush_ends_everything() -> None:
    det = make(smoothing="mean", smoothing_hops=1, hold_s=60.0)
    run(det, [[0.9, 0.9, 0.0], [0.1, 0.1, 0.0]])
    ended = det.flush(hop_t(5))
    assert sorted((e.label, e.kind) for e in ended) == [("dog", "end"), ("siren", "end")]
    assert all(e.end == pytest.approx(hop_t(0)) and e.t_audio == pytest.approx(hop_t(5)) for e in ended)
    assert det.flush(hop_t(6)) == []


def test_config_errors_are_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        build(EventParams, {"smoothing": "k_of_n", "k": 5, "smoothing_hops": 3}, "config.yaml", "events")
    assert str(err.value) == "config.yaml: events: k (5) must not exceed smoothing_hops (3)"
    with pytest.raises(ConfigError, match=r"events\.thresholds\.dog: expected a number 0\.\.1"):
        build(EventParams, {"thresholds": {"dog": 1.5}}, "config.yaml", "events")
    with pytest.raises(ConfigError, match=r"events\.release: expected a number 0\.\.1"):
        build(EventParams, {"release": 1.2}, "config.yaml", "events")
    with pytest.raises(ConfigError, match=r"events\.smoothing: expected one of 'mean', 'k_of_n'"):
        build(EventParams, {"smoothing": "median"}, "config.yaml", "events")
    with pytest.raises(ConfigError, match=r"events: enabled: unknown label 'sirne' \(did you mean 'siren'\?\)"):
        EventDetector(LABELS, {}, EventParams(enabled=("sirne",)))


def test_wrong_score_shape_is_refused() -> None:
    det = make()
    with pytest.raises(ValueError, match="expected 3 scores"):
        det.update(np.zeros(4, dtype=np.float32), T0)


def test_apply_while_updating_from_another_thread() -> None:
    det = make(smoothing="mean", smoothing_hops=3, hold_s=0.0)
    stop = threading.Event()
    errors: list[BaseException] = []

    def control() -> None:
        try:
            while not stop.is_set():
                det.apply(ControlChange(disabled=("dog",)))
                det.apply(ControlChange(disabled=(), thresholds={"siren": 0.3}))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    worker = threading.Thread(target=control)
    worker.start()
    rng = np.random.default_rng(0)
    try:
        open_ids: dict[str, str] = {}
        for i in range(3000):
            for e in det.update(rng.random(3, dtype=np.float32), hop_t(i)):
                if e.kind == "start":
                    assert e.label not in open_ids
                    open_ids[e.label] = e.id
                else:
                    assert open_ids.pop(e.label) == e.id
    finally:
        stop.set()
        worker.join(timeout=10)
    assert not errors
