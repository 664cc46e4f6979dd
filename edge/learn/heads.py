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
from dataclasses import dataclass, field

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
MIN_THRESHOLD = 0.5


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
        """``p`` for each row of ``embeddings`` (or for one embedding)."""
        z = np.asarray(embeddings, dtype=np.float32) @ np.asarray(self.weights, dtype=np.float32) + self.bias
        return np.asarray(1 / (1 + np.exp(-np.clip(z, -40, 40))), dtype=np.float32)


def sounding(levels_db: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Which windows of one example sound: within :data:`SOUNDING_DB` of its loudest."""
    levels = np.asarray(levels_db, dtype=np.float64)
    loud: npt.NDArray[np.bool_] = levels >= levels.max(initial=-np.inf) - SOUNDING_DB
    return loud


def fit_head(
    label: str,
    positives: F32,
    negatives: F32,
    hard: F32 | None = None,
    *,
    kind: str = "label",
    budget_per_hour: float = 1.0,
    hops_per_hour: float = 18000.0,
    l2: float = 1.0,
    seed: int = 0,
) -> Head:
    """A head for ``label`` from example windows against negatives (``hard``: the user's "not this" windows)."""
    if len(positives) == 0:
        raise TeachError(f"{label}: no sounding window in the examples")
    if len(negatives) < 2 * HELD_OUT:
        raise TeachError(f"{label}: too few negatives ({len(negatives)}) to fit and to set a threshold")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(negatives))
    held = negatives[order[::HELD_OUT]]
    fit_on = negatives[np.setdiff1d(order, order[::HELD_OUT])]
    hard = np.zeros((0, positives.shape[1]), np.float32) if hard is None else hard
    x = np.concatenate([positives, fit_on, hard]).astype(np.float64)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(fit_on) + len(hard))])
    # the few positives weigh as much as all the negatives together; each hard negative as HARD_WEIGHT others
    pos_w = (len(fit_on) + HARD_WEIGHT * len(hard)) / len(positives)
    weight = np.concatenate([np.full(len(positives), pos_w), np.ones(len(fit_on)), np.full(len(hard), HARD_WEIGHT)])
    beta = logistic.fit(x, y, weight / weight.mean(), l2=l2)
    head = Head(
        label=label, kind=kind, weights=tuple(float(v) for v in beta[:-1]), bias=float(beta[-1]), threshold=1.0,
        examples=len(positives), negatives=len(fit_on) + len(hard),
    )  # fmt: skip
    threshold, measured = _threshold(head.scores(held), budget_per_hour, hops_per_hour)
    recall = float((head.scores(positives) >= threshold).mean())
    return dataclasses.replace(head, threshold=threshold, measured=measured, recall=round(recall, 3))


def _threshold(held: F32, budget_per_hour: float, hops_per_hour: float) -> tuple[float, str]:
    """The lowest threshold (at least :data:`MIN_THRESHOLD`) whose share of held-out windows above it is within the
    budget's share of an hour of hops, and one line on what ``len(held)`` windows can show."""
    allowed = budget_per_hour / hops_per_hour
    ranked = np.sort(held)[::-1]
    can_show = 1.0 / len(held)
    k = int(np.floor(allowed * len(held)))  # windows allowed above the threshold
    top = float(ranked[k]) if k < len(ranked) else 0.0
    threshold = float(min(0.99, max(MIN_THRESHOLD, np.nextafter(np.float32(top), np.float32(1)) + 0.02)))
    above = int((held >= threshold).sum())
    if can_show > allowed:
        measured = (
            f"{above} of {len(held)} held-out background windows score {threshold:.2f} or more: that shows at most "
            f"1 window in {len(held)} ({can_show * hops_per_hour:.0f} per hour of hops), not the budget of "
            f"{budget_per_hour:g} per hour; its real rate is unmeasured"
        )
    else:
        measured = f"{above} of {len(held)} held-out background windows score {threshold:.2f} or more (within budget)"
    return round(threshold, 4), measured


def rescale(p: F32, head_threshold: npt.ArrayLike, label_threshold: npt.ArrayLike) -> F32:
    """Map a head's score so that its threshold lands on the label's: the event detector keeps one threshold per
    label, and an existing label's head adds its detections as ``max(model score, rescaled head score)``.
    Thresholds may be one per score (arrays of ``p``'s shape)."""
    head = np.asarray(head_threshold, dtype=np.float32)
    label = np.asarray(label_threshold, dtype=np.float32)
    lo = p * (label / head)
    hi = label + (p - head) * (1 - label) / np.maximum(np.float32(1e-6), 1 - head)
    return np.where(p < head, lo, hi).astype(np.float32)
