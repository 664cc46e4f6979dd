"""Scoring event starts against clips placed in a stream (bench/events.py).

A clip is recalled when an event of its label starts between ``BEFORE_S`` before
it and ``AFTER_S`` after it; events of other labels starting in that window are
wrong-label events; latency runs from the clip's start to the moment the
event's start was announced.  On background audio every event start is a false
alarm, counted per hour of background audio.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BEFORE_S, AFTER_S = 0.5, 1.0


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
