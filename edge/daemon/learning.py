"""What the running daemon does for teaching: its own background, its recent events, verdicts, and new heads.

- **The reservoir.**  Ordinary hops (no event running, every score below :data:`QUIET_SCORE`) are offered,
  at most one per :data:`SPACING_S` of audio, to a reservoir of :data:`RESERVOIR_ROWS` embeddings (uniform
  over everything offered, Algorithm R).  It is saved in the state dir every :data:`SAVE_EVERY_S` and at
  shutdown: the negatives of the next fit are this room's, not only the bundle's.
- **Recent events.**  The embeddings of the last :data:`RECENT_S` of hops are kept in memory; an event's
  (from a little before its start to its end) are written to the store at its start and end, so a verdict
  can find them by id (edge/detect/feedback.py), from MQTT or ``auricle feedback``.
- **Verdicts** from MQTT are carried out on a thread of their own with a classifier of their own (a fit
  takes a second or two on a Pi), never on the network thread or the audio worker.
- **New heads** (``auricle teach`` in another process, a verdict here) move the store's generation; the model
  slot reloads the heads between hops (edge/daemon/slot.py).

Nothing here stops the daemon: a failed save or verdict is one line in the log.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.detect.events import Event
from edge.detect.feedback import FeedbackError, give
from edge.detect.pipeline import Sink
from edge.learn.store import Heard, StoreError, TaughtStore
from edge.model.classifier import Classifier
from edge.model.embedding import NoEmbedding
from edge.update.checks import Loaded

_LOGGER = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]
RESERVOIR_ROWS = 2000
QUIET_SCORE = 0.2
SPACING_S = 10.0
SAVE_EVERY_S = 600.0
RECENT_S = 30.0
LEAD_S = 1.0
"""Hops kept for an event from this long before its start."""
VERDICTS = 8
"""Verdicts waiting to be carried out; more are refused as busy."""


class Reservoir:
    """A uniform sample of the embeddings offered to it, bounded."""

    def __init__(self, rows: F32, seen: int, capacity: int = RESERVOIR_ROWS, seed: int = 0) -> None:
        self.rows = [np.asarray(r, np.float32) for r in rows[:capacity]]
        self.seen = max(seen, len(self.rows))
        self.capacity = capacity
        self._rng = np.random.default_rng(seed + seen)

    def offer(self, row: F32) -> None:
        self.seen += 1
        if len(self.rows) < self.capacity:
            self.rows.append(row.copy())
            return
        j = int(self._rng.integers(self.seen))
        if j < self.capacity:
            self.rows[j] = row.copy()

    def array(self) -> F32:
        return np.array(self.rows, dtype=np.float32)


class Learning:
    """The daemon's side of teaching for the model running now (worker thread, except :meth:`verdict`)."""

    def __init__(self, state_dir: str, publish_result: Any = None) -> None:
        self.store = TaughtStore(state_dir)
        self._model: Loaded | None = None
        self._reservoir: Reservoir | None = None
        self._recent: deque[tuple[float, F32]] = deque()
        self._last_offered = -SPACING_S
        self._saved_at = time.monotonic()
        self._generation = self.store.generation()
        self._checked = 0.0
        self._verdicts: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=VERDICTS)
        self._publish_result = publish_result
        self._teacher: threading.Thread | None = None
        self._clock: Any = None

    # -- the model -------------------------------------------------------------------------------------
    def use(self, model: Loaded | None) -> None:
        """The model classifying now (its reservoir replaces the previous model's, which is saved)."""
        self.save()
        self._model = model
        self._recent.clear()
        self._reservoir = None
        if model is not None and model.classifier.has_embedding:
            rows, seen = self.store.reservoir(model.sha256)
            self._reservoir = Reservoir(rows if rows.ndim == 2 else np.zeros((0, 0), np.float32), seen)

    def changed(self) -> bool:
        """True (once) when the store changed since the heads were loaded; checked at most once a second."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return False
        self._checked = now
        generation = self.store.generation()
        if generation == self._generation:
            return False
        self._generation = generation
        return True

    def loaded(self) -> None:
        """The heads were (re)loaded at the store's current generation."""
        self._generation = self.store.generation()

    # -- every hop -------------------------------------------------------------------------------------
    def hop(self, offset: float, scores: F32, classifier: Classifier, quiet: bool) -> None:
        """One inferred hop: keep its embedding for recent events, offer it to the reservoir when ordinary."""
        if not classifier.has_embedding:
            return
        row = classifier.embedding().copy()
        self._recent.append((offset, row))
        while self._recent and self._recent[0][0] < offset - RECENT_S:
            self._recent.popleft()
        res = self._reservoir
        if res is None or not quiet or float(np.max(scores, initial=0.0)) >= QUIET_SCORE:
            return
        if offset - self._last_offered >= SPACING_S:
            self._last_offered = offset
            res.offer(row)
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.save()

    def event(self, event: Event) -> None:
        """An event was published: keep its hops' embeddings for a verdict (at its start, again at its end)."""
        model = self._model
        if model is None or not self._recent:
            return
        end = event.end_offset_s if event.end_offset_s is not None else event.offset_s
        rows = [r for t, r in self._recent if event.start_offset_s - LEAD_S <= t <= end]
        if not rows:
            return
        heard = Heard(
            id=event.id, label=event.label, start=event.start, model_sha256=model.sha256,
            rows=np.array(rows, np.float32), clip=event.clip,
        )  # fmt: skip
        try:
            self.store.keep_event(heard)
        except OSError as exc:
            _LOGGER.warning("teaching: cannot keep event %s for a verdict: %s", event.id[:8], exc)

    def save(self) -> None:
        """Write the reservoir (no-op without one)."""
        self._saved_at = time.monotonic()
        res, model = self._reservoir, self._model
        if res is None or model is None or not res.rows:
            return
        try:
            with self.store.lock():
                self.store.save_reservoir(model.sha256, res.array(), res.seen)
        except OSError as exc:
            _LOGGER.warning("teaching: cannot save the background reservoir: %s", exc)

    # -- verdicts (MQTT) -------------------------------------------------------------------------------
    def report_to(self, publish_result: Any) -> None:
        """Where each verdict's outcome goes: ``publish_result(event_id, verdict, ok, line)`` (``feedback/result``)."""
        self._publish_result = publish_result

    def verdict(self, payload: bytes) -> str | None:
        """A ``feedback`` command from the network thread: queue it; the one-line error for a bad one."""
        try:
            data = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"feedback: not JSON: {exc}"
        if not isinstance(data, dict) or set(data) - {"id", "verdict"}:
            return 'feedback: expected {"id": EVENT_ID, "verdict": "wrong" | "right"}'
        event_id, said = data.get("id"), data.get("verdict")
        if not isinstance(event_id, str) or not event_id:
            return "feedback: id: expected an event id (or 'latest')"
        if said not in ("wrong", "right"):
            return f"feedback: verdict: expected 'wrong' or 'right', got {said!r}"
        try:
            self._verdicts.put_nowait((event_id, said))
        except queue.Full:
            return f"feedback: busy ({VERDICTS} verdicts waiting): try again"
        if self._teacher is None:  # one thread for the life of the daemon, waiting on the queue
            self._teacher = threading.Thread(target=self._teach, name="auricle-teacher", daemon=True)
            self._teacher.start()
        return None

    def _teach(self) -> None:
        own: tuple[str, Classifier] | None = None
        while True:
            event_id, said = self._verdicts.get()
            model = self._model
            try:
                if model is None:
                    raise FeedbackError("no model is running")
                if own is None or own[0] != model.sha256:
                    own = (model.sha256, Classifier(model.bundle))
                line = give(self.store, own[1], model.sha256, event_id, said)
                _LOGGER.info("teaching: %s", line)
                ok = True
            except (FeedbackError, StoreError, NoEmbedding, OSError) as exc:
                line, ok = f"feedback: {exc}", False
                _LOGGER.warning("teaching: %s", line)
            except Exception as exc:  # a verdict never stops the daemon
                line, ok = f"feedback failed: {exc}", False
                _LOGGER.exception("teaching: feedback failed")
            if self._publish_result is not None:
                self._publish_result(event_id, said, ok, line)


class LearningSink:
    """The daemon's sink, with each event also handed to :meth:`Learning.event`."""

    def __init__(self, sink: Sink, learning: Learning) -> None:
        self._sink, self._learning = sink, learning

    def publish_event(self, event: Any) -> None:
        self._sink.publish_event(event)
        self._learning.event(event)

    def publish_state(self, label: str, on: bool) -> None:
        self._sink.publish_state(label, on)

    def publish_scores(self, t: float, offset_s: float, top: Any) -> None:
        self._sink.publish_scores(t, offset_s, top)

    def publish_level(self, t: float, offset_s: float, dbfs: float) -> None:
        self._sink.publish_level(t, offset_s, dbfs)
