"""``fit.average_epochs``: phase 2 keeps the mean of its last epochs' weights (stochastic weight averaging)
instead of the best validation epoch, and runs every epoch - real Keras on a small model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from training.fit import audioset_fit, kept
from training.fit.lwf_cache import Cached
from training.model import model as model_mod


def _model(n_in: int, n_labels: int) -> Any:
    import keras

    x = keras.Input((n_in,))
    model = keras.Model(x, {model_mod.SCORES: keras.layers.Dense(n_labels, activation="sigmoid", name="d")(x)})
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss={model_mod.SCORES: "binary_crossentropy"})
    return model


def _val(rng: np.random.Generator, clips: int, per_clip: int, n_in: int) -> Cached:
    owner = np.repeat(np.arange(clips), per_clip).astype(np.float32)[:, None]
    acts = rng.normal(size=(clips * per_clip, n_in)).astype(np.float16)
    return Cached(acts, owner, np.zeros((len(acts), 1), dtype=np.float16))


@pytest.mark.parametrize("average", [0, 2])
def test_the_kept_weights_are_the_mean_of_the_last_epochs_or_the_best(average: int) -> None:
    import keras

    rng = np.random.default_rng(0)
    n_in, n_labels = 6, 3
    model = _model(n_in, n_labels)
    x = rng.normal(size=(64, n_in)).astype(np.float32)
    y = (rng.uniform(size=(64, n_labels)) < 0.3).astype(np.float32)
    truth = rng.integers(0, n_labels, 5)
    seen: list[list[Any]] = []

    class Record(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            seen.append(self.model.get_weights())

    check = audioset_fit.validation(_val(rng, 5, 4, n_in), truth, patience=1, average=average)
    model.fit(x, {model_mod.SCORES: y}, epochs=5, batch_size=16, verbose=0, callbacks=[Record(), check])
    kept = model.get_weights()
    if average:
        assert len(seen) == 5, "with averaging every epoch runs: no early stop"
        for k, w in enumerate(kept):
            np.testing.assert_allclose(w, (seen[-1][k] + seen[-2][k]) / 2, rtol=1e-6, atol=1e-7)
        assert not np.allclose(kept[0], seen[-1][0]), "the mean is not the last epoch"
    else:
        assert any(all(np.array_equal(a, b) for a, b in zip(kept, s, strict=True)) for s in seen), "one epoch kept"


def test_mean_weights_averages_floats_and_keeps_the_last_of_anything_else() -> None:
    a = [np.array([1.0, 3.0], dtype=np.float32), np.array([7], dtype=np.int64)]
    b = [np.array([3.0, 5.0], dtype=np.float32), np.array([9], dtype=np.int64)]
    mean = kept.mean_weights([a, b])
    np.testing.assert_array_equal(mean[0], [2.0, 4.0])
    assert mean[0].dtype == np.float32 and mean[1].tolist() == [9]
