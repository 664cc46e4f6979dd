"""Small, deterministic test models built with Keras and converted by training.export.

``tone_bundle`` makes a model whose answer is predictable from physics: the
mean dB level in the band nearest each label's frequency decides the score,
so a played 1 kHz tone must come out as ``tone_1000``.  Every bundle carries a
self-test (edge/model/selftest.py) made from one window of its first tone, the way
training stores one.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge import scales
from edge.features import FeatureParams, InputSpec, normalise
from edge.model.bundle import Manifest, OutputSpec, sha256, write_bundle
from edge.model.selftest import selftest_for


def _band_of(params: FeatureParams, hz: float) -> int:
    edges = scales.band_edges_hz(params.scale, params.f_min_hz, params.f_max_hz, params.n_bands)
    return int(np.argmin(np.abs(edges[1:-1] - hz)))


def tone_model(  # type: ignore[no-untyped-def]
    params: FeatureParams, spec: InputSpec, tones_hz: Sequence[float], *, nan_when_quiet: bool = False
):
    """Keras model: labels 'quiet' + one per tone; a loud tone wins its label.

    ``nan_when_quiet``: scores are NaN whenever 'quiet' wins (log of a negative number), finite
    on a tone: a model that passes a self-test made from a tone and fails in service.
    """
    import keras

    inp = keras.Input(spec.shape[1:])
    x = keras.layers.Lambda(lambda t: t[..., 0])(inp)
    x = keras.layers.GlobalAveragePooling1D()(x)  # mean over time -> (bands,)
    dense = keras.layers.Dense(len(tones_hz) + 1, activation="softmax")
    out = dense(x)
    if nan_when_quiet:
        out = keras.layers.Lambda(lambda p: p + 1e-6 * keras.ops.log(0.5 - p[:, :1]))(out)
    model = keras.Model(inp, out)
    w = np.zeros((params.n_bands, len(tones_hz) + 1), dtype=np.float32)
    b = np.zeros(len(tones_hz) + 1, dtype=np.float32)
    b[0] = 2.0  # 'quiet' wins unless some tone band is well above the floor
    for i, hz in enumerate(tones_hz, start=1):
        w[_band_of(params, hz), i] = 12.0
        b[i] = 0.0
    dense.set_weights([w, b])
    return model


def tone_bundle(
    path: Path,
    *,
    params: FeatureParams | None = None,
    window_frames: int = 48,
    hop_frames: int = 4,
    tones_hz: Sequence[float] = (1000.0, 3000.0),
    int8: bool = True,
    version: str = "0.1.0",
    name: str = "tones",
    selftest: bool = True,
    nan_when_quiet: bool = False,
) -> Path:
    """Write a bundle of :func:`tone_model` to ``path`` (with a self-test unless told not to); return the path."""
    from training.export import int8_input_spec, to_tflite

    params = params or FeatureParams()
    base = InputSpec(frames=window_frames, bands=params.n_bands)
    model = tone_model(params, base, tones_hz, nan_when_quiet=nan_when_quiet)
    rng = np.random.default_rng(0)

    def representative():  # type: ignore[no-untyped-def]
        for level in np.linspace(params.db_floor, params.db_ceiling, 24):
            window = np.full((window_frames, params.n_bands), level, dtype=np.float32)
            window += rng.normal(0, 3, window.shape).astype(np.float32)
            yield normalise(np.clip(window, params.db_floor, params.db_ceiling), params, base)

    tflite = to_tflite(model, representative if int8 else None)
    spec, output = int8_input_spec(tflite, base)
    labels = ("quiet", *(f"tone_{int(hz)}" for hz in tones_hz))
    manifest = Manifest(
        schema_version=1,
        name=name,
        version=version,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        labels=labels,
        features=params,
        fingerprint=params.fingerprint(),
        window_frames=window_frames,
        hop_frames=hop_frames,
        input=spec,
        output=OutputSpec(**output),
        thresholds=dict.fromkeys(labels, 0.5),
        model_sha256=sha256(tflite),
        provenance={"source": "tests/support/models.py"},
    )
    test = None
    if selftest:  # the way training stores one
        t = np.arange(params.sample_rate) / params.sample_rate
        test = selftest_for(manifest, tflite, 0.3 * np.sin(2 * np.pi * tones_hz[0] * t))
    write_bundle(path, manifest, tflite, selftest=test)
    return path
