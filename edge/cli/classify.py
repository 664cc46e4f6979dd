"""``auricle classify``: audio files through the daemon's streaming pipeline, as labels or as its events."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.audio.sources import AUDIO_SUFFIXES, AudioError
from edge.model.classifier import Classifier


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``classify``."""
    p = sub.add_parser("classify", help="classify audio files through the streaming pipeline")
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="audio files, or directories to search")
    p.add_argument("--model", "-m", metavar="BUNDLE", help="model bundle (default: the shipped model)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--hops", action="store_true", help="also print the scores of every hop")
    p.add_argument("--top", type=int, default=3, metavar="K", help="how many labels to list (default 3)")
    p.add_argument(
        "--events",
        action="store_true",
        help="report the events the daemon would raise (its pipeline, event logic and thresholds), with offsets",
    )
    p.add_argument("--config", "-c", metavar="FILE", help="daemon config for --events (events, hop, gate, model)")
    p.add_argument(
        "--untaught",
        action="store_true",
        help="leave out what this device was taught (model.state_dir/taught): the model as shipped",
    )
    p.set_defaults(handler=_classify)


def audio_files(paths: list[str]) -> Iterator[Path]:
    """Each path; directories expand to their audio files, sorted, recursively."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            yield path


def _top(labels: tuple[str, ...], scores: np.ndarray[Any, Any], k: int) -> list[list[Any]]:
    order = np.argsort(-scores, kind="stable")[: max(k, 1)]
    return [[labels[i], round(float(scores[i]), 4)] for i in order]


def _classify(args: argparse.Namespace) -> int:
    from edge.daemon.config import load_config
    from edge.daemon.startup import load_bundle

    config = load_config(args.config)
    if args.model:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, path=args.model))
    classifier = Classifier(load_bundle(config), threads=config.model.threads, kernels=config.model.kernels)
    if not args.untaught:  # the heads the daemon would run with, from the same state dir
        classifier = taught(classifier, config.model.state_dir)
    if args.events:
        return _classify_events(classifier, config, args)
    from edge.daemon.replay import file_blocks, hop_scores

    status, ranked = 0, clip_labels(classifier, config)
    for path in audio_files(args.paths):
        try:
            times, scores = hop_scores(classifier, file_blocks(path, classifier.manifest.features.sample_rate))
            if not len(times):
                raise AudioError(f"{path}: no audio")
        except AudioError as exc:
            print(f"auricle: {exc}" if str(path) in str(exc) else f"auricle: {path}: {exc}", file=sys.stderr)
            status = 1
            continue
        hops = list(zip(times.tolist(), scores[:, ranked], strict=True))
        _report(path, hops, tuple(classifier.labels[i] for i in ranked), args)
    return status


def taught(classifier: Classifier, state_dir: str) -> Classifier:
    """``classifier`` with the personal heads taught in ``state_dir`` for its bundle (the model as it is when
    nothing was taught, or when the heads cannot be had: one line on stderr)."""
    from pathlib import Path

    from edge.detect import teaching
    from edge.learn.store import TaughtStore
    from edge.model import bundle as bundles
    from edge.model.embedding import NoEmbedding

    store = TaughtStore(state_dir)
    if not store.examples():
        return classifier
    sha = bundles.sha256(Path(classifier.bundle.path).read_bytes())
    try:
        return teaching.with_heads(classifier, teaching.current(store, classifier, sha, keep=False))
    except (NoEmbedding, OSError) as exc:
        print(f"auricle: the taught labels are left out: {exc}", file=sys.stderr)
        return classifier


def clip_labels(classifier: Classifier, config: Any) -> list[int]:
    """Indices of the scores a clip decision ranks: every label of the model's own (listened for or not: a clip
    label is not an event), and the optional AudioSet labels that are switched on (by default or by the
    config), never one that is off, such as ``speech``."""
    from edge.daemon.replay import detector_for

    own = set(classifier.manifest.event_labels) | set(classifier.manifest.taught)
    on = set(detector_for(classifier, config).enabled())
    return [i for i, label in enumerate(classifier.labels) if label in own or label in on]


@dataclass(frozen=True)
class Top:
    """The label nearest to an event in a file: the highest smoothed score, beside its threshold."""

    label: str
    score: float
    """Its highest smoothed score: what the detector compares with the threshold (mean of the last
    ``events.smoothing_hops`` hops, or for k_of_n the k-th highest of them)."""
    peak: float
    """Its highest score of a single hop."""
    threshold: float


@dataclass(frozen=True)
class FileReport:
    """One file through the daemon's pipeline and event logic, and why it raised what it raised."""

    sounds: list[Any]
    """One end event per sound (edge.daemon.replay.sounds)."""
    duration_s: float
    hops: int
    top: Top | None
    """None when no hop was inferred or no label may raise events."""


class _Smoothed:
    """Per label, the highest raw and smoothed score over the hops, smoothed as the event detector does."""

    def __init__(self, params: Any) -> None:
        self._mean = params.smoothing == "mean"
        self._k = params.k
        self._window: deque[np.ndarray[Any, Any]] = deque(maxlen=params.smoothing_hops)
        self.hops = 0
        self.peak: np.ndarray[Any, Any] | None = None
        self.score: np.ndarray[Any, Any] | None = None

    def __call__(self, _offset: float, scores: np.ndarray[Any, Any]) -> None:
        self._window.append(scores.copy())
        window = np.stack(self._window)
        if self._mean:
            smoothed = window.mean(axis=0)
        elif len(window) >= self._k:
            smoothed = np.sort(window, axis=0)[-self._k]  # k of n pass exactly when the k-th highest does
        else:
            smoothed = np.zeros_like(scores)
        self.peak = scores.copy() if self.peak is None else np.maximum(self.peak, scores)
        self.score = smoothed if self.score is None else np.maximum(self.score, smoothed)
        self.hops += 1


def file_report(classifier: Classifier, path: Path, config: Any) -> FileReport:
    """Replay ``path`` (AudioError if unreadable), counting its samples and watching each label's scores."""
    from edge.daemon.replay import file_blocks, replay_blocks, sounds

    rate = classifier.manifest.features.sample_rate
    samples = [0]

    def blocks() -> Iterator[np.ndarray[Any, Any]]:
        for block in file_blocks(path, rate):
            samples[0] += len(block)
            yield block

    smoothed = _Smoothed(config.events)
    found = sounds(replay_blocks(classifier, blocks(), config, smoothed))
    return FileReport(found, samples[0] / rate, smoothed.hops, _nearest(classifier, config, smoothed))


def _nearest(classifier: Classifier, config: Any, smoothed: _Smoothed) -> Top | None:
    """Among the labels that may raise events, the highest smoothed score (the detector's labels name the
    scores: the pipeline hands it the same vector)."""
    from edge.daemon.replay import detector_for

    score, peak = smoothed.score, smoothed.peak
    if score is None or peak is None:
        return None
    detector = detector_for(classifier, config)
    thresholds, enabled = detector.thresholds(), set(detector.enabled())
    listening = [i for i, label in enumerate(detector.labels) if label in enabled]
    if not listening:
        return None
    best = max(listening, key=lambda i: float(score[i]))
    label = detector.labels[best]
    return Top(label, float(score[best]), float(peak[best]), thresholds[label])


def _classify_events(classifier: Classifier, config: Any, args: argparse.Namespace) -> int:
    status, first = 0, True
    for path in audio_files(args.paths):
        try:
            result = file_report(classifier, path, config)
        except AudioError as exc:
            print(f"auricle: {exc}" if str(path) in str(exc) else f"auricle: {path}: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            for e in result.sounds:
                print(json.dumps(_event_record(path, e)), flush=True)
            print(json.dumps(_summary_record(path, result)), flush=True)
            continue
        if not first:
            print()
        first = False
        _print_event_table(path, result)
    return status


def _summary_record(path: Path, result: FileReport) -> dict[str, Any]:
    """The line after a file's events: how long it was, how many events, and the label nearest to one."""
    top = result.top
    return {
        "file": str(path),
        "duration_s": round(result.duration_s, 3),
        "hops": result.hops,
        "events": len(result.sounds),
        "top_label": top.label if top else None,
        "top_score": round(top.score, 4) if top else None,
        "top_peak": round(top.peak, 4) if top else None,
        "top_threshold": top.threshold if top else None,
    }


def _event_record(path: Path, event: Any) -> dict[str, Any]:
    return {
        "file": str(path),
        "label": event.label,
        "start_s": round(event.start_offset_s, 3),
        "end_s": round(event.end_offset_s, 3),
        "peak": round(event.peak, 4),
        "mean": round(event.mean, 4),
    }


def _print_event_table(path: Path, result: FileReport) -> None:
    found = result.sounds
    print(f"{path}: {len(found)} event{'' if len(found) == 1 else 's'} in {result.duration_s:.1f} s; {_why(result)}")
    if not found:
        return
    width = max(len("label"), *(len(e.label) for e in found))
    print(f"  {'start':>9}  {'end':>9}  {'label':<{width}}  {'peak':>5}  {'mean':>5}")
    for e in found:
        print(
            f"  {_clock(e.start_offset_s):>9}  {_clock(e.end_offset_s):>9}  {e.label:<{width}}  "
            f"{e.peak:5.2f}  {e.mean:5.2f}"
        )


def _why(result: FileReport) -> str:
    """The label nearest to an event in words, beside its threshold: why something fired, or nothing did."""
    top = result.top
    if top is None:
        return "no label is listened for" if result.hops else "too short for one inference"
    verdict = "reached" if top.score >= top.threshold else "below"
    return (
        f"highest smoothed score {top.label} {top.score:.2f} (one hop {top.peak:.2f}), "
        f"{verdict} its threshold {top.threshold:.2f}"
    )


def _clock(seconds: float) -> str:
    """Offset as m:ss.s (h:mm:ss.s past an hour), how a player shows a position."""
    minutes, sec = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{sec:04.1f}" if hours else f"{minutes}:{sec:04.1f}"


def _report(path: Path, hops: list[tuple[float, Any]], labels: tuple[str, ...], args: argparse.Namespace) -> None:
    mean = np.mean([s for _, s in hops], axis=0)
    top = _top(labels, mean, args.top)
    if args.json:
        record: dict[str, Any] = {"file": str(path), "label": top[0][0], "score": top[0][1], "top": top}
        if args.hops:
            record["hops"] = [{"t": round(t, 3), "top": _top(labels, s, args.top)} for t, s in hops]
        print(json.dumps(record), flush=True)
        return
    ranked = ", ".join(f"{label} {score:.3f}" for label, score in top)
    print(f"{path}: {top[0][0]} {top[0][1]:.3f}  ({ranked}; {len(hops)} hops)", flush=True)
    if args.hops:
        for t, s in hops:
            print(f"  {t:8.3f} s  " + "  ".join(f"{label} {score:.3f}" for label, score in _top(labels, s, args.top)))
