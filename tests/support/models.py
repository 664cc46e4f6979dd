"""Small, deterministic test models built with Keras and converted by training.model.export.

``tone_bundle`` makes a model whose answer is predictable from physics: the
mean dB level in the band nearest each label's frequency decides the score,
so a played 1 kHz tone must come out as ``tone_1000``.  Every bundle carries a
self-test (edge/model/selftest.py) made from one window of its first tone, the way
training stores one.

``audioset_bundle`` does the same with two outputs, the way a model that keeps
YAMNet's AudioSet head is exported (edge/model/audioset.py): sigmoid label scores
and 521 sigmoid AudioSet scores, each lit by a tone (:data:`AUDIOSET_TONES`).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge import scales
from edge.features import FeatureParams, InputSpec, normalise
from edge.model.audioset import AUDIOSET_CLASSES, AudiosetHead, AudiosetLabel, Veto
from edge.model.bundle import Manifest, sha256, write_bundle
from edge.model.outputs import OutputSpec, by_size, spec_of
from edge.model.runtime import interpreter_class
from edge.model.selftest import selftest_for

SPEECH, MUSIC, DOORBELL, SMOKE_ALARM, FIRE_ALARM = 0, 132, 349, 393, 394
"""AudioSet class indices (yamnet_class_map.csv)."""
AUDIOSET_TONES = {SPEECH: 500.0, SMOKE_ALARM: 2000.0, MUSIC: 5000.0}
"""Which tone lights which AudioSet class in :func:`audioset_bundle`'s model (the others stay near 0)."""
LABEL_TONES = {"tone_1000": 1000.0, "coughing": 3000.0}
""":func:`audioset_bundle`'s labels and their tones: ``coughing`` is the human sound the veto exempts."""
HEAD = AudiosetHead(
    output=OutputSpec(),  # replaced by the converted model's
    veto=Veto(classes=(SPEECH, MUSIC), class_names=("Speech", "Music"), threshold=0.5, exempt=("coughing",)),
    labels=(
        AudiosetLabel(name="smoke_alarm", classes=(SMOKE_ALARM, FIRE_ALARM),
                      class_names=("Smoke detector, smoke alarm", "Fire alarm"), threshold=0.5,
                      enabled_by_default=True),
        AudiosetLabel(name="speech", classes=(SPEECH,), class_names=("Speech",), threshold=0.5),
        AudiosetLabel(name="doorbell", classes=(DOORBELL,), class_names=("Doorbell",), threshold=0.5),
    ),
)  # fmt: skip
"""The section :func:`audioset_bundle` writes: veto on Speech and Music, smoke_alarm on, speech and doorbell off."""


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
    alert_labels: tuple[str, ...] = (),
) -> Path:
    """Write a bundle of :func:`tone_model` to ``path`` (with a self-test unless told not to); return the path."""
    from training.model.export import int8_input_spec, to_tflite

    params = params or FeatureParams()
    base = InputSpec(frames=window_frames, bands=params.n_bands)
    model = tone_model(params, base, tones_hz, nan_when_quiet=nan_when_quiet)
    tflite = to_tflite(model, _representative(params, base) if int8 else None)
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
        alert_labels=alert_labels,
        model_sha256=sha256(tflite),
        provenance={"source": "tests/support/models.py"},
    )
    test = None
    if selftest:  # the way training stores one
        t = np.arange(params.sample_rate) / params.sample_rate
        test = selftest_for(manifest, tflite, 0.3 * np.sin(2 * np.pi * tones_hz[0] * t))
    write_bundle(path, manifest, tflite, selftest=test)
    return path


def two_head_model(
    params: FeatureParams, spec: InputSpec, label_tones: Mapping[str, float], *, audioset_first: bool = False
) -> Any:
    """Keras model with two sigmoid outputs: one score per label (its tone's band) and 521 AudioSet
    scores (:data:`AUDIOSET_TONES`); a band well above the noise floor gives about 0.99, below it 0.01.
    ``audioset_first``: the Keras model lists the AudioSet output first."""
    import keras

    inp = keras.Input(spec.shape[1:])
    x = keras.layers.Lambda(lambda t: t[..., 0])(inp)
    x = keras.layers.GlobalAveragePooling1D()(x)  # mean over time -> (bands,), about 0.6 in a tone's band
    heads = []
    for name, tones in (("labels", list(label_tones.values())), ("audioset", AUDIOSET_TONES)):
        n = len(tones) if name == "labels" else AUDIOSET_CLASSES
        dense = keras.layers.Dense(n, activation="sigmoid", name=name)
        heads.append(dense(x))
        w, b = np.zeros((params.n_bands, n), dtype=np.float32), np.full(n, -6.0, dtype=np.float32)
        for i, hz in enumerate(tones) if name == "labels" else AUDIOSET_TONES.items():
            w[_band_of(params, hz), i], b[i] = 10.0, -1.0
        dense.set_weights([w, b])
    return keras.Model(inp, heads[::-1] if audioset_first else heads)


def audioset_bundle(
    path: Path,
    *,
    head: AudiosetHead = HEAD,
    window_frames: int = 48,
    hop_frames: int = 4,
    selftest: bool = True,
    version: str = "0.1.0",
    audioset_first: bool = False,
) -> Path:
    """Write a full-int8 bundle of :func:`two_head_model` with the ``audioset`` section ``head`` (its output
    quantisation taken from the converted file); return the path."""
    from training.model.export import int8_input_spec, to_tflite

    params = FeatureParams()
    base = InputSpec(frames=window_frames, bands=params.n_bands)
    model = two_head_model(params, base, LABEL_TONES, audioset_first=audioset_first)
    tflite = to_tflite(model, _representative(params, base))
    spec, _ = int8_input_spec(tflite, base)
    labels, audioset = _two_outputs(tflite, len(LABEL_TONES))
    manifest = Manifest(
        schema_version=1, name="two-heads", version=version,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        labels=tuple(LABEL_TONES), features=params, fingerprint=params.fingerprint(),
        window_frames=window_frames, hop_frames=hop_frames, input=spec, output=labels,
        thresholds=dict.fromkeys(LABEL_TONES, 0.5),
        audioset=dataclasses.replace(head, output=audioset),
        model_sha256=sha256(tflite), provenance={"source": "tests/support/models.py"},
    )  # fmt: skip
    test = None
    if selftest:
        t = np.arange(params.sample_rate) / params.sample_rate
        test = selftest_for(manifest, tflite, 0.3 * np.sin(2 * np.pi * 1000.0 * t))
    write_bundle(path, manifest, tflite, selftest=test)
    return path


def _representative(params: FeatureParams, base: InputSpec) -> Any:
    rng = np.random.default_rng(0)

    def windows():  # type: ignore[no-untyped-def]
        for level in np.linspace(params.db_floor, params.db_ceiling, 24):
            window = np.full((base.frames, params.n_bands), level, dtype=np.float32)
            window += rng.normal(0, 3, window.shape).astype(np.float32)
            yield normalise(np.clip(window, params.db_floor, params.db_ceiling), params, base)

    return windows


def _two_outputs(tflite: bytes, n_labels: int) -> tuple[OutputSpec, OutputSpec]:
    """The label and AudioSet outputs' specs, found by size as the device finds them."""
    cls, _ = interpreter_class()
    details = cls(model_content=tflite).get_output_details()
    assert len(details) == 2, details
    return spec_of(by_size(details, n_labels)[0]), spec_of(by_size(details, AUDIOSET_CLASSES)[0])
