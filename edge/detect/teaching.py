"""Teaching on the device: examples become embeddings under a model, and the embeddings become personal heads.

One fit for every path: ``auricle teach``, a feedback verdict, a model update (the heads are refit from the
stored examples with the new model's embedding before it goes live) and a start whose heads are missing or
older than the examples.  The windows of an example are the daemon's: the model's window and hop on the shared
front end, so what a head learned from a file is what it sees live.

Negatives of every head: the bundle's background set (a new device can be taught before it listened), the
device's own reservoir under the same model (edge/daemon/learning.py) and the other taught labels' examples;
"not" examples of the label are hard negatives.  A model label's "not" examples also fit a *correction*: where
it fires, the label is silenced (edge/learn/personal.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge import features
from edge.audio.sources import FileSource
from edge.learn.heads import Head, fit_labels, sounding
from edge.learn.store import Example, Fitted, StoreError, TaughtStore
from edge.model.classifier import Classifier
from edge.model.embedding import NoEmbedding, background_embeddings

_LOGGER = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]
SILENT_DBFS = -60.0
"""An example whose loudest window is below this level is silent: nothing to learn from."""
BUDGET_PER_HOUR = 1.0
"""False events per hour a head's threshold is set for (on held-out negatives)."""


@dataclass(frozen=True)
class Windows:
    """The daemon's windows of one clip under one model: embeddings and levels (dBFS)."""

    rows: F32
    levels: F32

    def sounding(self) -> F32:
        """The rows within ``SOUNDING_DB`` of the clip's loudest window."""
        rows: F32 = self.rows[sounding(self.levels)]
        return rows


def read_clip(path: str | Path, rate_hz: int) -> F32:
    """A file's samples at ``rate_hz`` (resampled), mono float32; AudioError in one line when it cannot be read."""
    source = FileSource(path, rate_hz, realtime=False, block_samples=16000, start_time=0.0)
    blocks = [b.samples for b in source.blocks(threading.Event())]
    return np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)


def check_clip(samples: F32, classifier: Classifier, name: str) -> None:
    """StoreError naming ``name`` for an example that cannot teach: shorter than a window, or silent."""
    m = classifier.manifest
    p = m.features
    need = m.window_samples
    if len(samples) < need:
        raise StoreError(
            f"{name}: {len(samples) / p.sample_rate:.2f} s, shorter than one window of the model "
            f"({need / p.sample_rate:.2f} s)"
        )
    peak = float(np.max(np.abs(samples)))
    if peak <= 10 ** (SILENT_DBFS / 20):
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        raise StoreError(f"{name}: silent (peak {level}, below {SILENT_DBFS:.0f} dBFS): nothing to learn from")


def clip_windows(classifier: Classifier, samples: F32) -> Windows:
    """Embeddings and levels of the daemon's windows of ``samples`` (model window, model hop)."""
    m = classifier.manifest
    p = m.features
    frames = features.compute(samples, p)
    ends = features.window_ends(len(frames), m.window_frames, m.hop_frames)
    rows, levels = [], []
    x = np.asarray(samples, dtype=np.float64)
    for end in ends:
        tensor = features.to_input(features.window_at(frames, end, m.window_frames, p), p, m.input)
        classifier.invoke(tensor)
        rows.append(classifier.embedding())
        lo = max(0, end - m.window_frames) * p.hop_samples
        part = x[lo : p.frames_end(end)]
        levels.append(10 * math.log10(float(np.mean(part * part)) + 1e-12) if len(part) else -120.0)
    size = m.embedding.size if m.embedding else 0
    stacked = np.array(rows, dtype=np.float32).reshape(len(rows), size)
    return Windows(stacked, np.array(levels, dtype=np.float32))


def example_windows(store: TaughtStore, example: Example, classifier: Classifier, sha256: str) -> F32 | None:
    """The sounding window embeddings of a stored example under a model; None when it holds only another model's
    embeddings (an event heard while recording was off cannot be carried to a new model)."""
    if not example.audio:
        rows, under = store.read_embeddings(example)
        return rows if under == sha256 else None
    cached = store.cached(example, sha256)
    if cached is not None:
        return Windows(*cached).sounding()
    samples, rate = store.read_audio(example)
    if rate != classifier.manifest.features.sample_rate:
        samples = read_clip(example.path, classifier.manifest.features.sample_rate)
    windows = clip_windows(classifier, samples)
    store.cache(example, sha256, windows.rows, windows.levels)
    return windows.sounding()


def background(classifier: Classifier, store: TaughtStore, sha256: str) -> tuple[F32, str]:
    """Negatives every head shares: the bundle's background set and the device's reservoir; and one line on them."""
    b = classifier.bundle
    spec = b.manifest.embedding
    if spec is None:
        raise NoEmbedding(f"{b.path}: model {b.manifest.name} {b.manifest.version} has no embedding output")
    shipped = background_embeddings(b.background, spec, b.path) if b.background else np.zeros((0, spec.size))
    own, _seen = store.reservoir(sha256)
    own = own if own.ndim == 2 and own.shape[1:] == (spec.size,) else np.zeros((0, spec.size), np.float32)
    rows = np.concatenate([shipped, own]).astype(np.float32)
    return rows, f"negatives: {len(shipped)} background windows from the bundle, {len(own)} heard on this device"


def fit_all(store: TaughtStore, classifier: Classifier, sha256: str) -> Fitted:
    """Fit every taught label's heads under one model (the caller holds the store's lock)."""
    began = time.monotonic()
    base = classifier.bundle.manifest
    model_labels = set(base.score_labels)
    examples = store.examples()
    lines: list[str] = []
    windows: dict[tuple[str, str], list[F32]] = {}
    for ex in examples:
        rows = example_windows(store, ex, classifier, sha256)
        if rows is None:
            lines.append(f"{ex.label}: {ex.name} is kept as another model's embeddings only (recording was off): "
                         "left out of this model's fit")  # fmt: skip
            continue
        windows.setdefault((ex.label, ex.verdict), []).append(rows)
    if not examples:
        return Fitted(sha256, (), (), _now(), ())
    common, said = background(classifier, store, sha256)
    lines.append(said)
    yes = {label: np.concatenate(parts) for (label, verdict), parts in windows.items() if verdict == "yes"}
    no = {label: np.concatenate(parts) for (label, verdict), parts in windows.items() if verdict == "not"}
    heads, said_labels = fit_labels(yes, no, common, model_labels, budget_per_hour=BUDGET_PER_HOUR)
    lines += said_labels
    lines.append(f"fitted {len(heads)} head(s) in {time.monotonic() - began:.1f} s")
    return Fitted(sha256, tuple(heads), tuple(lines), _now(), tuple(f"{ex.label}/{ex.name}" for ex in examples))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def current(
    store: TaughtStore, classifier: Classifier, sha256: str, *, keep: bool = True, fit: bool = True
) -> Fitted | None:
    """The heads for this model, refit when there are none yet or the examples changed since (and kept, unless
    ``keep`` is False or the store cannot be written); None when nothing was taught.  ``fit=False`` never fits
    (the audio worker: it takes the saved heads, or the ones for fewer examples while a writer is still fitting,
    whose save moves the generation again).  Raises NoEmbedding when there is something taught and the model has
    no embedding."""
    if not store.examples():
        return None
    fitted = store.fitted(sha256)
    if fitted is not None and fitted.examples == _names(store):
        return fitted
    if not fit:
        return fitted
    if not keep:
        return fit_all(store, classifier, sha256)
    try:
        with store.lock():
            fitted = store.fitted(sha256)  # another writer may have fitted while this one waited
            if fitted is None or fitted.examples != _names(store):
                fitted = fit_all(store, classifier, sha256)
                store.save(fitted)
    except PermissionError:  # a reader of someone else's state dir: fitted for this run only
        fitted = fit_all(store, classifier, sha256)
    for line in fitted.lines:
        _LOGGER.info("taught: %s", line)
    return fitted


def _names(store: TaughtStore) -> tuple[str, ...]:
    return tuple(f"{ex.label}/{ex.name}" for ex in store.examples())


def with_heads(classifier: Classifier, fitted: Fitted | None) -> Classifier:
    """``classifier`` with the fitted heads applied (the model as it is without any)."""
    return classifier.taught(fitted.heads) if fitted is not None and fitted.heads else classifier.taught(())


def threshold_text(threshold: float) -> str:
    """A head's threshold as a person reads it: two decimals, or as many as it takes to not read 1.00."""
    return f"{threshold:.2f}" if threshold < 0.99 else f"{threshold:.4f}".rstrip("0")


def describe(head: Head, new: bool) -> str:
    """One line on a fitted head."""
    what = {"label": "new label" if new else "adds to the model's label", "correction": "correction"}[head.kind]
    return (
        f"{head.label} ({what}): {head.examples} example windows, threshold {threshold_text(head.threshold)}, "
        f"{head.recall:.0%} of its example windows pass; {head.measured}"
    )


RESERVED = {"problem": "the device's Problem sensor in Home Assistant"}
"""Names a taught label cannot take: its entities would be another's."""


def check_teachable(label: str, classifier: Classifier) -> None:
    """StoreError when ``label`` cannot be taught to this model: a clash with the device's own entities or the
    model's background outputs."""
    base = classifier.bundle.manifest
    if label in RESERVED:
        raise StoreError(f"label {label!r} clashes with {RESERVED[label]}: choose another name")
    if label in base.background_labels:
        raise StoreError(f"label {label!r} is the model's background output ('none of the labels'): choose a name")
