"""training.model.audioset: YAMNet's network in Keras, started from the dequantised weights of
``yamnet_waveform_in.tflite``, against that file's own scores on real ESC-50 windows.

Windows: the loudest 0.975 s (15,600 samples, 0.5 s steps) of the first clip of 12 ESC-50 categories.
Measured here (ai-edge-litert 2.3.0 with its default XNNPACK delegate, TF 2.21, Keras 3.15):

(a) the file's own 96x64 log-mel patch -> Keras: scores differ by at most 0.019, 1.1e-4 on average,
    top-1 12/12 (first clips of 50 categories: 0.036, 7e-5, 50/50).  Layers whose weights the file
    stores as float (stem, first two depthwise) agree to 1e-6; the first int8 layer adds 0.3%, 2% by
    the embedding (its hybrid kernels quantise activations on the fly).  Broken once, the port fails
    these bounds: any one layer's bias left out, its kernel flipped or scaled by 1.05, or ReLU6 for
    ReLU gave max >= 0.03 and mean >= 3.2e-4 (the closest: the logits' kernel x1.05, 0.031, 3.2e-4).
(b) edge.features (``YAMNET_FEATURES``) -> Keras: at most 0.56, 9.3e-4 on average, top-1 9/12.  Looser
    because the file computes its log-mel with int8 DFT and mel matrices and loses quiet bands (its
    patch is up to 5.8 off in natural-log units); our front end equals YAMNet's float tf.signal features
    to 5e-5.  Wrong settings fail: area-normalised bands (mean 6.5e-3, top-1 1/12), no log offset
    (1.4e-3), Slaney mel (2.9e-3), power spectrum (2.7e-3), twice the dB scale (6.3e-3).
"""

from __future__ import annotations

import csv
import dataclasses
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from support.shared import ROOT, shared_dir

from edge.features import FeatureParams, compute, filterbank
from edge.model.runtime import interpreter_class
from edge.schema import build
from training.model import audioset, yamnet

PEERS = shared_dir() / "peers"
WAVEFORM = PEERS / "yamnet_waveform_in.tflite"
ESC50 = shared_dir() / "data" / "esc50"
SHIPPED_BUNDLE = ROOT / "edge" / "models" / "esc50.auricle"
N_WINDOWS = 12
PATCH_BOUND = {"max": 0.03, "mean": 2e-4}  # measured 0.019, 1.1e-4
FRONT_END_BOUND = {"max": 0.7, "mean": 1.2e-3, "top1": 9}  # measured 0.56, 9.3e-4, 9 of 12

Floats = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class Reference:
    """What ``yamnet_waveform_in.tflite`` makes of each window."""

    windows: Floats
    """(n, 15600) samples."""
    patches: Floats
    """(n, 96, 64) its log-mel patches, natural log."""
    scores: Floats
    """(n, 521) its AudioSet scores."""


def _peer(name: str) -> Path:
    if not (PEERS / name).is_file():
        pytest.skip(f"YAMNet peer model not found in {PEERS} (the shared material)")
    return PEERS / name


def _limit_threads() -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already running in this process: keep its settings
        pass


def _loudest_windows() -> Floats:
    sf = pytest.importorskip("soundfile")
    if not (ESC50 / "esc50.csv").is_file():
        pytest.skip(f"ESC-50 not found in {ESC50} (the shared material)")
    with (ESC50 / "esc50.csv").open(newline="") as fh:
        first: dict[str, str] = {}
        for row in csv.DictReader(fh):
            first.setdefault(row["category"], row["filename"])
    windows = []
    for name in list(first.values())[:N_WINDOWS]:
        x, rate = sf.read(ESC50 / "audio" / name, dtype="float32")
        assert rate == 16000
        starts = range(0, len(x) - yamnet.FRIGATE_HOP_SAMPLES + 1, 8000)
        start = max(starts, key=lambda s: float(np.sum(x[s : s + yamnet.FRIGATE_HOP_SAMPLES] ** 2)))
        windows.append(x[start : start + yamnet.FRIGATE_HOP_SAMPLES])
    return np.stack(windows)


@pytest.fixture(scope="module")
def reference() -> Reference:
    path = _peer(WAVEFORM.name)
    windows = _loudest_windows()
    cls, _ = interpreter_class()
    interp = cls(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    outputs = {tuple(d["shape"]): d["index"] for d in interp.get_output_details()}
    patches, scores = [], []
    for window in windows:
        interp.set_tensor(interp.get_input_details()[0]["index"], window[None])
        interp.invoke()
        patches.append(interp.get_tensor(outputs[(96, 64)]).copy())
        scores.append(interp.get_tensor(outputs[(1, 521)])[0].copy())
    return Reference(windows, np.stack(patches), np.stack(scores))


@pytest.fixture(scope="module")
def weights() -> audioset.YamnetWeights:
    return audioset.read_yamnet_weights(_peer(WAVEFORM.name))


@pytest.fixture(scope="module")
def model(weights: audioset.YamnetWeights) -> Any:
    """The port taking YAMNet's own natural-log patch (``input_db_scale=None``)."""
    _limit_threads()
    net = audioset.build_yamnet(None, input_db_scale=None)
    audioset.set_yamnet_weights(net, weights)
    return net


@pytest.fixture(scope="module")
def db_model(weights: audioset.YamnetWeights) -> Any:
    """The port taking edge.features' dB frames."""
    _limit_threads()
    net = audioset.build_yamnet(None)
    audioset.set_yamnet_weights(net, weights)
    return net


def _differences(got: Floats, want: Floats) -> dict[str, float]:
    diff = np.abs(got - want)
    top1 = int(np.sum(got.argmax(axis=1) == want.argmax(axis=1)))
    return {"max": float(diff.max()), "mean": float(diff.mean()), "top1": top1}


def test_weights_follow_yamnets_layout(weights: audioset.YamnetWeights) -> None:
    names = [layer.name for layer in weights.layers]
    assert names == [*audioset.conv_names(), audioset.LOGITS]
    assert weights.activation == "relu"  # fused RELU in this file; the spectra file's is RELU6
    shapes = {layer.name: layer.kernel.shape for layer in weights.layers}
    assert shapes["layer1_conv"] == (3, 3, 1, 32)
    assert shapes["layer3_depthwise"] == (3, 3, 64, 1)
    assert shapes["layer14_pointwise"] == (1, 1, 1024, 1024)
    assert shapes[audioset.LOGITS] == (1024, 521)
    assert all(np.all(np.isfinite(layer.kernel)) and layer.kernel.std() > 0 for layer in weights.layers)


def test_spectra_file_is_another_network_with_relu6(weights: audioset.YamnetWeights) -> None:
    spectra = audioset.read_yamnet_weights(_peer("yamnet_spectra_in.tflite"))
    assert spectra.activation == "relu6"
    assert [layer.kernel.shape for layer in spectra.layers] == [layer.kernel.shape for layer in weights.layers]
    assert not np.allclose(spectra.layers[0].kernel, weights.layers[0].kernel, atol=0.1), "other weights"


def test_a_file_of_another_layout_is_refused_by_name(tmp_path: Path) -> None:
    with zipfile.ZipFile(SHIPPED_BUNDLE) as bundle:  # an int8 MobileNet at alpha 0.25
        (tmp_path / "mobilenet.tflite").write_bytes(bundle.read("model.tflite"))
    with pytest.raises(ValueError, match=r"mobilenet\.tflite: not YAMNet's layout"):
        audioset.read_yamnet_weights(tmp_path / "mobilenet.tflite")


def test_layer_names_for_freezing_caching_and_heads(db_model: Any) -> None:
    for name in ("layer1_conv_bn", "layer3_depthwise", "layer3_depthwise_bn", "layer3_pointwise_relu"):
        assert db_model.get_layer(name) is not None
    assert tuple(db_model.get_layer(audioset.EMBEDDING).output.shape) == (None, 1024)
    assert db_model.get_layer(audioset.LOGITS).units == 521
    assert db_model.output_names == [audioset.SCORES]
    assert tuple(db_model.input.shape) == (None, 96, 64)


def test_folded_batch_norm_is_a_bias(model: Any, weights: audioset.YamnetWeights) -> None:
    """BN with gamma 1, mean 0 and ``var + eps == 1.0`` is ``x + bias`` up to float32 rounding.

    Keras computes ``x * (gamma * rsqrt(var + eps)) + (beta - mean * scale)``.  ``var + eps`` is exactly 1.0,
    but TensorFlow's rsqrt may return 1 +/- one ulp (2**-23), so the product can be one ulp of ``x`` off, and
    the multiply and the add each round by half an ulp: at most about 2 ulps of the largest magnitude in play
    (measured: 1.9e-6 = 2 ulps at |x| ~ 12 with TensorFlow 2.21 / Keras 3.15; 0 with earlier releases).  The
    bound is 4 ulps; a wrong bias or a BN that normalises (scale != 1) is off by orders of magnitude more.
    """
    bn = model.get_layer("layer7_pointwise_bn")
    x = np.random.default_rng(0).normal(0.0, 3.0, size=(2, 6, 4, 512)).astype(np.float32)
    bias = {layer.name: layer.bias for layer in weights.layers}["layer7_pointwise"]
    ulp = np.spacing(np.float32(np.abs(x).max() + np.abs(bias).max()))
    np.testing.assert_allclose(np.asarray(bn(x, training=False)), x + bias, rtol=0, atol=4 * ulp)


def test_port_matches_tflite_on_its_own_patches(model: Any, reference: Reference) -> None:
    got = _differences(model.predict(reference.patches, verbose=0), reference.scores)
    assert got["max"] < PATCH_BOUND["max"] and got["mean"] < PATCH_BOUND["mean"], got
    assert got["top1"] == N_WINDOWS, got


def test_port_through_our_front_end_matches_tflite(db_model: Any, reference: Reference) -> None:
    frames = np.stack([compute(w, yamnet.YAMNET_FEATURES) for w in reference.windows])
    assert frames.shape == (N_WINDOWS, 96, 64)
    got = _differences(db_model.predict(frames, verbose=0), reference.scores)
    assert got["max"] < FRONT_END_BOUND["max"] and got["mean"] < FRONT_END_BOUND["mean"], got
    assert got["top1"] >= FRONT_END_BOUND["top1"], got


def test_db_input_is_the_natural_log_input_rescaled(model: Any, db_model: Any, reference: Reference) -> None:
    frames = np.stack([compute(w, yamnet.YAMNET_FEATURES) for w in reference.windows[:2]])
    via_db = db_model.predict(frames, verbose=0)
    via_ln = model.predict(frames * np.float32(yamnet.DB_TO_LN), verbose=0)
    np.testing.assert_allclose(via_db, via_ln, atol=1e-5)


def test_front_end_equals_yamnets_tf_signal_features(reference: Reference) -> None:
    tf = pytest.importorskip("tensorflow")
    x = reference.windows[0]
    magnitude = tf.abs(tf.signal.stft(x, frame_length=400, frame_step=160, fft_length=512))  # periodic Hann
    mel = tf.matmul(magnitude, tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125.0, 7500.0))
    ours = compute(x, yamnet.YAMNET_FEATURES) * np.float32(yamnet.DB_TO_LN)
    np.testing.assert_allclose(ours, np.log(mel.numpy() + yamnet.LOG_OFFSET), atol=1e-4)  # measured 4.5e-5


def test_filterbank_is_the_files_mel_matrix() -> None:
    cls, _ = interpreter_class()
    interp = cls(model_path=str(_peer(WAVEFORM.name)))
    interp.allocate_tensors()
    (detail,) = [d for d in interp.get_tensor_details() if tuple(d["shape"]) == (64, 257)]
    step = detail["quantization_parameters"]["scales"].astype(np.float64)
    stored = interp.get_tensor(detail["index"]).astype(np.float64) * step[:, None]  # int8, one scale per band
    ours = filterbank(yamnet.YAMNET_FEATURES).T
    assert np.all(np.abs(ours - stored) <= 0.5 * step[:, None] + 1e-9), "within the file's rounding"
    hz = filterbank(dataclasses.replace(yamnet.YAMNET_FEATURES, triangles="hz")).T
    assert np.any(np.abs(hz - stored) > 0.5 * step[:, None]), "triangles linear in Hz are not TensorFlow's"


def test_db_times_one_factor_is_the_old_log_mel_path(reference: Reference) -> None:
    # Same triangles (linear in Hz) both ways: only the scale factor and the offset differ in form.
    x = reference.windows[1]
    old = yamnet.log_mel(compute(x, yamnet.FEATURES))
    params = dataclasses.replace(yamnet.YAMNET_FEATURES, triangles="hz")
    new = compute(x, params) * np.float32(yamnet.DB_TO_LN)
    np.testing.assert_allclose(new, old, rtol=0, atol=2e-6)  # measured 4.8e-7: float32 rounding
    np.testing.assert_allclose(yamnet.log_mel(compute(x, params), params), new, rtol=1e-6)


def test_new_front_end_options_keep_old_bundles_valid() -> None:
    defaults = FeatureParams()
    assert not set(defaults.to_dict()) & {"filter_norm", "triangles", "log_offset"}
    assert defaults.fingerprint() == "f4e215e9b6c8ede9"  # what every bundle made before them stores
    custom = yamnet.YAMNET_FEATURES.to_dict()
    assert {custom["filter_norm"], custom["triangles"], custom["log_offset"]} == {"peak", "warped", 0.001}
    assert build(FeatureParams, custom, "test") == yamnet.YAMNET_FEATURES
    in_hz = dataclasses.replace(yamnet.YAMNET_FEATURES, triangles="hz")
    assert yamnet.YAMNET_FEATURES.fingerprint() != in_hz.fingerprint()
