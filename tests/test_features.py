"""The front end: golden vectors, batch == streaming bitwise, librosa parity, input mapping."""

from __future__ import annotations

import dataclasses
import wave
from pathlib import Path

import numpy as np
import pytest
from support.shared import shared_dir

from edge import features, scales
from edge.features import FeatureParams, FrontEnd, InputSpec, compute
from tests.data.make_golden import GOLDEN_PARAMS

DATA = Path(__file__).parent / "data"
ESC50 = shared_dir() / "data" / "esc50" / "audio"


def _golden_samples() -> np.ndarray:
    with wave.open(str(DATA / "golden.wav"), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def _noise_and_tones(seconds: float = 1.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 5100 * t) + 0.02 * rng.standard_normal(len(t))
    return x.astype(np.float32)


@pytest.mark.parametrize("name", sorted(GOLDEN_PARAMS))
def test_golden_frames_unchanged(name: str) -> None:
    expected = np.load(DATA / f"golden_{name}.npy")
    got = compute(_golden_samples(), GOLDEN_PARAMS[name])
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_frame_count_is_causal() -> None:
    p = FeatureParams()
    assert compute(np.zeros(399, np.float32), p).shape == (0, 64)
    assert compute(np.zeros(400, np.float32), p).shape == (1, 64)
    assert compute(np.zeros(16000, np.float32), p).shape == (1 + (16000 - 400) // 160, 64)


def test_future_samples_do_not_change_past_frames() -> None:
    x = _noise_and_tones()
    p = FeatureParams()
    short = compute(x[:8000], p)
    longer = compute(np.concatenate([x[:8000], np.ones(4000, np.float32)]), p)
    assert np.array_equal(short, longer[: len(short)])


def _stream(x: np.ndarray, params: FeatureParams, sizes: list[int]) -> np.ndarray:
    fe = FrontEnd(params)
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(fe.process_streaming(x[i : i + n]))
        i, k = i + n, k + 1
    return np.concatenate(out)


SMOOTHING = [FeatureParams(), FeatureParams(smoothing="median"), FeatureParams(smoothing="gaussian", scale="erb")]


@pytest.mark.parametrize("params", SMOOTHING, ids=["plain", "median", "gaussian"])
@pytest.mark.parametrize("sizes", [[1], [160], [321], [16000], "random"], ids=str)
def test_streaming_equals_batch_bitwise(params: FeatureParams, sizes: list[int] | str) -> None:
    x = _noise_and_tones(1.0 if sizes == [1] else 2.1)
    chunks = list(np.random.default_rng(7).integers(1, 5000, size=64)) if sizes == "random" else sizes
    batch = compute(x, params)
    streamed = _stream(x, params, [int(c) for c in chunks])
    assert streamed.dtype == np.float32
    assert np.array_equal(streamed, batch)


def test_reset_forgets_state() -> None:
    p = FeatureParams(smoothing="median")
    x = _noise_and_tones()
    fe = FrontEnd(p)
    fe.process_streaming(np.ones(1234, np.float32))
    fe.reset()
    assert np.array_equal(fe.process_streaming(x), compute(x, p))


def test_int16_and_float_inputs_agree() -> None:
    pcm = _golden_samples()
    p = FeatureParams()
    assert np.array_equal(compute(pcm, p), compute(pcm.astype(np.float64) / 32768.0, p))


@pytest.mark.parametrize("bad", [np.zeros((10, 2)), np.zeros(10, np.int32)])
def test_bad_samples_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected"):
        compute(bad, FeatureParams())


def _librosa_db(x: np.ndarray, p: FeatureParams, htk: bool) -> np.ndarray:
    librosa = pytest.importorskip("librosa")
    # librosa frames are n_fft long with the window centred inside: pad so its
    # frame t starts where ours does (ours: [t*hop, t*hop + window)).
    lead = (p.n_fft - p.window_samples) // 2
    padded = np.pad(x.astype(np.float64), (lead, p.n_fft - p.window_samples - lead))
    power = 2.0 if p.spectrum == "power" else 1.0
    mel = librosa.feature.melspectrogram(
        y=padded, sr=p.sample_rate, n_fft=p.n_fft, hop_length=p.hop_samples, win_length=p.window_samples,
        window="hann", center=False, power=power, n_mels=p.n_bands, fmin=p.f_min_hz, fmax=p.f_max_hz,
        htk=htk, norm="slaney",
    )  # fmt: skip
    to_db = librosa.power_to_db if p.spectrum == "power" else librosa.amplitude_to_db
    db = to_db(mel, ref=p.db_ref, amin=1e-30, top_db=None)
    return np.clip(db, p.db_floor, p.db_ceiling).T


def _real_clips() -> list[np.ndarray]:
    sf = pytest.importorskip("soundfile")
    files = sorted(ESC50.glob("*.flac"))[:200:40] if ESC50.is_dir() else []
    if not files:
        pytest.skip(f"ESC-50 audio not found at {ESC50}")
    return [sf.read(f, dtype="float32")[0] for f in files]


PARITY = [
    (FeatureParams(), False),
    (FeatureParams(scale="mel_htk"), True),
    (FeatureParams(spectrum="magnitude", n_bands=40, f_min_hz=0.0, f_max_hz=8000.0), False),
    (FeatureParams(window_samples=512, hop_samples=256, n_fft=1024), False),
]


@pytest.mark.parametrize(("params", "htk"), PARITY, ids=["slaney", "htk", "magnitude40", "win512"])
def test_librosa_parity_synthetic(params: FeatureParams, htk: bool) -> None:
    x = np.concatenate([_noise_and_tones(), np.zeros(3000, np.float32), 1e-4 * _noise_and_tones(0.5, 3)])
    ours = compute(x, params)
    ref = _librosa_db(x, params, htk)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3


def test_librosa_parity_real_clips() -> None:
    worst = 0.0
    for clip in _real_clips():
        ours = compute(clip, FeatureParams())
        worst = max(worst, float(np.abs(ours - _librosa_db(clip, FeatureParams(), htk=False)).max()))
    assert worst < 1e-3


def test_db_is_clamped_to_documented_range() -> None:
    p = FeatureParams(db_floor=-80.0, db_ceiling=10.0)
    x = np.concatenate([np.zeros(4000), np.ones(4000), 0.999 * np.sign(np.sin(np.arange(8000)))])
    frames = compute(x, p)
    assert frames.min() == -80.0
    assert frames.max() == 10.0


def test_fixed_reference_not_per_clip_max() -> None:
    # The same sound 20 dB quieter must come out 20 dB lower, not renormalised.
    x = _noise_and_tones()
    loud, quiet = compute(x, FeatureParams()), compute(x * 0.1, FeatureParams())
    above_floor = quiet > -90
    np.testing.assert_allclose((loud - quiet)[above_floor], 20.0, atol=1e-3)


@pytest.mark.parametrize("scale", sorted(scales.SCALES))
def test_every_scale_covers_its_range(scale: str) -> None:
    p = FeatureParams(scale=scale, n_bands=24)  # type: ignore[arg-type]
    fb = features.filterbank(p)
    assert fb.shape == (257, 24)
    assert (fb.sum(axis=0) > 0).all(), "every band has weight"
    edges = scales.band_edges_hz(scale, 125.0, 7500.0, 24)
    assert edges[0] == pytest.approx(125.0) and edges[-1] == pytest.approx(7500.0)
    assert np.all(np.diff(edges) > 0)


def test_scales_round_trip() -> None:
    hz = np.array([50.0, 125.0, 999.0, 1000.0, 1001.0, 4000.0, 7500.0])
    for to_warped, to_hz in scales.SCALES.values():
        np.testing.assert_allclose(to_hz(to_warped(hz)), hz, rtol=1e-9)


def test_scales_differ_where_expected() -> None:
    # Mel/Bark/ERB give low frequencies more bands than linear spacing; 'log' the most.
    low = {s: int((scales.band_edges_hz(s, 125.0, 7500.0, 64) < 1000).sum()) for s in scales.SCALES}
    assert low["log"] > low["erb"] > low["mel_htk"]
    assert all(n > 64 * (1000 - 125) / (7500 - 125) for n in low.values())


def test_tone_lands_in_its_band() -> None:
    p = FeatureParams()
    t = np.arange(16000) / 16000
    frames = compute(0.5 * np.sin(2 * np.pi * 2000 * t), p)
    edges = scales.band_edges_hz(p.scale, p.f_min_hz, p.f_max_hz, p.n_bands)
    centre = int(np.argmin(np.abs(edges[1:-1] - 2000)))
    assert abs(int(frames.mean(axis=0).argmax()) - centre) <= 1


def test_fingerprint_is_stable_and_sensitive() -> None:
    a = FeatureParams()
    assert a.fingerprint() == FeatureParams().fingerprint()
    assert len(a.fingerprint()) == 16
    for change in ({"n_bands": 65}, {"scale": "bark"}, {"db_floor": -90.0}, {"smoothing": "median"}):
        assert dataclasses.replace(a, **change).fingerprint() != a.fingerprint()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_fft": 256}, "n_fft"),
        ({"f_max_hz": 9000.0}, "f_max_hz"),
        ({"db_floor": 50.0}, "db_floor"),
        ({"smoothing_bands": 4}, "odd"),
        ({"scale": "log", "f_min_hz": 0.0}, "log"),
    ],
)
def test_impossible_params_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureParams(**kwargs)  # type: ignore[arg-type]


def test_smoothing_reduces_isolated_noise() -> None:
    rng = np.random.default_rng(5)
    x = (0.01 * rng.standard_normal(32000)).astype(np.float32)
    plain = compute(x, FeatureParams())
    median = compute(x, FeatureParams(smoothing="median", smoothing_frames=5))
    gauss = compute(x, FeatureParams(smoothing="gaussian", smoothing_frames=5))
    assert median[10:].std(axis=0).mean() < 0.7 * plain[10:].std(axis=0).mean()
    assert gauss[10:].std(axis=0).mean() < 0.7 * plain[10:].std(axis=0).mean()


# --- window -> model input --------------------------------------------------


def test_normalise_maps_db_range_to_unit_interval() -> None:
    p = FeatureParams()
    spec = InputSpec(frames=2, bands=3)
    window = np.array([[p.db_floor] * 3, [p.db_ceiling] * 3], dtype=np.float32)
    x = features.normalise(window, p, spec)
    assert x.shape == (1, 2, 3, 3) and x.dtype == np.float32
    assert np.all(x[0, 0] == -1.0) and np.all(x[0, 1] == 1.0)
    assert np.array_equal(x[..., 0], x[..., 2]), "replicate copies the image into every plane"


def test_deltas_mode_stacks_time_differences() -> None:
    p = FeatureParams()
    spec = InputSpec(frames=4, bands=2, channel_mode="deltas")
    window = np.array([[-100, -100], [-30, -30], [40, 40], [40, 40]], dtype=np.float32)
    x = features.normalise(window, p, spec)[0]
    assert np.allclose(x[0, :, 1], 0.0), "first delta is zero (causal)"
    assert np.allclose(x[1, :, 1], x[1, :, 0] - x[0, :, 0])
    assert np.allclose(x[2, :, 2], x[2, :, 1] - x[1, :, 1])


def test_int8_quantisation_rounds_and_saturates() -> None:
    p = FeatureParams()
    spec = InputSpec(frames=1, bands=4, channels=1, dtype="int8", scale=2 / 255, zero_point=-1)
    window = np.array([[p.db_floor, p.db_ceiling, -30.0, 500.0]], dtype=np.float32)
    q = features.to_input(window, p, spec)
    assert q.dtype == np.int8
    expected = np.clip(np.rint(features.normalise(window, p, spec) / np.float32(spec.scale)) - 1, -128, 127)
    assert np.array_equal(q, expected.astype(np.int8))
    assert q[0, 0, 0, 0] == -128, "floor maps to the lowest code"
    assert q[0, 0, 3, 0] == 127, "out-of-range values saturate"


def test_window_rule() -> None:
    assert features.window_ends(10, window=4, hop=2) == [4, 6, 8, 10]
    assert features.window_ends(10, window=4, hop=3) == [6, 9]
    assert features.window_ends(3, window=4, hop=2) == [3], "short signals still get one inference"
    assert features.window_ends(0, window=4, hop=2) == []
    frames = np.arange(6, dtype=np.float32).reshape(3, 2)
    padded = features.window_at(frames, 3, 5, FeatureParams())
    assert padded.shape == (5, 2) and np.all(padded[:2] == -100.0) and np.array_equal(padded[2:], frames)
