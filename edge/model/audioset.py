"""The AudioSet head: a model's second output (YAMNet's 521 AudioSet classes), used on the device.

A manifest may carry an ``audioset`` section (docs/bundle.md) that says how the second output
is quantised and uses it in three ways:

- **The veto** (an open-set rule): on a hop where the highest score of the veto classes
  (Speech, Music, ...) reaches the veto threshold, every event label's score is set to 0 except
  the exempt ones (human sounds such as coughing that YAMNet may call speech-like).  It runs
  before the event logic, so smoothing, thresholds, hold and cooldown stay as they are: a vetoed
  hop is a hop without evidence.
- **The confirmation** (a second opinion): an event label that has AudioSet classes (``dog``:
  Dog, Bark, ...) keeps its score only on hops where the highest of them reaches the
  confirmation threshold; elsewhere its score is 0.  The head need not name the sound, only not
  deny it; a label AudioSet has no class for (``can_opening``) is never touched.  Like the veto
  it runs before the event logic.
- **The evidence** (what replaces the confirmation): per event label, a logistic combination learned
  on training data of the label head's score and the best score of the label's AudioSet classes,
  ``p = sigmoid(w_score * logit(s) + w_evidence * logit(e) + bias)`` (scores clipped to half an int8
  step from 0 and 1 first).  A label AudioSet has no class for gets ``w_evidence`` 0 and is calibrated
  on its own score, on equal terms; a label not listed passes unchanged.  Where the label head is sure
  (``s >= keep_at``) the label keeps at least its own score, whatever AudioSet says.  The result is
  continuous in both scores: a quantisation step on either moves it a little, never from 0 to ``s``
  as the confirmation's hard gate did, and the event detector's smoothing does the rest, so no single
  threshold decides on one hop (tests/model/test_runtime_events.py).
- **Optional labels** (``smoke_alarm``, ``doorbell``, ``speech``, ...): each scores the highest
  score of its AudioSet classes and comes after the event labels in the scores the pipeline
  sees, so the event detector, MQTT and Home Assistant treat it like any label.  One that is not
  enabled by default starts switched off (edge/detect/events.py) with its Home Assistant
  entities hidden (edge/publish/discovery.py).  Neither rule touches optional labels.

A manifest without the section runs exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge.model.evidence import Combination, Evidence, logit
from edge.model.outputs import OutputSpec

F32 = npt.NDArray[np.float32]
AUDIOSET_CLASSES = 521
"""Scores in the AudioSet output (YAMNet's class map, ``index,mid,display_name``)."""
_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
_SCORE = {"lo": 0.0, "hi": 1.0, "unit": "score"}


@dataclass(frozen=True, kw_only=True)
class Veto:
    """The open-set rule: a high score on any of these AudioSet classes silences the event labels."""

    classes: tuple[int, ...]
    """AudioSet class indices 0..520 (0 Speech, 132 Music, 494 Silence, ...)."""
    class_names: tuple[str, ...] = ()
    """Their display names, in the same order (for people: the model card, ``auricle model info``)."""
    threshold: float = field(metadata=_SCORE)
    """The veto holds on a hop where the highest of the classes' scores is at least this."""
    exempt: tuple[str, ...] = ()
    """Event labels never vetoed (coughing, laughing, crying_baby, sneezing, breathing, snoring, ...)."""


@dataclass(frozen=True, kw_only=True)
class Confirm:
    """The second opinion: an event label's score counts only on hops where its AudioSet classes agree."""

    threshold: float = field(metadata=_SCORE)
    """With ``slope`` 0: a label's score stands on a hop where the highest score of its classes is at least this,
    else it is 0.  With a slope: the evidence at which the label keeps half its score."""
    classes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Event label -> its AudioSet class indices; a label not listed (AudioSet has no class for it) is never
    confirmed or silenced."""
    slope: float = field(default=0.0, metadata={"lo": 0.0, "hi": 100.0, "unit": "per logit of evidence"})
    """0: the hard gate (esc50 4.0.0).  Above 0, the soft confirmation (esc50 5.0.0): the label's score times
    ``sigmoid(slope * (logit(e) - logit(threshold)))``, ``e`` the best of its classes' scores: continuous in
    both scores, so a quantisation step moves it a little and never from 0 to the whole score."""
    keep_at: float = field(default=1.0, metadata=_SCORE)
    """A label head score at least this is kept whatever AudioSet says, under the gate or the soft confirmation
    (1.0: none): where the network is sure, AudioSet not knowing the sound does not silence it."""


@dataclass(frozen=True, kw_only=True)
class AudiosetLabel:
    """An optional label scored by the AudioSet head: the highest score of its classes."""

    name: str
    """Published label name, snake_case (``smoke_alarm``)."""
    classes: tuple[int, ...]
    """AudioSet class indices 0..520 whose highest score is the label's score."""
    class_names: tuple[str, ...] = ()
    """Their display names, in the same order (``Smoke detector, smoke alarm``)."""
    threshold: float = field(metadata=_SCORE)
    """Default decision threshold of the label."""
    enabled_by_default: bool = False
    """True: listened for and shown in Home Assistant from the start; False: off until a user enables it."""


@dataclass(frozen=True, kw_only=True)
class AudiosetHead:
    """Manifest section ``audioset``: the model's second output and what the device does with it."""

    output: OutputSpec
    """Dtype and quantisation of the 521-score output (the label output's are ``Manifest.output``)."""
    veto: Veto | None = None
    """The open-set rule; None: no veto."""
    confirm: Confirm | None = None
    """The second opinion on the event labels (a hard gate, esc50 4.0.0); None: none."""
    evidence: Evidence | None = None
    """The learned combination that replaces the confirmation; None: none (never both)."""
    labels: tuple[AudiosetLabel, ...] = ()
    """Optional labels, in the order they follow the event labels."""

    @property
    def names(self) -> tuple[str, ...]:
        """The optional labels' names, in score order."""
        return tuple(x.name for x in self.labels)

    @property
    def thresholds(self) -> dict[str, float]:
        """Default thresholds of the optional labels."""
        return {x.name: x.threshold for x in self.labels}

    @property
    def off_by_default(self) -> tuple[str, ...]:
        """Optional labels that stay off (no events, entities hidden) until a user enables them."""
        return tuple(x.name for x in self.labels if not x.enabled_by_default)

    @property
    def on_by_default(self) -> tuple[str, ...]:
        """Optional labels listened for and announced to Home Assistant from the start."""
        return tuple(x.name for x in self.labels if x.enabled_by_default)


def problems(head: AudiosetHead, labels: Sequence[str], event_labels: Sequence[str]) -> list[str]:
    """What is wrong with the section for a model with these labels: one line each, naming the field."""
    found = []
    if len(labels) == AUDIOSET_CLASSES:
        found.append(f"audioset: {AUDIOSET_CLASSES} labels, as many as AudioSet scores: two outputs of one size")
    if head.veto is not None:
        found += _class_problems("audioset.veto", head.veto.classes, head.veto.class_names)
        stray = sorted(set(head.veto.exempt) - set(event_labels))
        if stray:
            found.append(f"audioset.veto.exempt: not among the event labels: {', '.join(stray)}")
    if head.confirm is not None:
        stray = sorted(set(head.confirm.classes) - set(event_labels))
        if stray:
            found.append(f"audioset.confirm.classes: not among the event labels: {', '.join(stray)}")
        for name, classes in head.confirm.classes.items():
            found += _class_problems("audioset.confirm.classes", classes, (), name)
    if head.evidence is not None:
        found += _evidence_problems(head.evidence, event_labels, head.confirm is not None)
    taken: set[str] = set()
    for i, label in enumerate(head.labels):
        where = f"audioset.labels[{i}]"
        found += _name_problems(where, label.name, labels, taken)
        found += _class_problems(where, label.classes, label.class_names)
        taken.add(label.name)
    return found


def _evidence_problems(evidence: Evidence, event_labels: Sequence[str], confirmed: bool) -> list[str]:
    found = ["audioset.evidence: give either confirm or evidence, not both"] if confirmed else []
    for key, names in (("classes", evidence.classes), ("weights", evidence.weights)):
        stray = sorted(set(names) - set(event_labels))
        if stray:
            found.append(f"audioset.evidence.{key}: not among the event labels: {', '.join(stray)}")
    for name, classes in evidence.classes.items():
        found += _class_problems("audioset.evidence.classes", classes, (), name)
    for name, weights in evidence.weights.items():
        if len(weights) != 3 or not all(np.isfinite(w) for w in weights):
            found.append(f"audioset.evidence.weights.{name}: expected three finite numbers (score, evidence, bias)")
        elif weights[1] != 0.0 and name not in evidence.classes:
            found.append(f"audioset.evidence.weights.{name}: a weight on evidence, but the label has no classes")
    return found


def _name_problems(where: str, name: str, labels: Sequence[str], taken: set[str]) -> list[str]:
    if not _SNAKE.match(name):
        return [f"{where}.name: expected a snake_case name (a-z, 0-9, _), got {name!r}"]
    if name in labels:
        return [f"{where}.name: {name!r} is already one of the model's labels"]
    if name in taken:
        return [f"{where}.name: {name!r} is given twice"]
    return []


def _class_problems(where: str, classes: Sequence[int], names: Sequence[str], key: str = "classes") -> list[str]:
    if not classes:
        return [f"{where}.{key}: expected at least one AudioSet class index"]
    bad = [c for c in classes if not 0 <= c < AUDIOSET_CLASSES]
    if bad:
        return [f"{where}.{key}: expected AudioSet class indices 0..{AUDIOSET_CLASSES - 1}, got {bad[0]}"]
    if len(set(classes)) != len(classes):
        return [f"{where}.{key}: expected each class once"]
    if names and len(names) != len(classes):
        return [f"{where}.class_names: expected one name per class ({len(classes)}), got {len(names)}"]
    return []


class HeadScorer:
    """Per hop, from the 521 AudioSet scores: the veto and the confirmation on the event labels, then the
    optional labels.

    A few NumPy operations per hop; every index array is made once here.
    """

    def __init__(self, head: AudiosetHead, event_labels: Sequence[str]) -> None:
        veto = head.veto
        self._veto = np.array(veto.classes if veto else (), dtype=np.intp)
        self._veto_at = np.float32(veto.threshold if veto else np.inf)
        exempt = set(veto.exempt if veto else ())
        self._kept_when_vetoed = np.array([x in exempt for x in event_labels], dtype=np.float32)
        confirm = head.confirm.classes if head.confirm else {}
        confirmed = [x for x in event_labels if confirm.get(x)]
        self._confirmed = np.array([i for i, x in enumerate(event_labels) if confirm.get(x)], dtype=np.intp)
        self._confirm_classes = np.array([c for x in confirmed for c in confirm[x]], dtype=np.intp)
        self._confirm_starts = np.cumsum([0] + [len(confirm[x]) for x in confirmed[:-1]], dtype=np.intp)
        self._confirm = head.confirm
        self._evidence = Combination(head.evidence, event_labels) if head.evidence else None
        self._classes = np.array([c for x in head.labels for c in x.classes], dtype=np.intp)
        self._starts = np.cumsum([0] + [len(x.classes) for x in head.labels[:-1]], dtype=np.intp)

    def vetoed(self, audioset: F32) -> bool:
        """True when a veto class reaches the veto threshold in these 521 scores."""
        return self._veto.size > 0 and bool(audioset[self._veto].max() >= self._veto_at)

    def _best(self, audioset: F32) -> F32:
        return np.maximum.reduceat(audioset[self._confirm_classes], self._confirm_starts)

    def confirmed(self, event_scores: F32, audioset: F32) -> F32:
        """The event labels' scores under the confirmation (:func:`confirm_weight`)."""
        if self._confirm is None or self._confirmed.size == 0:
            return event_scores
        s = event_scores[self._confirmed]
        out = event_scores.copy()
        out[self._confirmed] = s * confirm_weight(self._confirm, s, self._best(audioset))
        return out

    def combine(self, event_scores: F32, audioset: F32) -> F32:
        """The event labels' scores (0 unless exempt when vetoed, 0 when unconfirmed), then the optional
        labels' scores."""
        if self.vetoed(audioset):
            event_scores = event_scores * self._kept_when_vetoed
        event_scores = self.confirmed(event_scores, audioset)
        if self._evidence is not None:
            event_scores = self._evidence(event_scores, audioset)
        if self._classes.size == 0:
            return event_scores
        optional = np.maximum.reduceat(audioset[self._classes], self._starts)
        return np.concatenate((event_scores, optional)).astype(np.float32, copy=False)


def confirm_weight(confirm: Confirm, scores: F32, evidence: F32) -> F32:
    """What the confirmation multiplies label scores ``scores`` by where the best scores of their classes are
    ``evidence`` (same shape): 0 or 1 under the gate (slope 0), ``sigmoid(slope * (logit(e) - logit(threshold)))``
    under the soft confirmation, and 1 where a score is at least ``keep_at`` (below 1)."""
    if confirm.slope == 0:
        weight = (evidence >= np.float32(confirm.threshold)).astype(np.float32)
    else:
        half = logit(np.array([confirm.threshold], dtype=np.float32))
        weight = (1 / (1 + np.exp(-confirm.slope * (logit(evidence) - half)))).astype(np.float32)
    if confirm.keep_at < 1:
        weight = np.where(scores >= np.float32(confirm.keep_at), np.float32(1), weight)
    return weight


def confirm_text(confirm: Confirm) -> str:
    """The confirmation in words (``auricle model info``, the training report)."""
    n = sum(bool(c) for c in confirm.classes.values())
    if confirm.slope == 0:
        text = f"{n} labels count only where their AudioSet classes reach {confirm.threshold:g}"
    else:
        text = f"{n} labels weighed by their AudioSet classes (half the score at {confirm.threshold:g}, slope "
        text += f"{confirm.slope:g})"
    return text + (f"; a label head score >= {confirm.keep_at:g} is kept" if confirm.keep_at < 1 else "")


def info_lines(head: AudiosetHead) -> list[str]:
    """What ``auricle model info`` shows of the section: the output, the veto, the confirmation, the optional
    labels."""
    out = head.output
    quantised = f" (scale {out.scale:g}, zero point {out.zero_point})" if out.dtype == "int8" else ""
    lines = [f"AudioSet head: {AUDIOSET_CLASSES} scores, {out.dtype}{quantised}"]
    veto = head.veto
    if veto is not None:
        exempt = ", ".join(veto.exempt) or "none"
        lines.append(f"veto: {_classes(veto.classes, veto.class_names)} >= {veto.threshold:g}; exempt: {exempt}")
    if head.confirm is not None:
        lines.append(f"confirm: {confirm_text(head.confirm)}")
    if head.evidence is not None:
        ev = head.evidence
        with_classes = sum(bool(ev.classes.get(x)) for x in ev.weights)
        keep = f"; a label head score >= {ev.keep_at:g} is kept" if ev.keep_at < 1 else ""
        lines.append(
            f"evidence: {len(ev.weights)} labels combine their score with AudioSet's "
            f"({with_classes} with AudioSet classes, the rest calibrated alone){keep}"
        )
    if head.labels:
        width = max(len(x.name) for x in head.labels)
        lines.append("optional labels (threshold, on by default, AudioSet classes):")
        for x in head.labels:
            on = "on " if x.enabled_by_default else "off"
            lines.append(f"  {x.name:<{width}}  {x.threshold:.2f}  {on}  {_classes(x.classes, x.class_names)}")
    return lines


def _classes(classes: Sequence[int], names: Sequence[str]) -> str:
    """'393 Smoke detector, smoke alarm; 394 Fire alarm' (indices only when no names are given)."""
    if not names:
        return ", ".join(str(c) for c in classes)
    return "; ".join(f"{c} {n}" for c, n in zip(classes, names, strict=True))
