"""What calibration leaves: each label's threshold with the figures measured at it, and the totals.

The figures go into the bundle's ``metrics`` (``per_label`` and ``calibration``) and the report; the 95% bound
is the one-sided Poisson bound, because a short background cannot show a low rate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from scipy.stats import chi2


@dataclass(frozen=True, kw_only=True)
class LabelCalibration:
    """One label's threshold and the figures it leaves."""

    label: str
    threshold: float
    recall: float | None
    """Hit fraction of the label's positive clips; None when it has none."""
    clips: int
    """Positive clips of this label."""
    hits: int
    """... with an event of the label in the hit window."""
    false_events: int
    hours: float
    """Exposure: background plus the other labels' positive clips."""
    false_per_hour: float
    upper_95_per_hour: float
    meets_budget: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (without the label name)."""
        fields = dataclasses.asdict(self)
        del fields["label"]
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in fields.items()}


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """Thresholds for every event label, with per-label and total figures."""

    labels: tuple[LabelCalibration, ...]
    budget_per_hour: float
    label_budget_per_hour: float
    min_recall: float
    background_hours: float
    """Hours of background streams (positive clips add per-label exposure on top)."""
    false_events: int
    """Total over labels at the chosen thresholds."""
    false_per_hour: float
    """Sum of the per-label rates."""
    upper_95_per_hour: float
    """95% upper bound on the total rate: Poisson bound on the total count over the smallest exposure."""
    recall: float | None
    """Hit fraction over all positive clips."""

    def thresholds(self) -> dict[str, float]:
        """Label -> chosen threshold, for the bundle manifest."""
        return {x.label: x.threshold for x in self.labels}

    def failing(self) -> tuple[str, ...]:
        """Labels flagged ``meets_budget: false``."""
        return tuple(x.label for x in self.labels if not x.meets_budget)

    def to_dict(self) -> dict[str, Any]:
        """``{"per_label": {label: figures}, "calibration": summary}``: the bundle's metrics keys."""
        summary = {k: getattr(self, k) for k in ("budget_per_hour", "label_budget_per_hour", "min_recall")}
        summary |= {
            "background_hours": round(self.background_hours, 6),
            "false_events": self.false_events,
            "false_per_hour": round(self.false_per_hour, 6),
            "upper_95_per_hour": round(self.upper_95_per_hour, 6),
            "recall": None if self.recall is None else round(self.recall, 6),
            "failing": list(self.failing()),
        }
        return {"per_label": {x.label: x.to_dict() for x in self.labels}, "calibration": summary}


def poisson_upper_95(count: int, hours: float) -> float:
    """One-sided 95% upper bound on a rate per hour from ``count`` events in ``hours``."""
    if count == 0:
        return 3.0 / hours
    return float(chi2.ppf(0.95, 2 * (count + 1))) / 2.0 / hours
