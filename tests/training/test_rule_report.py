"""The training report's section on the AudioSet rule: confirmed shares from real hop arrays, the verdict and its
warning when a rule costs accuracy without saving a false alarm."""

from __future__ import annotations

import numpy as np

from edge.model.audioset import Confirm
from training.calibrate.evidence import Hops
from training.evaluate import rule_report

SOFT = Confirm(threshold=0.1, classes={"dog": (69, 70), "hum": ()}, slope=2.0, keep_at=0.97)


def _hops() -> Hops:
    """Four sounding dog hops (evidence 0.5, 0.2, 0.01 and 0.01 with a sure label head), one silent, one other."""
    audioset = np.zeros((6, 521), dtype=np.float32)
    audioset[:4, 70] = [0.5, 0.2, 0.01, 0.01]
    audioset[4, 69] = 0.9  # a padded silent hop of a dog clip: not counted
    scores = np.array([[0.8, 0.1]] * 3 + [[0.99, 0.0], [0.2, 0.0], [0.0, 0.9]], dtype=np.float32)
    return Hops(scores, audioset, np.array([0, 0, 0, 0, 0, 1]), np.array([True] * 4 + [False, True]))


def test_confirmation_counts_a_labels_own_sounding_hops() -> None:
    found = rule_report.confirmation(_hops(), ("dog", "hum"), SOFT.classes, SOFT)
    assert set(found) == {"dog"}  # hum has no classes: nothing to confirm
    dog = found["dog"]
    assert dog["hops"] == 4 and dog["confirmed"] == 0.5
    # weights: sigmoid(2 (logit(e) - logit(0.1))) for 0.5, 0.2, 0.01, and 1 for the sure 0.99
    z = 2 * (np.log(np.array([0.5, 0.2, 0.01]) / (1 - np.array([0.5, 0.2, 0.01]))) - np.log(0.1 / 0.9))
    assert dog["weight"] == round(float((np.sum(1 / (1 + np.exp(-z))) + 1) / 4), 3)
    gate = rule_report.confirmation(_hops(), ("dog", "hum"), SOFT.classes, Confirm(threshold=0.1, classes={}))
    assert gate["dog"]["weight"] == 0.5  # the hard gate: 1 or 0


def _rule(with_rule: float, alone: float, heldout: int, heldout_alone: int) -> dict[str, object]:
    return {
        "description": rule_report.describe(SOFT),
        "int8_clip_accuracy_with_rule": with_rule,
        "int8_clip_accuracy_network_alone": alone,
        "recall": 0.6,
        "failing": 2,
        "heldout_false_events": heldout,
        "network_alone": {"recall": 0.7, "failing": 1, "heldout_false_events": heldout_alone},
        "confirmation": rule_report.confirmation(_hops(), ("dog", "hum"), SOFT.classes, SOFT),
    }


def test_the_verdict_warns_when_the_rule_costs_without_saving() -> None:
    costly = rule_report.verdict(_rule(0.81, 0.92, 3, 3))
    assert costly.startswith("The rule costs 11.0 points of test clip accuracy, costs 10.0 points of validation")
    assert "saves 0 held-out false events: it does not pay here; consider `audioset.confirm.mapping: ''`" in costly
    paying = rule_report.verdict(_rule(0.81, 0.92, 1, 9))
    assert "saves 8 held-out false events" in paying and "does not pay" not in paying


def test_the_section_shows_both_columns_and_the_least_confirmed_first() -> None:
    text = "\n".join(rule_report.markdown(_rule(0.8475, 0.8575, 1, 9)))
    assert "| test clip accuracy, int8 | 84.75% | 85.75% |" in text
    assert "| held-out false events | 1 | 9 |" in text
    assert "Rule: the soft confirmation: 1 labels weighed by their AudioSet classes (half the score at 0.1, " in text
    assert "| dog | 4 | 50% |" in text
    assert rule_report.markdown({"int8_clip_accuracy_with_rule": 0.8}) == []  # no comparison made: no section


def test_seldom_confirmed_labels_are_those_under_the_share() -> None:
    shares = {"dog": {"confirmed": 0.95}, "wind": {"confirmed": 0.04}, "airplane": {"confirmed": 0.12}}
    assert rule_report.seldom_confirmed(shares, 0.2) == ("airplane", "wind")
    assert rule_report.seldom_confirmed(shares, 0.0) == ()
    text = "\n".join(rule_report.markdown(_rule(0.8, 0.8, 1, 1) | {"unconfirmed": ["dog"]}))
    assert "| dog | 4 | 50% | 1 (left unconfirmed) |" in text
