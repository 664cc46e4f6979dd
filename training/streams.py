"""Per-hop score streams through the daemon's own pipeline, for thresholds from a false-alarm budget.

The int8 model runs inside ``edge.pipeline.Pipeline`` (via ``edge.replay``):
same front end, hop and windows as the daemon, fed from the audio files
themselves, never from training features.  Two kinds of stream:

- the ``calibrate`` part of the background, its files played back to back as one
  recording (a file of one-second words alone would never fill the smoothing);
- the validation clips, one stream each, with the span of the labelled sound
  (first to last frame above the dB floor: ESC-50 pads short sounds with digital silence).

:func:`thresholds` hands them to ``training.calibrate`` with the daemon's default
event settings (smoothing, hold, cooldown), so a false event counted here is an
event the device would publish.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.config import Config
from edge.model import Classifier
from training.calibrate import (
    BackgroundStream,
    Calibration,
    CalibrationParams,
    PositiveClip,
    calibrate,
    poisson_upper_95,
)
from training.data import DataError, read_audio

_LOGGER = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]


def hop_scores(clf: Classifier, samples: Floats, config: Config) -> Floats:
    """``(hops, event labels)``: the scores of every inference the daemon makes on ``samples``."""
    from edge import replay

    rows: list[Floats] = []
    replay.stream_events(clf, samples, config, on_scores=lambda _t, s: rows.append(np.array(s, dtype=np.float32)))
    return np.stack(rows) if rows else np.zeros((0, len(clf.labels)), dtype=np.float32)


def background_stream(clf: Classifier, paths: Sequence[Path], config: Config) -> BackgroundStream | None:
    """The calibrate files back to back as one stream; None when there are none."""
    rate = clf.manifest.features.sample_rate
    parts = []
    for p in paths:
        try:
            parts.append(read_audio(p, rate))
        except DataError as exc:
            _LOGGER.warning("skipping bad file: %s", exc)
    if not parts:
        return None
    samples = np.concatenate(parts)
    return BackgroundStream(hop_scores(clf, samples, config), len(samples) / rate)


def sound_span(frames: Any, window_samples: int, hop_samples: int, rate: int, floor: float) -> tuple[float, float]:
    """(start, end) seconds of the frames above the dB floor; the whole clip when none is."""
    loud = np.flatnonzero(np.asarray(frames).max(axis=1) > floor + 1e-3)
    if not len(loud):
        return 0.0, (len(frames) * hop_samples + window_samples) / rate
    return float(loud[0] * hop_samples / rate), float((loud[-1] * hop_samples + window_samples) / rate)


def positive_clip(clf: Classifier, path: Path, frames: Any, label: int, config: Config) -> PositiveClip:
    """One labelled clip as a stream, with its sound's span."""
    p = clf.manifest.features
    start, end = sound_span(frames, p.window_samples, p.hop_samples, p.sample_rate, p.db_floor)
    return PositiveClip(hop_scores(clf, read_audio(path, p.sample_rate), config), label, start, end)


def thresholds(
    clf: Classifier,
    background: Sequence[Path],
    clips: Sequence[tuple[Path, Any, int]],
    budget_per_hour: float,
) -> Calibration | None:
    """Per-label thresholds within the budget; None without calibrate background (nothing to count on).

    ``clips``: (audio path, cached frames, label index) of the validation clips.
    """
    config = Config()
    stream = background_stream(clf, background, config)
    if stream is None:
        return None
    positives = [positive_clip(clf, path, frames, label, config) for path, frames, label in clips]
    hop_s = clf.manifest.hop_frames * clf.manifest.features.hop_samples / clf.manifest.features.sample_rate
    params = CalibrationParams(budget_per_hour=budget_per_hour)
    return calibrate(clf.labels, [stream], positives, hop_s=hop_s, events=config.events, params=params)


def heldout_false_alarms(clf: Classifier, paths: Sequence[Path], thresholds: dict[str, float]) -> dict[str, Any] | None:
    """False events per hour at ``thresholds`` on background the thresholds never saw (the report part).

    The files play back to back through the daemon's pipeline and event logic
    (``edge.replay``) with the bundle's default event settings; every event start counts.
    """
    from edge import replay
    from edge.events import EventParams

    rate = clf.manifest.features.sample_rate
    parts = [read_audio(p, rate) for p in paths]
    if not parts:
        return None
    samples = np.concatenate(parts)
    config = Config(events=EventParams(thresholds=dict(thresholds)))
    counts: dict[str, int] = {}
    for event in replay.stream_events(clf, samples, config):
        if event.kind == "start":
            counts[event.label] = counts.get(event.label, 0) + 1
    hours = len(samples) / rate / 3600.0
    total = sum(counts.values())
    return {
        "hours": round(hours, 4),
        "files": len(parts),
        "false_events": total,
        "false_per_hour": round(total / hours, 2),
        "upper_95_per_hour": round(poisson_upper_95(total, hours), 2),
        "per_label": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
    }
