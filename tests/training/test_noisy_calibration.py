"""``calibration.noisy_copies``: validation clips played inside calibrate background (training/calibrate/noisy.py),
as positives whose other-label events count as false - generated audio for the mixing, then a real ESC-50 clip,
real background and the shipped bundle through the daemon's pipeline."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from support import training_data as td
from support.shared import ROOT

from edge import features
from edge.daemon.config import Config
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from training.calibrate import noisy, replay
from training.data.data import read_audio

RATE = 16000


def _clip() -> np.ndarray:
    x = np.zeros(5 * RATE, dtype=np.float32)
    t = np.arange(RATE) / RATE
    x[RATE : 2 * RATE] = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # 1 s of sound, then silence
    return x


def test_a_copy_plays_the_clip_after_3_s_of_background_at_the_drawn_snr() -> None:
    clip, bed = _clip(), [np.random.default_rng(1).normal(0, 0.1, 7 * RATE).astype(np.float32)]
    audio, offset = noisy.noisy_copy(clip, bed, RATE, (10.0, 10.0), np.random.default_rng(0))
    assert offset == 3.0 and len(audio) == round((3.0 + 5.0 + 2.0) * RATE)
    under = audio.astype(np.float64).copy()
    under[3 * RATE : 8 * RATE] -= clip
    snr = 20 * np.log10(noisy.active_rms(clip, RATE) / np.sqrt(np.mean(under**2)))
    assert snr == pytest.approx(10.0, abs=0.01)
    again, _ = noisy.noisy_copy(clip, bed, RATE, (10.0, 10.0), np.random.default_rng(0))
    np.testing.assert_array_equal(audio, again)


def test_a_loud_copy_is_turned_down_whole_never_clipped() -> None:
    clip = _clip() * 1.9
    audio, _ = noisy.noisy_copy(clip, [np.full(RATE, 0.5, np.float32)], RATE, (0.0, 0.0), np.random.default_rng(0))
    assert np.max(np.abs(audio)) == pytest.approx(0.99, abs=1e-6)


def test_an_empty_bed_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"calibration\.noisy_copies: the calibrate part has no audible file"):
        noisy.noisy_copy(_clip(), [np.zeros(RATE, np.float32)], RATE, (0.0, 20.0), np.random.default_rng(0))


def test_noisy_positives_move_the_sounds_span_to_where_the_clip_plays() -> None:
    reason = td.missing(td.ESC50 / "esc50.csv", td.BACKGROUND / "background.csv")
    if reason:
        pytest.skip(reason)
    with (td.ESC50 / "esc50.csv").open() as fh:
        row = next(r for r in csv.DictReader(fh) if r["category"] == "dog")
    with (td.BACKGROUND / "background.csv").open() as fh:
        bg = [td.BACKGROUND / r["filename"] for r in csv.DictReader(fh) if r["split"] == "calibrate"][:3]
    clf = Classifier(read_bundle(ROOT / "edge" / "models" / "esc50.auricle"))
    p = clf.manifest.features
    path = td.ESC50 / "audio" / row["filename"]
    frames = features.compute(read_audio(path, p.sample_rate), p)
    label = clf.labels.index("dog")
    clean = replay.positive_clip(clf, path, frames, label, Config())
    bed = replay.read_part(bg, p.sample_rate)
    found = replay.noisy_positives(clf, bed, [(path, frames, label)], noisy.Noisy(2, (0.0, 20.0), 5), Config())
    assert len(found) == 2 and all(c.label == label for c in found)
    for c in found:
        assert c.start_s == pytest.approx(clean.start_s + noisy.BEFORE_S)
        assert c.end_s == pytest.approx(clean.end_s + noisy.BEFORE_S)
        assert len(c.scores) > len(clean.scores)  # the background before and after is scored too
    assert not np.allclose(found[0].scores[: len(found[1].scores)], found[1].scores[: len(found[0].scores)])
