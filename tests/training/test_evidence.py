"""The evidence fit (training/calibrate/evidence.py): the per-label choices, and that
what training computes is what the device computes (edge/model/audioset.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model.audioset import AudiosetHead, HeadScorer
from edge.model.evidence import Evidence
from edge.model.outputs import OutputSpec
from training.calibrate import evidence

LABELS = ("dog", "siren", "can_opening")
CLASSES = {"dog": (69, 70), "siren": (390,)}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _hops(rng: np.random.Generator, n: int = 3000) -> evidence.Hops:
    """Synthetic hops: dog's AudioSet classes agree with it, siren's say nothing, can_opening has none."""
    label = rng.integers(-1, 3, size=n)
    scores = rng.uniform(0.0, 0.4, size=(n, 3)).astype(np.float32)
    audioset = rng.uniform(0.0, 0.05, size=(n, 521)).astype(np.float32)
    for i in range(3):
        mine = label == i
        scores[mine, i] = rng.uniform(0.3, 1.0, size=mine.sum())
    dog = label == 0
    audioset[dog, 70] = rng.uniform(0.2, 0.9, size=dog.sum())  # AudioSet hears the dogs
    sounding = np.ones(n, dtype=bool)
    sounding[:50] = False
    return evidence.Hops(scores, audioset, label.astype(np.int64), sounding)


def test_each_label_gets_what_its_evidence_earns() -> None:
    hops = _hops(np.random.default_rng(1))
    fitted = evidence.fit(hops, LABELS, CLASSES, l2=1.0, keep_at=0.9)
    assert set(fitted.weights) == set(LABELS)  # every label with positives, unmapped ones on equal terms
    assert fitted.weights["dog"][0] > 0 and fitted.weights["dog"][1] > 0.5  # AudioSet's dog evidence counts
    assert fitted.weights["can_opening"][1] == 0.0  # no classes: its own score alone
    assert "can_opening" not in fitted.classes and fitted.classes["dog"] == (69, 70)
    assert fitted.keep_at == 0.9
    assert evidence.confirmed_share(hops, LABELS, CLASSES, 0.1)["dog"] > 0.9


def test_training_computes_what_the_device_computes() -> None:
    rng = np.random.default_rng(2)
    fitted = Evidence(
        classes={"dog": (69, 70)}, weights={"dog": (1.2, 0.8, -0.3), "can_opening": (2.0, 0.0, 0.1)}, keep_at=0.8
    )
    scores = rng.uniform(0, 1, size=(200, 3)).astype(np.float32)
    scores[:5, 0] = [0.0, 1.0, 0.8, 0.79, 1 / 1024]  # the clipping and keep_at edges
    audioset = rng.uniform(0, 1, size=(200, 521)).astype(np.float32)
    audioset[:5, 69:71] = 0.0
    scorer = HeadScorer(AudiosetHead(output=OutputSpec(), evidence=fitted), LABELS)
    device = np.stack([scorer.combine(s, a) for s, a in zip(scores, audioset, strict=True)])
    s, e = scores[:, 0].astype(np.float64), audioset[:, 69:71].max(axis=1).astype(np.float64)
    q = lambda p: np.log(np.clip(p, 1 / 512, 1 - 1 / 512) / (1 - np.clip(p, 1 / 512, 1 - 1 / 512)))  # noqa: E731
    dog = 1 / (1 + np.exp(-(1.2 * q(s) + 0.8 * q(e) - 0.3)))  # the features and weights the fit works with
    np.testing.assert_allclose(device[:, 0], np.where(s >= 0.8, np.maximum(dog, s), dog), atol=2e-6)
    can = 1 / (1 + np.exp(-(2.0 * q(scores[:, 2].astype(np.float64)) + 0.1)))
    np.testing.assert_allclose(device[:, 2], can, atol=2e-6)
    assert np.array_equal(device[:, 1], scores[:, 1])  # siren not listed: untouched
    assert device[1, 0] == 1.0 and device[2, 0] >= 0.8  # a sure score kept where AudioSet says nothing


@pytest.mark.parametrize("bad", ["negative", "none"])
def test_evidence_against_a_label_is_dropped(bad: str) -> None:
    rng = np.random.default_rng(3)
    hops = _hops(rng)
    if bad == "negative":  # AudioSet's siren classes light up on everything but sirens
        hops.audioset[hops.label != 1, 390] = 0.9
    fitted = evidence.fit(hops, LABELS, CLASSES, l2=1.0, keep_at=1.0)
    assert fitted.weights["siren"][1] == 0.0 and "siren" not in fitted.classes
