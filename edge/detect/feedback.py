"""A verdict on an event the daemon heard: "that wasn't it" (``wrong``) or "yes, that" (``right``).

The daemon keeps each recent event's hop embeddings in the store (edge/learn/store.py ``recent/``, the latest
:data:`edge.learn.store.RECENT`).  A verdict turns one into an example of the event's label: ``wrong`` a "not"
example (a correction of a model label, a hard negative of a taught one), ``right`` a "yes" example.  With
recording on, the event's clip is kept as the example's audio, so it can be refit under a new model; without,
its embeddings are, and a model update leaves it out of the new fit (and says so).  The same function serves
the ``feedback`` MQTT command, Home Assistant's "That wasn't it" button (``latest``) and ``auricle feedback``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np

from edge.audio.sources import AudioError
from edge.detect import teaching
from edge.learn.store import RECENT, Fitted, TaughtStore, Verdict
from edge.model.classifier import Classifier

Said = Literal["wrong", "right"]


class FeedbackError(ValueError):
    """A verdict that cannot be kept: the one line says why."""


def give(store: TaughtStore, classifier: Classifier, sha256: str, event_id: str, verdict: str) -> str:
    """Keep the verdict on an event as an example, refit, and say what changed in one line."""
    if verdict not in ("wrong", "right"):
        raise FeedbackError(f"verdict {verdict!r}: expected 'wrong' or 'right'")
    heard = store.heard(event_id)
    if heard is None:
        raise FeedbackError(f"event {event_id!r}: not among the last {RECENT} events this device heard")
    kind: Verdict = "not" if verdict == "wrong" else "yes"
    rate = classifier.manifest.features.sample_rate
    clip = Path(heard.clip) if heard.clip else None
    samples = None
    if clip is not None and clip.is_file():
        try:
            samples = teaching.read_clip(clip, rate)
        except AudioError:
            samples = None
    with store.lock():
        if samples is not None and len(samples) >= rate:
            example = store.add_audio(heard.label, kind, samples, rate)
            how = "its clip"
        else:
            example = store.add_embeddings(heard.label, kind, np.asarray(heard.rows), heard.model_sha256)
            how = "its embeddings (no clip: recording is off)"
        try:
            fitted = teaching.fit_all(store, classifier, sha256)
            store.save(fitted)
        except BaseException:
            example.path.unlink(missing_ok=True)
            raise
        store.used(heard.id)
        store.touch()
    when = time.strftime("%H:%M:%S", time.localtime(heard.start))
    what = "not " if kind == "not" else ""
    return f"event {heard.id[:8]} ({heard.label} at {when}) {verdict}: kept {how} as an example of {what}{heard.label}; {_head_line(fitted, heard.label)}"  # noqa: E501


def _head_line(fitted: Fitted, label: str) -> str:
    heads = [h for h in fitted.heads if h.label == label]
    if not heads:
        return "no head fitted yet"
    return ", ".join(f"{h.kind} threshold {teaching.threshold_text(h.threshold)}" for h in heads)
