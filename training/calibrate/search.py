"""Per-label thresholds from a false-alarm budget, counted through the daemon's own event logic.

Inputs are per-hop score streams (hops x labels) computed elsewhere through the daemon's
pipeline; this module never runs a model.  Every candidate threshold is tried by feeding the
streams through :class:`edge.detect.events.EventDetector` with the given smoothing, hold and cooldown,
so a false event here is exactly an event start the device would publish.

- False events: every event start on a background stream; and on a positive clip of label A,
  every event start of any *other* label (a clip of A is background for B).  Events of A on its
  own clip outside the hit window are ignored, neither hit nor false alarm: ESC-50-style clips
  often hold more of the same sound than the labelled span.
- Recall: the fraction of a label's positive clips with an event of that label starting between
  ``hit_before_s`` before the sound's start and ``hit_after_s`` after its end.
- Budget: ``budget_per_hour`` in total, split equally over the event labels.  Without a prior on
  which label matters more, an equal split keeps each label's choice dependent on its own scores
  only, and the total is the sum by construction.  (Allocating the budget to maximise total recall
  would fit the background far more closely, and with a few minutes of it every allocation asks
  for zero events anyway.)
- Choice: the lowest grid threshold from which on every higher candidate also stays within the
  label's share (events are not monotone in the threshold: a higher one can split one long event
  into two).  The rate compared is the observed one; the 95% Poisson upper bound is reported
  beside it because a short background cannot show a low rate (14 min with no event only shows
  < 13/h).  A label with no threshold in budget gets 1.0 (effectively off) with the figures
  measured at 1.0.  ``meets_budget`` is false when no grid threshold is in budget or the recall
  left is below ``min_recall`` (or unmeasured: no positive clips); such a label keeps the lowest
  in-budget threshold anyway, so its false alarms stay within budget and the report says what
  it costs in recall.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.detect.events import EventDetector, EventParams
from training.calibrate.result import Calibration, LabelCalibration, poisson_upper_95
from training.calibrate.streams import BackgroundStream, PositiveClip

_LOGGER = logging.getLogger(__name__)

DEFAULT_GRID: tuple[float, ...] = tuple(round(0.05 + 0.01 * i, 2) for i in range(95))
"""0.05, 0.06, ..., 0.99."""
OFF = 1.0
"""The threshold of a label that cannot stay within budget anywhere on the grid."""
_COLUMNS_PER_DETECTOR = 256
"""Labels x candidates per EventDetector: building one costs O(columns^2), each hop O(columns)."""


def floored_grid(min_threshold: float, grid: Sequence[float] = DEFAULT_GRID) -> tuple[float, ...]:
    """The candidates of ``grid`` at or above ``min_threshold`` (config ``calibration.min_threshold``)."""
    kept = tuple(g for g in grid if g >= min_threshold - 1e-9)
    if not kept:
        raise ValueError(f"min_threshold {min_threshold} is above every candidate of the grid")
    return kept


@dataclass(frozen=True, kw_only=True)
class CalibrationParams:
    """How thresholds are chosen."""

    budget_per_hour: float = 1.0
    """False events per hour allowed in total, over all event labels."""
    grid: tuple[float, ...] = DEFAULT_GRID
    """Candidate thresholds, ascending, in (0, 1)."""
    min_recall: float = 0.5
    """Recall below this at the chosen threshold flags the label ``meets_budget: false``."""
    hit_before_s: float = 0.5
    """An event starting this long before the sound's start still counts as a hit."""
    hit_after_s: float = 1.0
    """... and this long after the sound's end."""

    def __post_init__(self) -> None:
        if not self.budget_per_hour > 0:
            raise ValueError(f"budget_per_hour must be > 0, got {self.budget_per_hour}")
        if not self.grid or any(not 0 < g < OFF for g in self.grid) or list(self.grid) != sorted(set(self.grid)):
            raise ValueError("grid must be ascending, distinct thresholds in (0, 1)")
        if not 0 <= self.min_recall <= 1:
            raise ValueError(f"min_recall must be in [0, 1], got {self.min_recall}")
        if self.hit_before_s < 0 or self.hit_after_s < 0:
            raise ValueError("hit_before_s and hit_after_s must be >= 0")


def calibrate(
    labels: Sequence[str],
    background: Sequence[BackgroundStream],
    positives: Sequence[PositiveClip],
    *,
    hop_s: float,
    events: EventParams | None = None,
    params: CalibrationParams | None = None,
    background_labels: Sequence[str] = (),
) -> Calibration:
    """Choose each event label's threshold (see the module docstring).

    ``labels`` names the score columns; ``background_labels`` (never published) get no threshold.
    ``events`` supplies smoothing, hold and cooldown (its thresholds and allow/deny lists are ignored).
    Row ``h`` of every stream is fed to the detector at ``t = h * hop_s``, seconds since the stream's
    start: the clock of ``PositiveClip.start_s``/``end_s``.
    """
    params = params or CalibrationParams()
    _check_inputs(labels, background, positives, hop_s, background_labels)
    columns = [i for i, x in enumerate(labels) if x not in background_labels]
    tally = _Tally(len(labels), len(columns), params, background, positives, hop_s)
    tally.check_exposure(labels, columns)
    _sweep(tally, _Detectors(events or EventParams(), hop_s, (*params.grid, OFF)), columns, background, positives)
    per_label = tuple(_choose(labels[i], tally, i, params) for i in columns)
    result = _totals(per_label, params, len(columns), sum(s.duration_s for s in background) / 3600.0)
    _LOGGER.info(
        "calibrated %d labels: %.3g false events/h in total (95%% bound %.3g), recall %s, %d failing",
        len(per_label),
        result.false_per_hour,
        result.upper_95_per_hour,
        "n/a" if result.recall is None else f"{result.recall:.3f}",
        len(result.failing()),
    )
    return result


def _check_inputs(
    labels: Sequence[str],
    background: Sequence[BackgroundStream],
    positives: Sequence[PositiveClip],
    hop_s: float,
    background_labels: Sequence[str],
) -> None:
    if not hop_s > 0:
        raise ValueError(f"hop_s must be > 0, got {hop_s}")
    stray = sorted(set(background_labels) - set(labels))
    if stray:
        raise ValueError(f"background_labels: not among the labels: {', '.join(stray)}")
    if set(labels) <= set(background_labels):
        raise ValueError("no event labels: every label is a background label")
    for k, stream in enumerate(background):
        _check_scores(stream.scores, len(labels), f"background[{k}]")
        if not stream.duration_s > 0:
            raise ValueError(f"background[{k}]: duration_s must be > 0, got {stream.duration_s}")
    for k, clip in enumerate(positives):
        _check_scores(clip.scores, len(labels), f"positives[{k}]")
        if not 0 <= clip.label < len(labels) or labels[clip.label] in background_labels:
            raise ValueError(f"positives[{k}]: label {clip.label} is not an event label index")
        if not 0 <= clip.start_s <= clip.end_s:
            raise ValueError(f"positives[{k}]: need 0 <= start_s <= end_s, got {clip.start_s}, {clip.end_s}")


def _check_scores(scores: npt.NDArray[np.floating], n_labels: int, where: str) -> None:
    if scores.ndim != 2 or scores.shape[1] != n_labels:
        raise ValueError(f"{where}: expected scores of shape (hops, {n_labels}), got {scores.shape}")


def _sweep(
    tally: _Tally,
    detectors: _Detectors,
    columns: list[int],
    background: Sequence[BackgroundStream],
    positives: Sequence[PositiveClip],
) -> None:
    """Count events from the highest candidate down, a chunk of candidates at a time.

    A label that goes over budget at some candidate is never chosen at or below it, so later
    (lower) chunks leave it out: low thresholds, where events are many, cost little.
    """
    top, grid = len(detectors.candidates), len(detectors.candidates) - 1  # the last candidate is OFF
    while columns and top > 0:
        chunk = list(range(max(0, top - max(1, _COLUMNS_PER_DETECTOR // len(columns))), top))
        for stream in background:
            tally.add(detectors.starts(stream.scores, columns, chunk), None)
        for clip in positives:
            tally.add(detectors.starts(clip.scores, columns, chunk), clip)
        tally.known[np.ix_(chunk, columns)] = True
        columns = [i for i in columns if tally.within(i)[chunk[0] : grid].all()]
        top = chunk[0]


class _Detectors:
    """Event starts of many (candidate, label) pairs at once, through EventDetector.

    Labels are independent in EventDetector, so one detector runs a chunk of candidates at once:
    its label ``"j@i"`` is score column ``i`` at candidate ``j``.  Chunks keep each detector's
    construction (quadratic in its labels) cheap.
    """

    def __init__(self, events: EventParams, hop_s: float, candidates: Sequence[float]) -> None:
        self.events = dataclasses.replace(events, thresholds={}, enabled=(), disabled=())
        self.hop_s = hop_s
        self.candidates = tuple(candidates)

    def starts(
        self, scores: npt.NDArray[np.floating], columns: list[int], chunk: list[int]
    ) -> list[tuple[int, int, float]]:
        """``(candidate, column, start time in s)`` of every event start in one stream."""
        where = {f"{j}@{i}": (j, i) for j in chunk for i in columns}
        thresholds = {name: self.candidates[j] for name, (j, _i) in where.items()}
        detector = EventDetector(list(where), thresholds, self.events)
        rows = np.tile(np.asarray(scores, dtype=np.float32)[:, columns], (1, len(chunk)))
        found = []
        for h, row in enumerate(rows):
            for event in detector.update(row, h * self.hop_s):
                if event.kind == "start":
                    found.append((*where[event.label], event.start))
        return found


class _Tally:
    """False events, hits and exposure per (candidate, score column)."""

    def __init__(
        self,
        n_labels: int,
        n_event_labels: int,
        params: CalibrationParams,
        background: Sequence[BackgroundStream],
        positives: Sequence[PositiveClip],
        hop_s: float,
    ) -> None:
        shape = (len(params.grid) + 1, n_labels)
        self.params = params
        self.false = np.zeros(shape, dtype=np.int64)
        self.hits = np.zeros(shape, dtype=np.int64)
        self.known = np.zeros(shape, dtype=bool)
        """Counted for this pair; the rest were skipped as below an over-budget candidate."""
        self.clips = np.zeros(n_labels, dtype=np.int64)
        self.seconds = np.full(n_labels, math.fsum(s.duration_s for s in background))
        for clip in positives:
            self.seconds += len(clip.scores) * hop_s
            self.seconds[clip.label] -= len(clip.scores) * hop_s
            self.clips[clip.label] += 1
        self.share = params.budget_per_hour / n_event_labels

    def add(self, starts: list[tuple[int, int, float]], clip: PositiveClip | None) -> None:
        """Count one stream's event starts; ``clip`` is None for background."""
        if clip is None:
            for j, i, _t in starts:
                self.false[j, i] += 1
            return
        lo, hi = clip.start_s - self.params.hit_before_s, clip.end_s + self.params.hit_after_s
        hit = np.zeros(len(self.hits), dtype=bool)
        for j, i, t in starts:
            if i != clip.label:
                self.false[j, i] += 1
            elif lo <= t <= hi:
                hit[j] = True
        self.hits[:, clip.label] += hit

    def check_exposure(self, labels: Sequence[str], columns: list[int]) -> None:
        """Raise ValueError naming the first event label with no background to count on."""
        for i in columns:
            if not self.seconds[i] > 0:
                raise ValueError(f"label {labels[i]!r}: no background exposure (no background, no other labels' clips)")

    def within(self, i: int) -> npt.NDArray[np.bool_]:
        """Per candidate: counted, and the rate on column ``i`` within its share of the budget."""
        hours = self.seconds[i] / 3600.0
        ok: npt.NDArray[np.bool_] = self.known[:, i] & (self.false[:, i] / hours <= self.share * (1 + 1e-9))
        return ok


def _choose(label: str, tally: _Tally, i: int, params: CalibrationParams) -> LabelCalibration:
    bad = np.flatnonzero(~tally.within(i)[: len(params.grid)])
    j = int(bad[-1]) + 1 if len(bad) else 0  # the lowest candidate from which on all stay within
    hours = float(tally.seconds[i]) / 3600.0
    clips, hits, count = int(tally.clips[i]), int(tally.hits[j, i]), int(tally.false[j, i])
    recall = hits / clips if clips else None
    return LabelCalibration(
        label=label,
        threshold=params.grid[j] if j < len(params.grid) else OFF,
        recall=recall,
        clips=clips,
        hits=hits,
        false_events=count,
        hours=hours,
        false_per_hour=count / hours,
        upper_95_per_hour=poisson_upper_95(count, hours),
        meets_budget=j < len(params.grid) and recall is not None and recall >= params.min_recall,
    )


def _totals(
    per_label: tuple[LabelCalibration, ...], params: CalibrationParams, n_event_labels: int, background_hours: float
) -> Calibration:
    count = sum(x.false_events for x in per_label)
    clips = sum(x.clips for x in per_label)
    hits = sum(x.hits for x in per_label)
    return Calibration(
        labels=per_label,
        budget_per_hour=params.budget_per_hour,
        label_budget_per_hour=params.budget_per_hour / n_event_labels,
        min_recall=params.min_recall,
        background_hours=background_hours,
        false_events=count,
        false_per_hour=math.fsum(x.false_per_hour for x in per_label),
        upper_95_per_hour=poisson_upper_95(count, min(x.hours for x in per_label)),
        recall=hits / clips if clips else None,
    )
