"""What the event benchmarks share: audio streams built from clips and background, and the two detectors
run over them, ours through the daemon's own pipeline and event logic (``edge.daemon.replay``) and
YAMNet int8 as Frigate runs it (bench/events.py, bench/home_hour.py, bench/heldout.py; tests/bench).

- Streams: clips or background files back to back, ``gap_s`` of -70 dBFS seeded white noise before,
  between and after them; each file's span is kept for scoring (bench/event_scoring.py).
- YAMNet int8: one call per 0.975 s of non-overlapping audio, a label fires when the
  best of its AudioSet classes (configs/esc50_audioset.csv) passes the threshold;
  consecutive firing calls are one event, starting (and announced) at the end of its
  first call.  Labels with no AudioSet class are left out of its figures.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf

from bench.event_scoring import Detection, Span
from edge.audio.resample import Resampler
from edge.audio.sources import AUDIO_SUFFIXES
from edge.daemon.config import Config
from edge.daemon.replay import detector_for, hop_scores, sample_blocks, stream_events
from edge.model.bundle import Manifest
from edge.model.classifier import Classifier
from training.model import yamnet

_LOGGER = logging.getLogger("bench.events")
ROOT = Path(__file__).resolve().parents[1]


def _shared() -> Path:
    """``AURICLE_SHARED``, else ``../shared`` beside the checkout, else the workplace's fixed copy."""
    forced = os.environ.get("AURICLE_SHARED")
    if forced:
        return Path(forced)
    found = [p for p in (ROOT.parent / "shared", Path("/work/shared")) if (p / "README.md").is_file()]
    return found[0] if found else ROOT.parent / "shared"


SHARED = _shared()
ESC50_CSV = SHARED / "data" / "esc50" / "esc50.csv"
BACKGROUND_CSV = SHARED / "data" / "background" / "background.csv"
MAPPING_CSV = ROOT / "configs" / "esc50_audioset.csv"
GAP_DBFS = -70.0

Floats = npt.NDArray[np.float32]
Item = tuple[str, str, Floats]
"""(name, label, samples) of one clip or background file."""


# --- audio -----------------------------------------------------------------------------


def read_mono(path: Path, rate: int) -> Floats:
    """A file as mono float32 at ``rate`` (resampled like the daemon's file source)."""
    data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    mono = np.asarray(data.mean(axis=1), dtype=np.float32)
    return mono if file_rate == rate else Resampler(file_rate, rate).process(mono)


def build_stream(items: Sequence[Item], gap_s: float, rate: int, seed: int = 0) -> tuple[Floats, list[Span]]:
    """The items in one stream with a gap of -70 dBFS white noise before, between and after them."""
    rng = np.random.default_rng(seed)
    gap = round(gap_s * rate)
    parts, spans, pos = [], [], 0
    for name, label, samples in items:
        parts += [_noise(rng, gap), samples]
        spans.append(Span(name, label, (pos + gap) / rate, (pos + gap + len(samples)) / rate))
        pos += gap + len(samples)
    parts.append(_noise(rng, gap))
    return np.concatenate(parts).astype(np.float32), spans


def _noise(rng: np.random.Generator, n: int) -> Floats:
    return (10 ** (GAP_DBFS / 20) * rng.standard_normal(n)).astype(np.float32)


def fold_items(csv_path: Path, fold: int, rate: int, limit: int | None) -> list[Item]:
    """The clips of one ESC-50 fold (esc50.csv, audio/ beside it)."""
    with csv_path.open(newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if int(row["fold"]) == fold][:limit]
    if not rows:
        raise SystemExit(f"no clips of fold {fold} in {csv_path}")
    audio = csv_path.parent / "audio"
    return [(row["filename"], row["category"], read_mono(audio / row["filename"], rate)) for row in rows]


def in_split(row: dict[str, str], split: str) -> bool:
    """A CSV row's split; ``report`` (the default) is the calibrate groups that training holds out from
    threshold choice (training.data.background.held_out at the default REPORT_FRACTION), ``calibrate`` the rest,
    ``all-calibrate`` both."""
    from training.data.background import held_out
    from training.recipe.config import REPORT_FRACTION

    if split in ("report", "calibrate") and row["split"] == "calibrate":
        return held_out(row.get("group") or row["filename"], REPORT_FRACTION) == (split == "report")
    return row["split"] == split or (split == "all-calibrate" and row["split"] == "calibrate")


def background_items(source: Path, split: str, rate: int, limit: int | None) -> list[Item]:
    """Background audio: every audio file under a folder (edge.audio.sources.AUDIO_SUFFIXES), or a CSV's
    ``filename`` rows of one ``split``."""
    if source.suffix == ".csv":
        with source.open(newline="") as fh:
            paths = [source.parent / row["filename"] for row in csv.DictReader(fh) if in_split(row, split)]
    else:
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not paths:
        raise SystemExit(
            f"no background audio in {source}" + (f" (split {split!r})" if source.suffix == ".csv" else "")
        )
    return [(str(p.relative_to(source.parent)), "", read_mono(p, rate)) for p in paths[:limit]]


# --- detectors -------------------------------------------------------------------------


def our_detections(classifier: Classifier, samples: Floats, config: Config) -> list[Detection]:
    """Event starts of the daemon's pipeline and event logic on one stream, every label of the model listened
    for (``events.listening: all``): the benchmarks measure the model, not the default listening set, which
    only ever removes events (edge/detect/listening.py)."""
    every = _listening_all(config)
    events = stream_events(classifier, samples, every)
    return [Detection(e.label, e.start_offset_s, e.offset_s) for e in events if e.kind == "start"]


def floored_detections(
    classifier: Classifier, samples: Floats, config: Config, floors: Sequence[float]
) -> tuple[list[Detection], list[list[Detection]]]:
    """``our_detections``, and from the same inferences the event starts with the thresholds in force raised to
    each of ``floors`` (``calibration.min_threshold`` replayed on a finished bundle: a label already above a floor
    keeps its threshold): the daemon's event logic fed the pipeline's hop scores (edge.daemon.replay.hop_scores)."""
    every = _listening_all(config)
    times, rows = hop_scores(classifier, sample_blocks(samples), every)
    in_force = detector_for(classifier, every).thresholds()

    def starts(thresholds: dict[str, float]) -> list[Detection]:
        detector = detector_for(
            classifier, dataclasses.replace(every, events=dataclasses.replace(every.events, thresholds=thresholds))
        )
        found = (e for t, s in zip(times, rows, strict=True) for e in detector.update(s, float(t)))
        return [Detection(e.label, e.start_offset_s, e.offset_s) for e in found if e.kind == "start"]

    return starts(in_force), [starts({x: max(v, floor) for x, v in in_force.items()}) for floor in floors]


def _listening_all(config: Config) -> Config:
    """``config`` with every label of the model listened for (``events.listening: all``)."""
    return dataclasses.replace(config, events=dataclasses.replace(config.events, listening="all"))


def yamnet_detections(
    model: yamnet.Yamnet, samples: Floats, mapping: dict[str, list[int]], threshold: float
) -> list[Detection]:
    """Frigate's way: one call per 0.975 s chunk; a run of firing chunks of one label is one event."""
    hop, rate = yamnet.FRIGATE_HOP_SAMPLES, yamnet.FEATURES.sample_rate
    labels = list(mapping)
    firing = np.zeros((len(samples) // hop + 1, len(labels)), dtype=bool)  # row 0: nothing before the stream
    for k in range(1, len(firing)):
        scores, _ = model.infer(yamnet.patches(samples[(k - 1) * hop : k * hop])[0])
        firing[k] = [scores[mapping[label]].max() >= threshold for label in labels]
    ks, js = np.nonzero(firing[1:] & ~firing[:-1])
    return [Detection(labels[j], (k + 1) * hop / rate, (k + 1) * hop / rate) for k, j in zip(ks, js, strict=True)]


@dataclass(frozen=True)
class Detectors:
    """Both sides of the comparison, run on the same stream."""

    classifier: Classifier
    config: Config
    peer: yamnet.Yamnet
    mapping: dict[str, list[int]]
    threshold: float

    def run(self, samples: Floats) -> dict[str, list[Detection]]:
        yam = yamnet_detections(self.peer, samples, self.mapping, self.threshold)
        return {"ours": our_detections(self.classifier, samples, self.config), "yamnet": yam}

    def labels(self) -> dict[str, Sequence[str]]:
        return {"ours": self.classifier.labels, "yamnet": list(self.mapping)}


def held_out_fold(manifest: Manifest) -> int:
    """The bundle's held-out ESC-50 fold, from its metrics (``test: folds [4]``)."""
    test = manifest.metrics.get("test")
    found = re.fullmatch(r"folds \[(\d+)\]", str(test))
    if found is None:
        raise SystemExit(f"the bundle does not name one test fold (metrics.test = {test!r}): pass --fold")
    return int(found.group(1))


def publish(text: str, report: Any, json_out: Path | None) -> None:
    """Print a benchmark's table; write its figures as JSON when asked (the folder made as needed)."""
    print(text)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        _LOGGER.info("wrote %s", json_out)
