"""Scoring event starts against clips placed in a stream (bench/events.py).

A clip is recalled when an event of its label starts between ``BEFORE_S`` before
it and ``AFTER_S`` after it; events of other labels starting in that window are
wrong-label events; latency runs from the clip's start to the moment the
event's start was announced.  On background audio every event start is a false
alarm, counted per hour of background audio.

The event benchmarks score twice: over all labels, and over the home labels (``HOME_LABELS``), the
ones a home user listens for.  The home view keeps only the home labels' event starts (``of_labels``)
and scores the clips of home labels (``home``): a false ``cow`` start costs nothing to a user who
never subscribed to ``cow``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BEFORE_S, AFTER_S = 0.5, 1.0

HOME_LABELS = (
    *("crying_baby", "glass_breaking", "siren", "clock_alarm", "door_wood_knock", "dog"),
    *("cat", "coughing", "sneezing", "snoring", "door_wood_creaks", "footsteps"),
    *("water_drops", "toilet_flush", "vacuum_cleaner", "washing_machine"),
)
"""The ESC-50 labels a home user listens for: a sound they would want a message or an automation for.

- Alerts: ``crying_baby``, ``glass_breaking`` (a break-in), ``siren`` and ``clock_alarm`` (the nearest
  ESC-50 has to a smoke or carbon-monoxide alarm), ``door_wood_knock`` (a visitor): with ``dog`` the six
  the daemon announces and listens for by default (edge/detect/listening.py, DEFAULT_ANNOUNCE).
- Pets: ``dog``, ``cat`` (barking or miaowing while the owner is out).
- Care and health: ``coughing``, ``sneezing``, ``snoring``.
- Someone at home: ``door_wood_creaks``, ``footsteps`` (a door or steps while the house is empty).
- Water and appliances: ``water_drops`` (a leak, a dripping tap), ``toilet_flush`` (activity of an elder
  living alone), ``vacuum_cleaner``, ``washing_machine`` (started or done).

Left out of the 22 that bench/home_hour.py drew before: ``laughing``, ``clapping``, ``keyboard_typing``,
``can_opening``, ``pouring_water`` (sounds of a home that nobody asks to be told about) and ``car_horn``
(a street sound).  The other 28 were never in it: farm and wild animals, weather and water outdoors,
engines and tools, and small sounds like ``breathing``, ``mouse_click`` or ``clock_tick``
(``crackling_fire`` is a fireplace or a campfire in ESC-50, not a house on fire).
"""


@dataclass(frozen=True)
class Span:
    """One clip or file placed in a stream."""

    name: str
    label: str
    """'' for background."""
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Detection:
    """One event start."""

    label: str
    start_s: float
    """Stream seconds the event starts (the end of its first passing window)."""
    decided_s: float
    """Stream seconds the start was announced."""


@dataclass(frozen=True)
class ClipResult:
    """How one clip was heard."""

    span: Span
    hit: bool
    latency_s: float | None
    """Clip start to the first right-label start announced; None when missed."""
    wrong: int
    """Other labels' event starts in the clip's window."""


def in_window(span: Span, t: float) -> bool:
    """Whether ``t`` falls between BEFORE_S before the span and AFTER_S after it."""
    return span.start_s - BEFORE_S <= t <= span.end_s + AFTER_S


def match(spans: Iterable[Span], detections: Sequence[Detection]) -> list[ClipResult]:
    """Per clip: did an event of its label start in its window, how late, and how many others."""
    results = []
    for span in spans:
        near = [d for d in detections if in_window(span, d.start_s)]
        right = [d.decided_s - span.start_s for d in near if d.label == span.label]
        wrong = sum(d.label != span.label for d in near)
        results.append(ClipResult(span, bool(right), min(right) if right else None, wrong))
    return results


def home(labels: Iterable[str]) -> list[str]:
    """The home labels among ``labels``, in their order."""
    return [label for label in labels if label in HOME_LABELS]


def of_labels(detections: Iterable[Detection], labels: Iterable[str]) -> list[Detection]:
    """The event starts of ``labels`` only: what a user subscribed to those labels hears."""
    wanted = set(labels)
    return [d for d in detections if d.label in wanted]


def in_gaps(spans: Sequence[Span], detections: Iterable[Detection]) -> int:
    """Event starts in no span's window."""
    return sum(not any(in_window(s, d.start_s) for s in spans) for d in detections)


def summary(results: Sequence[ClipResult]) -> dict[str, Any]:
    """Recall, wrong-label events per clip and latency p50/p95 of some clips (None where undefined)."""
    latencies = [r.latency_s for r in results if r.latency_s is not None]
    n, hits = len(results), sum(r.hit for r in results)
    return {
        "clips": n,
        "recalled": hits,
        "recall": round(hits / n, 4) if n else None,
        "wrong_per_clip": round(sum(r.wrong for r in results) / n, 4) if n else None,
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 3) if latencies else None,
    }


def recall(spans: Sequence[Span], detections: Sequence[Detection], labels: Iterable[str]) -> dict[str, Any]:
    """Per label and in total over the clips whose label is in ``labels`` (what the detector can name)."""
    named = set(labels)
    results = [r for r in match(spans, detections) if r.span.label in named]
    per_label = {label: summary([r for r in results if r.span.label == label]) for label in sorted(named)}
    per_label = {label: s for label, s in per_label.items() if s["clips"]}
    return {"per_label": per_label, "total": summary(results), "events_in_gaps": in_gaps(spans, detections)}


def false_alarms(spans: Sequence[Span], detections: Sequence[Detection], audio_s: float) -> dict[str, Any]:
    """Every event start per label, per file and in total, with rates per hour of background audio."""
    hours = audio_s / 3600

    def rate(n: int) -> dict[str, Any]:
        return {"events": n, "per_hour": round(n / hours, 1) if hours else None}

    counts = {label: sum(d.label == label for d in detections) for label in sorted({d.label for d in detections})}
    per_file = {s.name: n for s in spans if (n := sum(in_window(s, d.start_s) for d in detections))}
    return {
        "per_label": {label: rate(n) for label, n in counts.items()},
        "per_file": per_file,
        "total": rate(len(detections)),
    }
