"""The bundle's AudioSet rule beside the network alone, for the training report: how often each label's own
validation clips are confirmed, and what the rule costs or gains in clip accuracy and in events, at thresholds
calibrated the same way for both (the same false-alarm budget on the same calibrate audio).

A rule that costs a dataset ten points without saving a false alarm must not pass unnoticed: the report says
so in one line (:func:`verdict`), and docs/training.md says what to do about it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edge.model.audioset import Confirm, confirm_text, confirm_weight


def confirmation(
    hops: Any, labels: Sequence[str], classes: Mapping[str, Sequence[int]], confirm: Confirm
) -> dict[str, dict[str, float]]:
    """Per label with AudioSet classes, over the sounding hops of its own validation clips: how many, the share
    whose classes reach the confirmation threshold, and the mean weight the rule gives the label's score.
    ``hops``: training.calibrate.evidence.Hops (scores, audioset, label, sounding per hop)."""
    found = {}
    for i, label in enumerate(labels):
        mine = (hops.label == i) & hops.sounding
        if not classes.get(label) or not mine.any():
            continue
        evidence = hops.audioset[mine][:, list(classes[label])].max(axis=1)
        weight = confirm_weight(confirm, hops.scores[mine, i], evidence)
        found[label] = {
            "hops": int(mine.sum()),
            "confirmed": round(float((evidence >= confirm.threshold).mean()), 3),
            "weight": round(float(weight.mean()), 3),
        }
    return found


def seldom_confirmed(shares: Mapping[str, Mapping[str, float]], min_confirmed: float) -> tuple[str, ...]:
    """The labels whose own validation hops are confirmed less often than ``min_confirmed``, sorted."""
    return tuple(sorted(x for x, f in shares.items() if f["confirmed"] < min_confirmed))


def verdict(rule: Mapping[str, Any]) -> str:
    """One line: what the rule costs in accuracy and recall and what it saves in held-out false events."""
    cost = 100 * (rule["int8_clip_accuracy_network_alone"] - rule["int8_clip_accuracy_with_rule"])
    parts = [f"the rule {'costs' if cost > 0 else 'gains'} {abs(cost):.1f} points of test clip accuracy"]
    alone = rule.get("network_alone", {})
    if alone.get("recall") is not None and rule.get("recall") is not None:
        drop = 100 * (alone["recall"] - rule["recall"])
        parts.append(f"{'costs' if drop > 0 else 'gains'} {abs(drop):.1f} points of validation event recall")
    saved = None
    if alone.get("heldout_false_events") is not None and rule.get("heldout_false_events") is not None:
        saved = alone["heldout_false_events"] - rule["heldout_false_events"]
        parts.append(f"{'saves' if saved >= 0 else 'adds'} {abs(saved)} held-out false events")
    line = ", ".join(parts)
    if cost > 2 and saved is not None and saved <= 0:
        line += ": it does not pay here; consider `audioset.confirm.mapping: ''` (docs/training.md)"
    return line[0].upper() + line[1:]


def markdown(rule: Mapping[str, Any] | None) -> list[str]:
    """The report's section on the rule (nothing for a bundle without one)."""
    if not rule or "network_alone" not in rule:
        return []
    alone = rule["network_alone"]

    def cell(value: Any, pct: bool = False) -> str:
        if value is None:
            return "-"
        if pct:
            return f"{100 * value:.2f}%"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [
        "",
        "## The AudioSet rule beside the network alone",
        "",
        f"Rule: {rule['description']}. Thresholds for both from the same false-alarm budget on the same "
        "calibrate audio; held-out: the background's report part.",
        "",
        "| figure | with the rule | the network alone |",
        "|---|---|---|",
        f"| test clip accuracy, int8 | {cell(rule['int8_clip_accuracy_with_rule'], True)} | "
        f"{cell(rule['int8_clip_accuracy_network_alone'], True)} |",
        f"| validation event recall at the thresholds | {cell(rule.get('recall'))} | {cell(alone.get('recall'))} |",
        f"| labels that cannot meet the budget | {cell(rule.get('failing'))} | {cell(alone.get('failing'))} |",
        f"| held-out false events | {cell(rule.get('heldout_false_events'))} | "
        f"{cell(alone.get('heldout_false_events'))} |",
        "",
        verdict(rule) + ".",
    ]
    confirmed = rule.get("confirmation") or {}
    if confirmed:
        lines += [
            "",
            "How often each label's own validation clips are confirmed (sounding hops whose AudioSet classes "
            "reach the threshold) and the mean weight the rule leaves their scores, least confirmed first:",
            "",
            "| label | hops | confirmed | mean weight |",
            "|---|---|---|---|",
        ]
        left = set(rule.get("unconfirmed") or ())
        for label, f in sorted(confirmed.items(), key=lambda kv: kv[1]["confirmed"]):
            weight = "1 (left unconfirmed)" if label in left else f"{f['weight']:.2f}"
            lines.append(f"| {label} | {f['hops']} | {f['confirmed']:.0%} | {weight} |")
    return lines


def describe(confirm: Confirm) -> str:
    """The rule in words: its kind, then what ``auricle model info`` says of it."""
    return ("a hard gate: " if confirm.slope == 0 else "the soft confirmation: ") + confirm_text(confirm)
