"""Per-hop score streams through the daemon's own pipeline, for thresholds from a false-alarm budget.

The int8 model runs inside ``edge.detect.pipeline.Pipeline`` (via ``edge.daemon.replay``):
same front end, hop and windows as the daemon, fed from the audio files
themselves, never from training features.  Two kinds of stream:

- the ``calibrate`` part of the background, its files played back to back as one
  recording (a file of one-second words alone would never fill the smoothing);
- the validation clips, one stream each, with the span of the labelled sound
  (first to last frame above the dB floor: ESC-50 pads short sounds with digital silence).

:func:`thresholds` hands them to ``training.calibrate.search`` with the daemon's default
event settings (smoothing, hold, cooldown), so a false event counted here is an
event the device would publish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.daemon.config import Config
from edge.daemon.replay import hop_scores
from edge.model.classifier import Classifier
from training.calibrate.mixtures import Mixture, mix, mixtures
from training.calibrate.noisy import Noisy, noisy_copy
from training.calibrate.result import Calibration, poisson_upper_95
from training.calibrate.search import DEFAULT_GRID, CalibrationParams, calibrate, floored_grid
from training.calibrate.streams import BackgroundStream, PositiveClip
from training.data.data import DataError, read_audio

_LOGGER = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]


def read_part(paths: Sequence[Path], rate: int) -> list[Floats]:
    """The readable files of a background part (bad ones logged and left out)."""
    return [x for _, x in _readable(paths, rate)]


def _readable(paths: Sequence[Path], rate: int) -> list[tuple[Path, Floats]]:
    parts = []
    for p in paths:
        try:
            parts.append((p, read_audio(p, rate)))
        except DataError as exc:
            _LOGGER.warning("skipping bad file: %s", exc)
    return parts


def part_streams(parts: Sequence[Floats], rate: int, mixture_s: float) -> list[tuple[str, Floats]]:
    """The part's files back to back, and ``mixture_s`` seconds of mixtures of them (when > 0)."""
    streams = [("plain", np.concatenate(parts))] if parts else []
    mixed = mixtures(parts, mixture_s, rate)
    return streams + ([("mixtures", mixed)] if len(mixed) else [])


def background_streams(
    clf: Classifier, paths: Sequence[Path], config: Config, mixture_s: float, min_s: float = 0.0
) -> list[BackgroundStream]:
    """The calibrate files back to back as one stream, plus mixtures of them (``mixture_s``, or more until the
    two last ``min_s``); empty when there are none."""
    return _streams(clf, read_part(paths, clf.manifest.features.sample_rate), config, mixture_s, min_s)


def _streams(
    clf: Classifier, parts: Sequence[Floats], config: Config, mixture_s: float, min_s: float
) -> list[BackgroundStream]:
    """:func:`background_streams` of files already read."""
    rate = clf.manifest.features.sample_rate
    plain_s = sum(len(x) for x in parts) / rate
    found = part_streams(parts, rate, max(mixture_s, min_s - plain_s) if parts else 0.0)
    return [BackgroundStream(hop_scores(clf, [x], config)[1], len(x) / rate) for _, x in found]


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
    return PositiveClip(hop_scores(clf, [read_audio(path, p.sample_rate)], config)[1], label, start, end)


def noisy_positives(
    clf: Classifier, bed: Sequence[Floats], clips: Sequence[tuple[Path, Any, int]], noisy: Noisy, config: Config
) -> list[PositiveClip]:
    """``noisy.copies`` of each validation clip inside the background ``bed`` (training/calibrate/noisy.py), each a
    positive of its label with its sound's span moved to where the clip plays."""
    p = clf.manifest.features
    rng = np.random.default_rng([noisy.seed, 23])
    out = []
    for path, frames, label in clips:
        clip = read_audio(path, p.sample_rate)
        start, end = sound_span(frames, p.window_samples, p.hop_samples, p.sample_rate, p.db_floor)
        for _ in range(noisy.copies):
            audio, offset = noisy_copy(clip, bed, p.sample_rate, noisy.snr_db, rng)
            out.append(PositiveClip(hop_scores(clf, [audio], config)[1], label, offset + start, offset + end))
    return out


def thresholds(
    clf: Classifier,
    background: Sequence[Path],
    clips: Sequence[tuple[Path, Any, int]],
    budget_per_hour: float,
    mixture_s: float = 0.0,
    min_threshold: float = DEFAULT_GRID[0],
    min_s: float = 0.0,
    noisy: Noisy | None = None,
) -> Calibration | None:
    """Per-label thresholds within the budget, none below ``min_threshold``; None without calibrate background
    (nothing to count on).

    ``clips``: (audio path, cached frames, label index) of the validation clips; ``mixture_s`` and ``min_s``:
    see :func:`background_streams`; ``noisy``: copies of the clips inside the background, as positives too.
    """
    config = Config()
    parts = read_part(background, clf.manifest.features.sample_rate)
    found = _streams(clf, parts, config, mixture_s, min_s)
    if not found:
        return None
    positives = [positive_clip(clf, path, frames, label, config) for path, frames, label in clips]
    if noisy is not None and noisy.copies > 0:
        positives += noisy_positives(clf, parts, clips, noisy, config)
    hop_s = clf.manifest.hop_frames * clf.manifest.features.hop_samples / clf.manifest.features.sample_rate
    params = CalibrationParams(budget_per_hour=budget_per_hour, grid=floored_grid(min_threshold))
    return calibrate(clf.labels, found, positives, hop_s=hop_s, events=config.events, params=params)


def heldout_false_alarms(
    clf: Classifier, paths: Sequence[Path], thresholds: dict[str, float], mixture_s: float = 0.0
) -> dict[str, Any] | None:
    """False events per hour at ``thresholds`` on background the thresholds never saw (the report part).

    The files play back to back, then mixtures of them, through the daemon's pipeline and
    event logic (``edge.daemon.replay``) with the bundle's default event settings; every event start counts.
    Each stream also says how many of its starts are alarms (not repeats: Home Assistant's event entity
    notifies only those) and, for each start, what was playing (``events``, at most MAX_LISTED).
    """
    from edge.detect.events import EventParams

    rate = clf.manifest.features.sample_rate
    found = _readable(paths, rate)
    if not found:
        return None
    names = [_name(p) for p, _ in found]
    parts = [x for _, x in found]
    config = Config(events=EventParams(thresholds=dict(thresholds), listening="all"))  # every label counts
    ends = np.cumsum([len(x) for x in parts])
    result: dict[str, Any] = {"files": len(parts)}
    result["plain"] = _false_alarms(clf, np.concatenate(parts), config, lambda t: playing_plain(ends, names, t))
    mixture = mix(parts, mixture_s, rate)
    if len(mixture.samples):
        result["mixtures"] = _false_alarms(clf, mixture.samples, config, lambda t: playing_mixed(mixture, names, t))
    both = [v for k in ("plain", "mixtures") if isinstance(v := result.get(k), dict)]
    hours = sum(r["hours"] for r in both)
    total = sum(r["false_events"] for r in both)
    counts: dict[str, int] = {}
    for r in both:
        for label, n in r["per_label"].items():
            counts[label] = counts.get(label, 0) + n
    return result | _rate(total, hours, counts) | {"alarms": sum(r["alarms"] for r in both)}


MAX_LISTED = 100
"""False events listed with what was playing, per stream (all are counted)."""


def playing_plain(ends: npt.NDArray[np.int64], names: Sequence[str], sample: int) -> list[str]:
    """The file playing at ``sample`` of the files back to back (``ends``: their cumulative lengths)."""
    i = int(np.searchsorted(ends, sample, side="right"))
    return [names[min(i, len(names) - 1)]]


def playing_mixed(mixture: Mixture, names: Sequence[str], sample: int) -> list[str]:
    """The file(s) playing at ``sample`` of a mixture, the first one first, and the segment's level."""
    seg = mixture.at(sample)
    if seg is None:
        return []
    under = [] if seg.second is None else [names[seg.second]]
    return [names[seg.first], *under, f"{seg.level_dbfs:g} dBFS"]


def _name(path: Path) -> str:
    """A background file as its corpus lists it: the last three parts of its path."""
    return "/".join(Path(path).parts[-3:])


def _false_alarms(
    clf: Classifier, samples: Floats, config: Config, playing: Callable[[int], list[str]]
) -> dict[str, Any]:
    from edge.daemon import replay

    rate = clf.manifest.features.sample_rate
    counts: dict[str, int] = {}
    listed: list[dict[str, Any]] = []
    alarms = 0
    for event in replay.stream_events(clf, samples, config):
        if event.kind != "start":
            continue
        counts[event.label] = counts.get(event.label, 0) + 1
        alarms += not event.repeat
        if len(listed) < MAX_LISTED:
            at = float(event.start_offset_s)
            listed.append(
                {"label": event.label, "at_s": round(at, 1), "repeat": event.repeat, "playing": playing(int(at * rate))}
            )
    found = _rate(sum(counts.values()), len(samples) / rate / 3600.0, counts)
    return found | {"alarms": alarms, "events": listed}


def _rate(total: int, hours: float, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "hours": round(hours, 4),
        "false_events": total,
        "false_per_hour": round(total / hours, 2) if hours else None,
        "upper_95_per_hour": round(poisson_upper_95(total, hours), 2) if hours else None,
        "per_label": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
    }
