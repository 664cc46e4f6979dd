"""Turn per-hop scores into start/end events per label.

Each hop, the raw scores enter a short history; the smoothed decision is
either the mean over the last ``smoothing_hops`` hops or "at least ``k`` of
the last ``smoothing_hops`` hops passed".  A label turns ON when its smoothed
decision passes its threshold, and stays ON while it passes ``release`` times
the threshold (hysteresis: a sound whose score wavers around its threshold is
one event, not a string of them); it turns OFF once ``hold_s`` has gone by
without that; after an end, ``cooldown_s`` must pass before the label may start
again.  Labels are independent, so several can be ON at once.

A start within ``rearm_s`` of the label's previous end is a *repeat*
(:attr:`Event.repeat`): the same beeping alarm or barking dog going on.  It is an
event like any other (``event`` topic, sound sensor), but Home Assistant's event
entity, the one automations notify from, fires only for starts that are not
repeats, so one alarm is one notification, not one per beep.

Time is the stream's sample clock: ``t`` given to :meth:`EventDetector.update`
is seconds since the stream started (samples / rate), never the wall clock, so
hold, cooldown and every time in an event do not depend on how fast audio
arrives (a file at full speed, stdin, a live microphone).  The pipeline turns
these offsets into epoch times with :meth:`Event.on_clock` when it publishes.

Labels *off by default* raise no events until a user switches them on: by naming them
in an allow list (config ``events.enabled`` or a ``set`` command's ``enabled``), which
for them adds rather than narrows, or with ``listen``.  For a model they are the labels
outside its default listening set (edge/detect/listening.py: the ones Home Assistant
shows enabled), unless ``events.listening`` is ``all``; a bundle's optional AudioSet
labels that are not enabled by default (edge/model/audioset.py) are off either way.

The per-hop work is vectorised over labels: Python loops run only over the
labels that start or end on this hop.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge.detect.listening import listened
from edge.detect.set_command import ControlChange, check_labels, unknown_label
from edge.model.bundle import Manifest
from edge.schema import ConfigError, setting

_F32 = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class EventParams:
    """Config section ``events``: how scores become events."""

    thresholds: dict[str, float] = field(
        default_factory=dict, metadata={"lo": 0.0, "hi": 1.0, "unit": "score", "doc": "overrides of the bundle's"}
    )
    listening: Literal["announced", "all"] = setting(
        "announced",
        doc="labels that raise events by default: the ones Home Assistant enables (announced), or all",
    )
    enabled: tuple[str, ...] = setting((), doc="allow list (labels off by default named here are added)")
    disabled: tuple[str, ...] = setting((), doc="deny list, applied after the allow list")
    smoothing: Literal["mean", "k_of_n"] = setting("mean", doc="mean over n hops, or k of the last n hops")
    smoothing_hops: int = setting(5, lo=1, hi=1000, unit="hops (n)")
    k: int = setting(3, lo=1, hi=1000, unit="hops passing, for k_of_n")
    release: float = setting(
        0.9, lo=0.0, hi=1.0, unit="fraction of the threshold an ON label must keep to stay ON; 1 = no hysteresis"
    )
    hold_s: float = setting(1.0, lo=0.0, hi=3600.0, unit="s without a pass before OFF")
    cooldown_s: float = setting(0.0, lo=0.0, hi=3600.0, unit="s after an end before the next start")
    rearm_s: float = setting(
        30.0, lo=0.0, hi=86400.0, unit="s of quiet after a label's end before its next start fires the Sound event"
    )

    def __post_init__(self) -> None:
        if self.smoothing == "k_of_n" and self.k > self.smoothing_hops:
            raise ValueError(f"k ({self.k}) must not exceed smoothing_hops ({self.smoothing_hops})")
        both = sorted(set(self.enabled) & set(self.disabled))
        if both:
            raise ValueError(f"label {both[0]!r} is both enabled and disabled")


@dataclass(frozen=True, kw_only=True)
class Event:
    """One start or end of a sound, as published on the ``event`` topic."""

    id: str
    """Shared by the start and end of one event (uuid4 hex)."""
    label: str
    kind: Literal["start", "end"]
    start: float
    """Epoch seconds: the first passing hop inside the window that decided the start."""
    end: float | None
    """Epoch seconds: the last hop that kept it ON (at ``release`` times the threshold); None on a start."""
    start_offset_s: float
    """``start`` as seconds since the stream started (for a file: the position in it)."""
    end_offset_s: float | None
    """``end`` as seconds since the stream started; None on a start."""
    peak: float
    """Highest raw score of the label from start to end (0..1)."""
    mean: float
    """Mean raw score of the label from start to end (0..1)."""
    hops: int
    """Hops from start to end."""
    t_audio: float
    """Epoch seconds of the last sample of the hop that decided this message."""
    offset_s: float
    """``t_audio`` as seconds since the stream started."""
    clip: str | None = None
    """Path of the recorded clip, filled in by the recorder."""
    repeat: bool = False
    """The label's previous event ended less than ``rearm_s`` before this one started (see the module doc)."""

    def on_clock(self, epoch_of: Callable[[float], float]) -> Event:
        """This event with its epoch times set from its stream offsets by ``epoch_of``."""
        end = None if self.end_offset_s is None else round(epoch_of(self.end_offset_s), 6)
        return dataclasses.replace(
            self, start=round(epoch_of(self.start_offset_s), 6), end=end, t_audio=round(epoch_of(self.offset_s), 6)
        )


class EventDetector:
    """Hysteresis (``release``), hold and cooldown per label over a stream of score vectors.

    ``update``/``flush`` run on the worker thread and ``apply``/getters on the
    control thread; one lock makes them safe together.
    """

    def __init__(
        self,
        labels: Sequence[str],
        default_thresholds: Mapping[str, float],
        params: EventParams,
        *,
        off_by_default: Sequence[str] = (),
    ) -> None:
        """``off_by_default``: labels that raise no events until switched on (see the module doc)."""
        self._labels = tuple(labels)
        self._params = params
        n = len(self._labels)
        config = ControlChange(thresholds=dict(params.thresholds), enabled=params.enabled, disabled=params.disabled)
        check_labels(config, self._labels, "events")
        for key, names in (("thresholds", default_thresholds), ("audioset.labels", off_by_default)):
            for name in names:
                if name not in self._labels:
                    raise ConfigError(f"bundle: {key}: {unknown_label(name, self._labels)}")
        self._off = frozenset(off_by_default)
        self._core = tuple(x for x in self._labels if x not in self._off)
        self._lock = threading.Lock()
        self._thr = np.array([default_thresholds.get(x, 0.5) for x in self._labels], dtype=np.float32)
        self._allow: tuple[str, ...] = ()
        self._deny: tuple[str, ...] = ()
        self._enabled = np.ones(n, dtype=bool)
        self._hist: _F32 = np.zeros((params.smoothing_hops, n), dtype=np.float32)
        self._hist_t: _F64 = np.zeros(params.smoothing_hops, dtype=np.float64)
        self._filled = 0
        self._row = 0
        self._state = _State(n)
        self._apply_locked(config)

    @classmethod
    def for_model(
        cls, manifest: Manifest, params: EventParams, announce: tuple[str, ...] | None = None
    ) -> EventDetector:
        """The detector of a model's scores (``Manifest.score_labels``): the bundle's default thresholds, the
        config's overrides and lists; off by default the labels outside the default listening set for the
        config's ``mqtt.announce`` (``announce``), or with ``events.listening: all`` only the optional
        AudioSet labels that are not enabled by default."""
        off = manifest.audioset.off_by_default if manifest.audioset else ()
        if params.listening == "announced":
            listen = set(listened(manifest, announce))
            off = tuple(x for x in manifest.score_labels if x not in listen)
        return cls(manifest.score_labels, manifest.score_thresholds, params, off_by_default=off)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label of the model, in score order."""
        return self._labels

    def update(self, scores: npt.NDArray[np.floating], t: float) -> list[Event]:
        """Feed one hop's scores (t = stream seconds of its last sample); return new events."""
        if scores.shape != (len(self._labels),):
            raise ValueError(f"expected {len(self._labels)} scores, got shape {scores.shape}")
        with self._lock:
            self._push(scores, t)
            passing, holding = self._passing()
            events = self._end_disabled(t)
            events += self._step(scores, passing, holding, t)
            return events

    def flush(self, t: float) -> list[Event]:
        """End every active event (shutdown); t = stream seconds of the last sample."""
        with self._lock:
            return [self._end(i, t) for i in np.flatnonzero(self._state.active).tolist()]

    def active(self) -> dict[str, Event]:
        """The start events of the labels that are ON now, with current stats."""
        with self._lock:
            return {self._labels[i]: self._state.snapshot(i) for i in np.flatnonzero(self._state.active).tolist()}

    def thresholds(self) -> dict[str, float]:
        """Thresholds in force, per label."""
        with self._lock:
            return {name: round(float(v), 6) for name, v in zip(self._labels, self._thr, strict=True)}

    def enabled(self) -> tuple[str, ...]:
        """Labels that may raise events, in model order."""
        with self._lock:
            return tuple(name for name, on in zip(self._labels, self._enabled, strict=True) if on)

    def apply(self, change: ControlChange) -> None:
        """Apply a validated runtime change; disabled active labels end on the next update."""
        check_labels(change, self._labels, "set")
        with self._lock:
            self._apply_locked(change)

    def _apply_locked(self, change: ControlChange) -> None:
        for name, value in change.thresholds.items():
            self._thr[self._labels.index(name)] = value
        self._allow = self._allow if change.enabled is None else change.enabled
        self._deny = self._deny if change.disabled is None else change.disabled
        for name, on in change.listen.items():
            self._listen(name, on)
        added = {x for x in self._allow if x in self._off}  # labels off by default, switched on
        allowed = (set(self._narrowing() or self._core) | added) - set(self._deny)
        self._enabled[:] = [name in allowed for name in self._labels]

    def _narrowing(self) -> tuple[str, ...]:
        """The allow list's labels that narrow it (labels off by default named there only add)."""
        return tuple(x for x in self._allow if x not in self._off)

    def _listen(self, name: str, on: bool) -> None:
        # never shrink the allow list to nothing: an empty allow list means every label (but those off by default)
        if not on:
            self._deny = self._deny if name in self._deny else (*self._deny, name)
            return
        self._deny = tuple(x for x in self._deny if x != name)
        if (name in self._off or self._narrowing()) and name not in self._allow:
            self._allow = (*self._allow, name)

    def _push(self, scores: npt.NDArray[np.floating], t: float) -> None:
        self._hist[self._row] = scores
        self._hist_t[self._row] = t
        self._row = (self._row + 1) % len(self._hist)
        self._filled = min(self._filled + 1, len(self._hist))

    def _window(self) -> _F32:
        return self._hist if self._filled == len(self._hist) else self._hist[: self._filled]

    def _passing(self) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Per label: does the smoothed decision pass the threshold, and ``release`` times it."""
        window, release = self._window(), self._thr * np.float32(self._params.release)
        if self._params.smoothing == "mean":
            smoothed = window.mean(axis=0)
            return smoothed >= self._thr, smoothed >= release
        k = self._params.k
        return np.count_nonzero(window >= self._thr, axis=0) >= k, np.count_nonzero(window >= release, axis=0) >= k

    def _end_disabled(self, t: float) -> list[Event]:
        gone = np.flatnonzero(self._state.active & ~self._enabled).tolist()
        return [self._end(i, t) for i in gone]

    def _step(
        self,
        scores: npt.NDArray[np.floating],
        passing: npt.NDArray[np.bool_],
        holding: npt.NDArray[np.bool_],
        t: float,
    ) -> list[Event]:
        """``passing``: at the threshold (starts); ``holding``: at ``release`` times it (what keeps ON)."""
        st = self._state
        st.accumulate(scores, holding, t)
        hold_over = (t - st.last_pass) >= self._params.hold_s
        events = [self._end(i, t) for i in np.flatnonzero(st.active & ~holding & hold_over).tolist()]
        cooled = (t - st.ended_at) >= self._params.cooldown_s
        for i in np.flatnonzero(passing & ~st.active & self._enabled & cooled).tolist():
            events.append(self._start(i, t))
        return events

    def _start(self, i: int, t: float) -> Event:
        window = self._window()
        passed = window[:, i] >= self._thr[i]
        times = self._hist_t[: len(window)]
        first = float(times[passed].min()) if passed.any() else t
        since = times >= first
        repeat = bool(t - self._state.ended_at[i] < self._params.rearm_s)
        self._state.begin(i, self._labels[i], first, window[since, i], t, repeat=repeat)
        return self._state.snapshot(i)

    def _end(self, i: int, t: float) -> Event:
        return self._state.finish(i, t)


class _State:
    """Per-label running state as arrays, so a hop costs a few vector ops."""

    def __init__(self, n: int) -> None:
        self.active = np.zeros(n, dtype=bool)
        self.last_pass = np.full(n, -np.inf)
        self.ended_at = np.full(n, -np.inf)
        self.total = np.zeros(n)
        self.count = np.zeros(n, dtype=np.int64)
        self.peak = np.zeros(n)
        # stats as of the last passing hop: the tail of non-passing hold hops is not part of the sound
        self.total_at_pass = np.zeros(n)
        self.count_at_pass = np.zeros(n, dtype=np.int64)
        self.peak_at_pass = np.zeros(n)
        self.starts: dict[int, Event] = {}

    def accumulate(self, scores: npt.NDArray[np.floating], passing: npt.NDArray[np.bool_], t: float) -> None:
        on = self.active
        self.total[on] += scores[on]
        self.count[on] += 1
        np.maximum(self.peak, np.where(on, scores, 0.0), out=self.peak)
        hit = on & passing
        self.last_pass[hit] = t
        self.total_at_pass[hit] = self.total[hit]
        self.count_at_pass[hit] = self.count[hit]
        self.peak_at_pass[hit] = self.peak[hit]

    def begin(
        self, i: int, label: str, first: float, scores: npt.NDArray[np.floating], t: float, *, repeat: bool
    ) -> None:
        self.active[i] = True
        self.last_pass[i] = t
        self.total[i] = self.total_at_pass[i] = float(scores.sum())
        self.count[i] = self.count_at_pass[i] = len(scores)
        self.peak[i] = self.peak_at_pass[i] = float(scores.max())
        event = Event(
            id=uuid.uuid4().hex, label=label, kind="start", start=first, end=None, start_offset_s=first,
            end_offset_s=None, peak=0.0, mean=0.0, hops=0, t_audio=t, offset_s=t, repeat=repeat,
        )  # fmt: skip
        self.starts[i] = event

    def snapshot(self, i: int) -> Event:
        count = int(self.count_at_pass[i])
        return dataclasses.replace(
            self.starts[i],
            peak=round(float(self.peak_at_pass[i]), 6),
            mean=round(float(self.total_at_pass[i]) / max(count, 1), 6),
            hops=count,
        )

    def finish(self, i: int, t: float) -> Event:
        end = float(self.last_pass[i])
        event = dataclasses.replace(self.snapshot(i), kind="end", end=end, end_offset_s=end, t_audio=t, offset_s=t)
        self.active[i] = False
        self.ended_at[i] = t
        self.total[i] = self.count[i] = self.peak[i] = 0
        del self.starts[i]
        return event
