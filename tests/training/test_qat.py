"""Quantisation-aware training: the fake-quantised twin must behave like the converter's int8 model."""

from __future__ import annotations

import numpy as np
import pytest
from support import training_data as td

from edge.features import InputSpec
from training.model import export, qat
from training.model import model as model_mod
from training.recipe.config import NetworkConfig

pytestmark = [
    pytest.mark.slow,
    # a random-weight base gives near-constant features: the twin-vs-int8 comparison needs the real ImageNet base
    pytest.mark.skipif(bool(td.missing(td.WEIGHTS)), reason=td.missing(td.WEIGHTS) or "weights present"),
]

SPEC = InputSpec(frames=48, bands=64)


@pytest.fixture(scope="module")
def model_and_inputs() -> tuple[object, np.ndarray]:
    """A real ImageNet MobileNet with a seeded head giving informative (not saturated) scores,
    and smooth image-like inputs in [-1, 1]."""
    import keras

    keras.utils.set_random_seed(0)
    model = model_mod.build(NetworkConfig(weights=str(td.WEIGHTS)), SPEC, 4, bn_momentum=0.9)
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, SPEC.frames)[:, None]
    f = np.linspace(0, 1, SPEC.bands)[None, :]
    rows = []
    for _ in range(96):
        a, b, c = rng.uniform(1, 8, 3)
        img = np.sin(a * t * np.pi + c) * np.cos(b * f * np.pi) + rng.normal(0, 0.15, (SPEC.frames, SPEC.bands))
        rows.append(np.clip(img, -1, 1))
    x = np.repeat(np.stack(rows)[..., None], 3, axis=-1).astype(np.float32)
    # head: random directions, centred and scaled so that the logits spread with std 2 on these inputs
    emb = np.asarray(model_mod.embedding_model(model)(x, training=False))
    kernel = rng.normal(size=(emb.shape[1], 4))
    logits = emb @ kernel
    kernel *= 2.0 / logits.std(axis=0)
    dense = model.get_layer("scores")
    dense.kernel.assign(kernel.astype(np.float32))
    dense.bias.assign((-(emb @ kernel).mean(axis=0)).astype(np.float32))
    return model, x


def _int8_scores(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    from edge.model.runtime import interpreter_class

    cls, _ = interpreter_class()
    interp = cls(model_content=model_bytes)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
    rows = []
    for window in x:
        q = np.clip(np.round(window / s_in + z_in), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q[None])
        interp.invoke()
        rows.append((interp.get_tensor(out["index"])[0].astype(np.float32) - z_out) * s_out)
    return np.stack(rows)


def test_twin_simulates_the_int8_converter(model_and_inputs: tuple[object, np.ndarray]) -> None:
    model, x = model_and_inputs
    calib, test = x[:64], x[64:]
    twin, pairs = qat.build(model, qat.activation_ranges(model, calib))
    assert len(pairs) == 28  # stem + 13 depthwise + 13 pointwise convolutions, and the head
    int8 = _int8_scores(export.to_tflite(model, lambda: iter(calib[i : i + 1] for i in range(len(calib)))), test)
    float_scores = np.asarray(model(test, training=False))
    simulated = np.asarray(twin(test, training=False))
    assert float_scores.max(axis=1).mean() < 0.9, "the head should not be saturated"
    assert float(np.abs(float_scores - int8).mean()) > 4e-3, "int8 should differ from float by > 1 code"
    # the twin reproduces the int8 arithmetic far better than the float model does
    assert np.abs(simulated - int8).mean() < 0.5 * np.abs(float_scores - int8).mean()


def test_training_the_twin_writes_back_into_the_model(model_and_inputs: tuple[object, np.ndarray]) -> None:
    import keras

    model, x = model_and_inputs
    model = keras.models.clone_model(model)
    model.set_weights(model_and_inputs[0].get_weights())  # type: ignore[attr-defined]
    twin, pairs = qat.build(model, qat.activation_ranges(model, x[:32]))
    folded = next(q for q, originals in pairs if isinstance(q, qat.FoldedConv) and q.depthwise)
    conv, norm = next(originals for q, originals in pairs if q is folded)
    folded.kernel.assign(np.asarray(folded.kernel) * 2)
    folded.gamma.assign(np.asarray(folded.gamma) + 1)
    before = np.asarray(conv.kernel).copy()
    qat.write_back(pairs)
    np.testing.assert_allclose(np.asarray(conv.kernel), before * 2)
    np.testing.assert_allclose(np.asarray(norm.gamma), np.asarray(folded.gamma))
    # a real gradient step moves the shared weights of the head too
    twin.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    head = next(q for q, _ in pairs if isinstance(q, qat.QuantDense))
    start = np.asarray(head.kernel).copy()
    twin.fit(x[:32], np.eye(4, dtype=np.float32)[np.arange(32) % 4], epochs=1, batch_size=16, verbose=0)
    assert not np.allclose(np.asarray(head.kernel), start)
