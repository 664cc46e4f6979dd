"""Personal heads: a label the device learned from a few examples, on the model's embedding, in NumPy.

A head is a logistic regression on the embedding (edge/model/embedding.py) of one hop: ``p = sigmoid(w . e +
b)``.  It is fitted on the *sounding* windows of the examples (within ``SOUNDING_DB`` of each example's loudest
window) against negatives: the bundle's background set, the device's own background reservoir, the examples
of the user's "not this" (hard negatives, weighed up) and the other taught labels' examples.  Its threshold
comes from a false-alarm budget on negatives the fit never saw: a third of them is held out, and the
threshold is the lowest that keeps held-out windows above it within the budget's share of an hour of hops.
With a few thousand held-out windows that share can only be shown down to one window in that many, which is
said in one line (:attr:`Head.measured`).

A *correction* is the same fit with the "wrong" examples of a model label as positives: on a hop whose
embedding it accepts, that label's score is set to 0 (the model said cat on this house's crying baby).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.learn import logistic

F32 = npt.NDArray[np.float32]
SOUNDING_DB = 20.0
"""An example's window counts when its level is within this many dB of the example's loudest window."""
HARD_WEIGHT = 5.0
"""A "not this" window weighs as much as this many background windows."""
HELD_OUT = 3
"""One negative in this many is held out of the fit to set the threshold."""
L2 = 10.0
"""The fit's penalty on the standardised weights (edge/learn/logistic.py).  Chosen with SPREAD_FLOOR and MARGIN on
calibrate material only (bench/tune_teach.py, bench/README.md): the most recall of 5-example heads with at most 1
false event per hour per taught label; at 1 they gave 1.5-1.8x as many false events for 4 points more recall."""
SPREAD_FLOOR = 0.03
"""An embedding value whose spread (standard deviation) over the fit's windows is below this gets no weight.
The solver penalises standardised weights, so a value that hardly moves in the fit (a sparse unit, 0 in all
but a few windows) can take a weight of 100 and more; audio unlike any fitted window that moves it (music)
then lies far beyond every window the threshold was chosen on.  0.03 is about one int8 step of the shipped
model's and YAMNet's embedding (6/255, 0.023); with none, false events on calibrate background were 26x as many."""
MIN_THRESHOLD = 0.5
"""No head's threshold is lower, whatever the held-out negatives allow."""
MARGIN = 2.0
"""Logits between the held-out negative the budget allows and the threshold: those negatives are the fit's kind
of audio, a home's is not (at 0, heads taught from 5 clips gave 2-3x as many false events on calibrate audio)."""
MAX_THRESHOLD = 1.0 - 2.0**-20
"""The highest threshold: a float32 sigmoid reaches 1.0 near a logit of 17, so a threshold must stay below 1 to
be passable at all; this one (a logit of 13.9) still lies 16 float32 steps below 1."""


@dataclass(frozen=True, kw_only=True)
class ThresholdRule:
    """How the held-out negatives' scores become a head's threshold (the defaults are the device's)."""

    floor: float = MIN_THRESHOLD
    margin: float = MARGIN
    """Logits above the highest held-out negative the budget does not allow."""
    cap: float = MAX_THRESHOLD


class TeachError(ValueError):
    """The examples cannot teach anything: the one line says which and why."""


@dataclass(frozen=True, kw_only=True)
class Head:
    """One fitted head: its weights on the embedding, its bias and threshold, and what it was fitted on."""

    label: str
    kind: str
    """``label``: it raises (or adds to) the label's events; ``correction``: it silences the label where it fires."""
    weights: tuple[float, ...]
    bias: float
    threshold: float
    examples: int
    """Windows of the examples (positives)."""
    negatives: int
    measured: str = ""
    """What the threshold could and could not show, in one line."""
    recall: float = field(default=1.0)
    """Share of the example windows at or above the threshold."""

    def scores(self, embeddings: F32) -> F32:
        """``p`` for each row of ``embeddings`` (or for one embedding), as the device computes it (float32)."""
        z = np.asarray(embeddings, dtype=np.float32) @ np.asarray(self.weights, dtype=np.float32) + self.bias
        return np.asarray(1 / (1 + np.exp(-np.clip(z, -40, 40))), dtype=np.float32)

    def logits(self, embeddings: F32) -> npt.NDArray[np.float64]:
        """``w . e + b`` for each row (float64): what the threshold is chosen on, where ``p`` has saturated."""
        z: npt.NDArray[np.float64] = np.asarray(embeddings, dtype=np.float64) @ np.asarray(self.weights) + self.bias
        return z


def sounding(levels_db: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Which windows of one example sound: within :data:`SOUNDING_DB` of its loudest."""
    levels = np.asarray(levels_db, dtype=np.float64)
    loud: npt.NDArray[np.bool_] = levels >= levels.max(initial=-np.inf) - SOUNDING_DB
    return loud


def split_negatives(negatives: F32, seed: int = 0) -> tuple[F32, F32]:
    """(fitted on, held out): one negative in :data:`HELD_OUT`, drawn with ``seed``, sets the threshold."""
    order = np.random.default_rng(seed).permutation(len(negatives))
    return negatives[np.setdiff1d(order, order[::HELD_OUT])], negatives[order[::HELD_OUT]]


def fit_head(
    label: str,
    positives: F32,
    negatives: F32,
    hard: F32 | None = None,
    *,
    kind: str = "label",
    budget_per_hour: float = 1.0,
    hops_per_hour: float = 18000.0,
    l2: float = L2,
    spread_floor: float = SPREAD_FLOOR,
    seed: int = 0,
    rule: ThresholdRule | None = None,
) -> Head:
    """A head for ``label`` from example windows against negatives (``hard``: the user's "not this" windows)."""
    if len(positives) == 0:
        raise TeachError(f"{label}: no sounding window in the examples")
    if len(negatives) < 2 * HELD_OUT:
        raise TeachError(f"{label}: too few negatives ({len(negatives)}) to fit and to set a threshold")
    fit_on, held = split_negatives(negatives, seed)
    hard = np.zeros((0, positives.shape[1]), np.float32) if hard is None else hard
    x = np.concatenate([positives, fit_on, hard]).astype(np.float64)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(fit_on) + len(hard))])
    # the few positives weigh as much as all the negatives together; each hard negative as HARD_WEIGHT others
    pos_w = (len(fit_on) + HARD_WEIGHT * len(hard)) / len(positives)
    weight = np.concatenate([np.full(len(positives), pos_w), np.ones(len(fit_on)), np.full(len(hard), HARD_WEIGHT)])
    used = x.std(axis=0) >= spread_floor if spread_floor > 0 else np.ones(x.shape[1], dtype=bool)
    beta = logistic.fit(x[:, used], y, weight / weight.mean(), l2=l2)
    w = np.zeros(x.shape[1])
    w[used] = beta[:-1]
    head = Head(
        label=label, kind=kind, weights=tuple(float(v) for v in w), bias=float(beta[-1]), threshold=1.0,
        examples=len(positives), negatives=len(fit_on) + len(hard),
    )  # fmt: skip
    return with_threshold(head, positives, held, budget_per_hour, hops_per_hour, rule or ThresholdRule())


def with_threshold(
    head: Head, positives: F32, held: F32, budget_per_hour: float, hops_per_hour: float, rule: ThresholdRule
) -> Head:
    """``head`` with its threshold chosen on the held-out negatives ``held`` by ``rule``, and its recall on the
    example windows ``positives``."""
    threshold, measured = _threshold(head, held, budget_per_hour, hops_per_hour, rule)
    recall = float((head.scores(positives) >= threshold).mean())
    return dataclasses.replace(head, threshold=threshold, measured=measured, recall=round(recall, 3))


def _threshold(
    head: Head, held: F32, budget_per_hour: float, hops_per_hour: float, rule: ThresholdRule
) -> tuple[float, str]:
    """The lowest threshold (at least ``rule.floor``, at most ``rule.cap``) whose share of held-out windows above
    it is within the budget's share of an hour of hops, ``rule.margin`` logits above the highest window the
    budget does not allow; and one line on what ``len(held)`` windows can show.  Chosen on the logits: near 1 a
    float32 ``p`` has no room left for a margin."""
    allowed = budget_per_hour / hops_per_hour
    ranked = np.sort(head.logits(held))[::-1]
    can_show = 1.0 / len(held)
    k = int(np.floor(allowed * len(held)))  # windows allowed above the threshold
    z = max(_logit(rule.floor), float(ranked[k]) + rule.margin) if k < len(ranked) else _logit(rule.floor)
    p = head.scores(held)
    # and above the float32 score the device computes for that window (the logits may tie it there)
    top = np.nextafter(np.sort(p)[::-1][k], np.float32(1)) if k < len(p) else np.float32(0)
    threshold = float(min(np.float32(rule.cap), max(np.float32(1.0 / (1.0 + np.exp(-z))), top)))
    above = int((p >= threshold).sum())
    if above > k:
        return threshold, (
            f"{above} of {len(held)} held-out background windows score {threshold:.6g} or more, the highest "
            "threshold: the head cannot tell them from its examples"
        )
    if can_show > allowed:
        measured = (
            f"{above} of {len(held)} held-out background windows score {threshold:.6g} or more: that shows at most "
            f"1 window in {len(held)} ({can_show * hops_per_hour:.0f} per hour of hops), not the budget of "
            f"{budget_per_hour:g} per hour; its real rate is unmeasured"
        )
    else:
        measured = f"{above} of {len(held)} held-out background windows score {threshold:.6g} or more (within budget)"
    return threshold, measured


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def rescale(p: F32, head_threshold: npt.ArrayLike, label_threshold: npt.ArrayLike) -> F32:
    """Map a head's score so that its threshold lands on the label's: the event detector keeps one threshold per
    label, and an existing label's head adds its detections as ``max(model score, rescaled head score)``.
    Thresholds may be one per score (arrays of ``p``'s shape)."""
    head = np.asarray(head_threshold, dtype=np.float32)
    label = np.asarray(label_threshold, dtype=np.float32)
    lo = p * (label / head)
    hi = label + (p - head) * (1 - label) / np.maximum(np.float32(1e-6), 1 - head)
    return np.where(p < head, lo, hi).astype(np.float32)


def fit_labels(
    yes: Mapping[str, F32],
    no: Mapping[str, F32],
    common: F32,
    model_labels: Collection[str] = (),
    **fit: Any,
) -> tuple[list[Head], list[str]]:
    """Every taught label's heads, and a line for each label that could not be fitted: a label's negatives are
    ``common`` and the other labels' "yes" windows, its "not" windows hard negatives; a model label's "not"
    windows also fit a correction.  ``fit``: :func:`fit_head`'s keywords (budget, l2, threshold rule)."""
    labels, size = sorted(set(yes) | set(no)), common.shape[1]
    empty = np.zeros((0, size), np.float32)
    heads: list[Head] = []
    lines: list[str] = []
    for label in labels:
        mine, nots = yes.get(label, empty), no.get(label, empty)
        others = [yes.get(x, empty) for x in labels if x != label]
        negatives = np.concatenate([common, *others]) if others else common
        try:
            if len(mine):
                heads.append(fit_head(label, mine, negatives, nots, **fit))
            if len(nots) and label in model_labels:
                heads.append(fit_head(label, nots, negatives, mine, kind="correction", **fit))
            elif len(nots) and not len(mine):
                lines.append(f"{label}: only 'not' examples and not a model label: nothing to listen for yet")
        except TeachError as exc:
            lines.append(f"not fitted: {exc}")
    return heads, lines
