"""``fit.soup_seeds``: both phases once per seed, each from the same start with a head of its own seed, and the
network keeps the mean of their phase-2 weights; members and the soup resume - real Keras on a small network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.fit import audioset_fit
from training.fit.lwf_cache import AUDIOSET, Cached
from training.model import model as model_mod
from training.recipe.config import FitConfig, TrainConfig

N_IN, N_LABELS, N_AUDIOSET = 6, 3, 4


def _upper() -> Any:
    """The shape of the YAMNet recipe's upper part: a trainable block, our head and the AudioSet head."""
    import keras

    x = keras.Input((N_IN,), name="frozen_blocks")
    embedding = keras.layers.Dense(8, activation="relu", name="block")(x)
    scores = keras.layers.Dense(N_LABELS, activation="sigmoid", name=model_mod.SCORES)(
        keras.layers.Dropout(0.1, name="dropout")(embedding)
    )
    logits = keras.layers.Dense(N_AUDIOSET, name="logits")(embedding)
    audioset = keras.layers.Activation("sigmoid", name=AUDIOSET)(logits)
    return keras.Model(x, {model_mod.SCORES: scores, AUDIOSET: audioset})


def _data(rng: np.random.Generator) -> tuple[Cached, tuple[Cached, Any]]:
    n = 48
    acts = rng.normal(size=(n, N_IN)).astype(np.float16)
    targets = (rng.uniform(size=(n, N_LABELS)) < 0.3).astype(np.float32)
    train = Cached(acts, targets, rng.uniform(size=(n, N_AUDIOSET)).astype(np.float16))
    owner = np.repeat(np.arange(4), 3).astype(np.float32)[:, None]
    val = Cached(rng.normal(size=(12, N_IN)).astype(np.float16), owner, np.zeros((12, 1), dtype=np.float16))
    return train, (val, rng.integers(0, N_LABELS, 4))


def _cfg() -> TrainConfig:
    return TrainConfig(fit=FitConfig(head_epochs=1, finetune_epochs=2, batch_size=16, soup_seeds=(1, 2)))


def _weights(path: Path) -> list[Any]:
    model = _upper()
    model.load_weights(str(path))
    return list(model.get_weights())


def test_the_soup_is_the_mean_of_its_members_and_is_not_redone(tmp_path: Path) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    train, val = _data(rng)
    upper = _upper()
    start = upper.get_weights()
    audioset_fit.soup(upper, train, _cfg(), tmp_path, val, tf.distribute.get_strategy())
    kept = upper.get_weights()
    one, two = (_weights(tmp_path / f"soup_{seed}" / audioset_fit.FINETUNED_WEIGHTS) for seed in (1, 2))
    for k, w in enumerate(kept):
        np.testing.assert_allclose(w, (one[k] + two[k]) / 2, rtol=1e-6, atol=1e-7)
    head = next(i for i, w in enumerate(start) if w.shape == (8, N_LABELS))
    assert not np.allclose(one[head], two[head]), "each member has a head of its own seed"
    assert not np.allclose(kept[head], start[head]), "the members trained"
    np.testing.assert_allclose(_weights(tmp_path / audioset_fit.FINETUNED_WEIGHTS)[head], kept[head])

    fresh = _upper()
    audioset_fit.soup(fresh, train, _cfg(), tmp_path, val, tf.distribute.get_strategy())
    for a, b in zip(fresh.get_weights(), kept, strict=True):
        np.testing.assert_array_equal(a, b)  # loaded, not trained again


def test_a_member_that_finished_is_not_trained_again(tmp_path: Path) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(1)
    train, val = _data(rng)
    first = _upper()
    audioset_fit.soup(first, train, _cfg(), tmp_path, val, tf.distribute.get_strategy())
    (tmp_path / audioset_fit.FINETUNED_WEIGHTS).unlink()  # stopped after the members, before the mean was saved
    member = tmp_path / "soup_2" / audioset_fit.FINETUNED_WEIGHTS
    stamp = member.stat().st_mtime_ns
    again = _upper()
    audioset_fit.soup(again, train, _cfg(), tmp_path, val, tf.distribute.get_strategy())
    assert member.stat().st_mtime_ns == stamp
    for a, b in zip(again.get_weights(), first.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
