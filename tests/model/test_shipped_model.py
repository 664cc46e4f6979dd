"""The shipped bundle as a device meets it: its embedding output and background set (what teaching on the device
stands on), its own self-test on this runtime, and the daemon's pipeline on the self-test's clip giving the
scores the bundle says it gives.

That the label and AudioSet outputs are 4.0.0's int8 codes is checked when the bundle is made
(``auricle-train embed``, training/model/embedding.py) and stated in models/MODEL_CARD.md; 4.0.0 itself is not
in the repository to compare with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.daemon.replay import file_blocks, hop_scores
from edge.daemon.startup import default_model_path
from edge.features import compute, window_at
from edge.model import agreement, selftest
from edge.model.audioset import HeadScorer
from edge.model.bundle import Bundle, read_bundle
from edge.model.classifier import Classifier
from edge.model.embedding import background_embeddings

EMBEDDING = 1024
"""YAMNet's pooled features: the input of both heads."""
BACKGROUND_WINDOWS = 3000
"""Rows of the shipped background set: a third each of speech, music and noise (models/MODEL_CARD.md, 4.1.0)."""
RELU6 = 6.0
"""The embedding is the mean of ReLU6 activations: every value lies in 0..6."""


@pytest.fixture(scope="module")
def shipped() -> Bundle:
    return read_bundle(default_model_path())


def test_the_shipped_model_declares_its_embedding(shipped: Bundle) -> None:
    spec = shipped.manifest.embedding
    assert spec is not None and spec.size == EMBEDDING and spec.output.dtype == "int8"
    clf = Classifier(shipped)
    assert clf.has_embedding
    test = selftest.load(default_model_path())
    assert test is not None
    frames = compute(test.samples, shipped.manifest.features)
    clf.scores(window_at(frames, len(frames), shipped.manifest.window_frames, shipped.manifest.features))
    embedding = clf.embedding()
    assert embedding.shape == (EMBEDDING,) and embedding.dtype == np.float32
    assert embedding.min() >= 0.0 and embedding.max() <= RELU6 and embedding.max() > 0.0


def test_the_shipped_background_set_decodes_as_embeddings(shipped: Bundle) -> None:
    spec = shipped.manifest.embedding
    assert spec is not None and spec.background_sha256 is not None and shipped.background is not None
    rows = background_embeddings(shipped.background, spec, shipped.path)
    assert rows.shape == (BACKGROUND_WINDOWS, EMBEDDING) and rows.dtype == np.float32
    assert rows.min() >= 0.0 and rows.max() <= RELU6
    # one window per file; Speech Commands holds a few byte-identical recordings (4 pairs among these rows)
    assert len(np.unique(rows, axis=0)) >= 0.99 * BACKGROUND_WINDOWS


def test_the_shipped_model_passes_its_self_test(shipped: Bundle) -> None:
    test = selftest.load(default_model_path())
    assert test is not None and test.audioset is not None  # both outputs are checked
    result = selftest.run_selftest(Classifier(shipped), test, budget_ms=1000.0)
    assert result.max_diff_steps <= agreement.INT8_TOLERANCE_STEPS


def test_classify_gives_the_self_test_scores_on_its_clip(shipped: Bundle, tmp_path: Path) -> None:
    """The self-test's window (a real clip) as a WAV through the daemon's pipeline, the path ``auricle classify``
    takes: one hop, whose scores are the stored expectations combined as the device combines them."""
    sf = pytest.importorskip("soundfile")
    m = shipped.manifest
    test = selftest.load(default_model_path())
    assert test is not None and test.audioset is not None and m.audioset is not None
    wav = tmp_path / "selftest.wav"
    sf.write(wav, np.round(test.samples * 32768).astype(np.int16), m.features.sample_rate, subtype="PCM_16")
    clf = Classifier(shipped)
    times, scores = hop_scores(clf, file_blocks(wav, m.features.sample_rate))
    assert len(times) == 1
    kept = test.scores[[i for i, label in enumerate(m.labels) if label not in m.background_labels]]
    want = HeadScorer(m.audioset, m.event_labels).combine(kept, test.audioset)
    assert clf.labels[int(np.argmax(scores[0]))] == clf.labels[int(np.argmax(want))]
    np.testing.assert_allclose(scores[0], want, rtol=0, atol=agreement.INT8_TOLERANCE_STEPS * m.output.scale)
    assert clf.embedding().shape == (EMBEDDING,)
