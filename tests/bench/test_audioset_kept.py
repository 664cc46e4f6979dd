"""bench/audioset_kept.py: the shipped model's AudioSet head beside YAMNet int8 on the same windows."""

from __future__ import annotations

import numpy as np
import pytest
from support.shared import ROOT, shared_dir

from bench import audioset_kept, streams
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier
from training.model import yamnet

PEERS = shared_dir() / "peers"


def test_agreement_counts_what_it_says() -> None:
    a = np.zeros((4, 521), dtype=np.float32)
    a[:, 0] = [0.9, 0.9, 0.1, 0.1]  # Speech on the first two windows
    b = a.copy()
    b[3, 0], b[3, 7] = 0.6, 0.7  # the last window: YAMNet's top is class 7, and it calls it speech too
    got = audioset_kept.agreement(a, b)
    assert got["windows"] == 4 and got["top1_agreement"] == 0.75
    assert got["speech_decision_agreement"] == 0.75 and got["speech_share_yamnet"] == 0.75
    assert got["music_decision_agreement"] == 1.0
    assert got["mean_abs_diff"] == pytest.approx((0.5 + 0.7) / (4 * 521), abs=1e-5)


def test_the_windows_line_up_on_real_audio() -> None:
    if not (PEERS / "yamnet_spectra_in.tflite").is_file():
        pytest.skip(f"no YAMNet in {PEERS}")
    clf = Classifier(read_bundle(ROOT / "models" / "esc50.auricle"), threads=1)
    peer = yamnet.Yamnet(yamnet.YamnetParams(model_path=PEERS / "yamnet_spectra_in.tflite",
                                             class_map_path=PEERS / "yamnet_class_map.csv"))  # fmt: skip
    dog = streams.read_mono(streams.ESC50_CSV.parent / "audio" / "1-100032-A-0.flac", 16000)  # a dog, 5 s
    ours, theirs = audioset_kept.pairs(clf, peer, dog)
    assert ours.shape == theirs.shape == (5, 521)
    got = audioset_kept.agreement(ours, theirs)
    assert got["top1_agreement"] >= 0.8 and got["mean_abs_diff"] < 0.01  # measured: 1.0 and about 0.001
    shifted, _ = audioset_kept.pairs(clf, peer, np.concatenate([np.zeros(8000, np.float32), dog]))
    assert np.abs(shifted[:4] - theirs[:4]).mean() > got["mean_abs_diff"]  # half a window off: further apart
