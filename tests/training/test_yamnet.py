"""training.model.yamnet: YAMNet's front end through edge.features, checked against an independent NumPy
reference, and the int8 peer's scores and embedding."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from support.shared import shared_dir

from edge.model.runtime import interpreter_class
from training.model import yamnet

PEERS = shared_dir() / "peers"
ESC50 = shared_dir() / "data" / "esc50"
DOG_CLASSES = {"Dog", "Bark", "Bow-wow", "Yip", "Howl", "Growling", "Whimper (dog)", "Canidae, dogs, wolves"}

Array = npt.NDArray[np.float64]


def _htk_mel(hz: Array) -> Array:
    return 1127.0 * np.log1p(hz / 700.0)


def _tf_mel_matrix(*, linear_in_mel: bool) -> Array:
    """(257, 64) peak-1 HTK triangles, 125-7500 Hz, as tf.signal.linear_to_mel_weight_matrix builds them
    (linear in mel) or drawn linear in Hz on the same edges (edge.scales' construction)."""
    fft_hz = np.linspace(0.0, 8000.0, 257)
    edges = np.linspace(_htk_mel(np.array(125.0)), _htk_mel(np.array(7500.0)), 66)
    if linear_in_mel:
        axis = _htk_mel(fft_hz)[:, None]
    else:
        axis, edges = fft_hz[:, None], 700.0 * np.expm1(edges / 1127.0)
    rising = (axis - edges[:-2]) / (edges[1:-1] - edges[:-2])
    falling = (edges[2:] - axis) / (edges[2:] - edges[1:-1])
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0] = 0.0  # TF zeroes the DC bin
    return weights


def _reference(x: Array, *, linear_in_mel: bool = True) -> Array:
    """YAMNet's front end written out: framed, periodic Hann, |rfft 512|, mel, log(mel + 0.001)."""
    n = 1 + (len(x) - 400) // 160
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(400) / 400)
    frames = np.stack([x[i * 160 : i * 160 + 400] * window for i in range(n)])
    magnitude = np.abs(np.fft.rfft(frames, 512))
    return np.log(magnitude @ _tf_mel_matrix(linear_in_mel=linear_in_mel) + 0.001)


def _signals() -> dict[str, Array]:
    rng = np.random.default_rng(0)
    t = np.arange(2 * yamnet.FRIGATE_HOP_SAMPLES) / 16000
    return {
        "noise": 0.1 * rng.standard_normal(len(t)),
        "sine": 0.5 * np.sin(2 * np.pi * 1000 * t) + 0.01 * rng.standard_normal(len(t)),
        "quiet": 1e-4 * rng.standard_normal(len(t)),
    }


@pytest.fixture(scope="module")
def model() -> yamnet.Yamnet:
    if not (PEERS / "yamnet_spectra_in.tflite").is_file():
        pytest.skip(f"YAMNet peer model not found in {PEERS} (the shared material)")
    return yamnet.Yamnet(
        yamnet.YamnetParams(
            model_path=PEERS / "yamnet_spectra_in.tflite", class_map_path=PEERS / "yamnet_class_map.csv"
        )
    )


@pytest.mark.parametrize("name", ["noise", "sine", "quiet"])
def test_front_end_matches_reference_with_the_same_triangles(name: str) -> None:
    x = _signals()[name]
    got = yamnet.patches(x)
    assert got.shape == (2, 96, 64)
    np.testing.assert_allclose(got[1], _reference(x[15600:], linear_in_mel=False), atol=1e-5)


@pytest.mark.parametrize("name", ["noise", "sine", "quiet"])
def test_front_end_is_close_to_tensorflows_mel_triangles(name: str) -> None:
    # edge.scales draws triangles linear in Hz, TF linear in mel: log-mel values differ by up to ~0.013
    # on ESC-50 (measured over 200 fold-4 patches), median ~1e-3.
    x = _signals()[name]
    diff = np.abs(yamnet.patches(x)[0] - _reference(x[:15600]))
    assert diff.max() < 0.02 and np.median(diff) < 2e-3


def test_patches_at_a_frame_aligned_hop_equal_the_per_segment_path() -> None:
    x = _signals()["noise"]
    sliced = yamnet.patches(x, hop_samples=7680)
    per_segment = yamnet.patches(x, hop_samples=7681)
    assert len(sliced) == 3
    np.testing.assert_array_equal(sliced[0], per_segment[0])
    np.testing.assert_allclose(sliced[1], yamnet.patches(x[7680:])[0], atol=1e-6)


def test_short_audio_gives_no_patch() -> None:
    assert yamnet.patches(np.zeros(15599, dtype=np.float32)).shape == (0, 96, 64)


@pytest.mark.parametrize("name", ["noise", "sine"])
def test_scores_and_embedding(model: yamnet.Yamnet, name: str) -> None:
    scores, embedding = model.infer(yamnet.patches(_signals()[name])[0])
    assert scores.shape == (521,) and embedding.shape == (1024,)
    assert np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 1))
    assert np.all(np.isfinite(embedding)) and embedding.std() > 0
    assert len(model.class_names) == 521 and model.class_names[0] == "Speech"
    assert model.preserves_tensors


def test_embedding_follows_the_input(model: yamnet.Yamnet) -> None:
    signals = _signals()
    _, noise = model.infer(yamnet.patches(signals["noise"])[0])
    _, sine = model.infer(yamnet.patches(signals["sine"])[0])
    assert not np.array_equal(noise, sine)


def test_dog_clip_is_heard_as_a_dog(model: yamnet.Yamnet) -> None:
    sf = pytest.importorskip("soundfile")
    if not (ESC50 / "esc50.csv").is_file():
        pytest.skip(f"ESC-50 not found in {ESC50} (the shared material)")
    with (ESC50 / "esc50.csv").open(newline="") as fh:
        dog = next(row["filename"] for row in csv.DictReader(fh) if row["category"] == "dog")
    samples, rate = sf.read(ESC50 / "audio" / dog, dtype="float32")
    assert rate == 16000
    mean = np.mean([model.infer(p)[0] for p in yamnet.patches(samples)], axis=0)
    top5 = {model.class_names[i] for i in np.argsort(mean)[::-1][:5]}
    assert top5 & DOG_CLASSES, top5


def test_runtime_without_preserve_option_still_scores(
    model: yamnet.Yamnet, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real, _ = interpreter_class()

    def old_runtime(**kwargs: object) -> object:
        if "experimental_preserve_all_tensors" in kwargs:
            raise TypeError("unexpected keyword argument 'experimental_preserve_all_tensors'")
        return real(**kwargs)

    monkeypatch.setattr(yamnet, "interpreter_class", lambda: (old_runtime, "old-runtime"))
    fallback = yamnet.Yamnet(model.params)
    scores, embedding = fallback.infer(yamnet.patches(_signals()["noise"])[0])
    assert not fallback.preserves_tensors and "cannot preserve" in caplog.text
    assert embedding.shape == (1024,) and np.all(np.isnan(embedding))
    np.testing.assert_array_equal(scores, model.infer(yamnet.patches(_signals()["noise"])[0])[0])


def test_the_mapping_reads_either_header_and_names_what_is_wrong(tmp_path: Path) -> None:
    names = ["Speech", "Dog", "Bark", "Siren"]
    new = tmp_path / "new.csv"
    new.write_text("label,audioset_classes\ndog,Dog;Bark\nsiren,Siren\ncasual,\n")
    old = tmp_path / "old.csv"
    old.write_text("esc50_label,audioset_classes,note\ndog,Dog;Bark,\nsiren,Siren,\n")
    assert yamnet.read_mapping(new, names) == yamnet.read_mapping(old, names) == {"dog": [1, 2], "siren": [3]}
    typo = tmp_path / "typo.csv"
    typo.write_text("label,audioset_classes\ndog,Dgo\n")
    with pytest.raises(ValueError, match=r"typo.csv: dog: 'Dgo' is not a YAMNet class \(did you mean 'Dog'\?\)"):
        yamnet.read_mapping(typo, names)
    headless = tmp_path / "headless.csv"
    headless.write_text("name,classes\ndog,Dog\n")
    with pytest.raises(ValueError, match="expected the columns label,audioset_classes"):
        yamnet.read_mapping(headless, names)


def test_a_misspelt_label_in_the_mapping_is_an_error(tmp_path: Path) -> None:
    from edge.schema import ConfigError
    from training.evaluate.evaluate import _confirm
    from training.recipe.config import AudiosetConfig, ConfirmConfig, TrainConfig

    mapping = tmp_path / "map.csv"
    mapping.write_text("label,audioset_classes\ngunshot,Gunshot\nexplosoin,Explosion\nairplane,Aircraft\n")
    cfg = TrainConfig(audioset=AudiosetConfig(confirm=ConfirmConfig(mapping=str(mapping))))
    names = ["Gunshot", "Explosion", "Aircraft"]
    with pytest.raises(ConfigError, match=r"'explosoin' is not one of the labels \(did you mean 'explosion'\?\)"):
        _confirm(cfg, ["gunshot", "explosion", "siren"], names)
    mapping.write_text("label,audioset_classes\ngunshot,Gunshot\nairplane,Aircraft\n")  # a subset: fine
    assert _confirm(cfg, ["gunshot", "siren"], names).classes == {"gunshot": (0,)}
