"""Augmentation, threshold tuning, metrics, report writing, config errors, model surgery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from support.shared import ROOT, shared_dir

from edge.features import FeatureParams
from edge.schema import ConfigError
from training import cli
from training.data import augment
from training.evaluate import evaluate, report
from training.recipe.config import AugmentConfig
from training.recipe.load import load, parse

P = FeatureParams()


def _window(level: float = -20.0, frames: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(level + rng.normal(0, 5, (frames, P.n_bands)), P.db_floor, P.db_ceiling).astype(np.float32)


def test_gain_shifts_sound_keeps_silence_and_clamps() -> None:
    w = _window()
    w[:5] = P.db_floor
    up = augment.gain(w, 6.0, P)
    assert np.all(up[:5] == P.db_floor)
    np.testing.assert_allclose(up[5:], np.clip(w[5:] + 6.0, P.db_floor, P.db_ceiling), atol=1e-5)
    assert augment.gain(_window(35.0), 20.0, P).max() == P.db_ceiling


def test_noise_is_added_in_the_power_domain() -> None:
    w = _window(0.0)
    noise = np.full_like(w, -10.0)
    mixed = augment.add_noise(w, noise, snr_db=0.0, params=P)
    assert np.all(mixed >= w - 1e-4)  # adding power never lowers a bin
    p = lambda x: np.mean(10 ** (x / 10))  # noqa: E731
    assert p(mixed) == pytest.approx(2 * p(w), rel=1e-3)  # 0 dB SNR doubles the mean power


def test_spec_masks_set_spans_to_the_floor() -> None:
    cfg = AugmentConfig(time_masks=1, time_mask_frames=10, freq_masks=1, freq_mask_bands=8)
    rng = np.random.default_rng(3)
    w = _window(10.0)
    masked = [augment.spec_mask(w, cfg, P.db_floor, rng) for _ in range(20)]
    assert any((m == P.db_floor).sum() > 0 for m in masked)
    for m in masked:
        floor = m == P.db_floor
        assert floor.sum() <= 10 * P.n_bands + 8 * w.shape[0]
        assert np.all(m[~floor] == w[~floor])


def test_shift_is_circular_and_bounded() -> None:
    w = _window()
    s = augment.shift(w, 3, np.random.default_rng(1))
    assert any(np.array_equal(s, np.roll(w, k, axis=0)) for k in range(-3, 4))


def test_mixup_blends_inputs_and_targets_alike() -> None:
    aug = augment.Augmenter(AugmentConfig(mixup_alpha=0.4), P, 48)
    rng = np.random.default_rng(2)
    windows = np.stack([np.full((48, P.n_bands), v, np.float32) for v in (-80.0, 0.0, 20.0, 30.0)])
    targets = np.eye(4, dtype=np.float32)
    mixed, soft = aug.mixup(windows, targets, rng)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(soft.max(axis=1) >= 0.5)
    values = np.array([-80.0, 0.0, 20.0, 30.0])
    np.testing.assert_allclose(mixed[:, 0, 0], soft @ values, rtol=1e-4, atol=1e-3)


def test_active_ends_skip_digital_silence() -> None:
    frames = np.full((200, P.n_bands), P.db_floor, np.float32)
    frames[150:160] = -20.0
    ends = augment.active_ends(frames, 48, P.db_floor)
    assert ends.min() == 151 and ends.max() == 200  # every window holds a loud frame
    crops = augment.random_crops([ends], [0], 10, np.random.default_rng(0))
    assert all(151 <= c.end <= 200 for c in crops)


def test_active_ends_can_skip_a_short_sounds_room_tone() -> None:
    """``augment.active_within_db``: a window of room tone 40 dB under a short sound is not a crop of it."""
    frames = np.full((300, P.n_bands), -50.0, np.float32)  # room tone, well above the floor
    frames[150:160] = 0.0  # the sound: 10 frames
    assert len(augment.active_ends(frames, 48, P.db_floor)) == 300 - 48 + 1, "above the floor: every window"
    ends = augment.active_ends(frames, 48, P.db_floor, within_db=30.0, min_frames=5)
    assert ends.min() == 155 and ends.max() == 203  # windows [end - 48, end) holding 5 of frames 150-159
    assert augment.active_ends(frames, 48, P.db_floor, within_db=60.0, min_frames=5).size == 300 - 48 + 1


def test_augmenter_window_has_the_device_shape() -> None:
    frames = np.clip(np.random.default_rng(4).normal(-30, 10, (300, P.n_bands)), P.db_floor, P.db_ceiling)
    aug = augment.Augmenter(AugmentConfig(), P, 96, noise=[frames.astype(np.float32)])
    w = aug.window_of(frames.astype(np.float32), 150, np.random.default_rng(5))
    assert w.shape == (96, P.n_bands) and w.dtype == np.float32
    assert P.db_floor <= w.min() and w.max() <= P.db_ceiling


def test_thresholds_maximise_validation_f1() -> None:
    truth = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([[0.9, 0.1], [0.7, 0.3], [0.42, 0.58], [0.3, 0.7], [0.2, 0.8], [0.33, 0.67]], np.float32)
    t = evaluate.tune_thresholds(scores, truth, ["a", "b"])
    assert 0.33 < t["a"] <= 0.42  # keeps the 0.42 positive, rejects the 0.33 negative
    assert 0.58 < t["b"] <= 0.67
    assert evaluate.tune_thresholds(scores, np.zeros(6, int), ["a", "b"])["b"] == 0.5  # no positives


def test_classification_metrics() -> None:
    r = evaluate.classification(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
    assert r["accuracy"] == 0.75
    assert r["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert r["precision"] == [1.0, 0.5, 1.0] and r["recall"] == [0.5, 1.0, 1.0]
    assert r["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    c = evaluate.compare(np.eye(3)[[0, 1, 1, 2]], np.eye(3)[[0, 0, 1, 2]], np.array([0, 0, 1, 2]), 3)
    assert c["top1_agreement"] == 0.75 and c["int8_drop_points"] == pytest.approx(-25.0)  # int8 better here


def test_report_files(tmp_path: Path) -> None:
    labels = ["dog", "rain", "siren"]
    cm = [[3, 1, 0], [0, 4, 0], [1, 0, 3]]
    report.plot_confusion(cm, labels, tmp_path / report.CONFUSION_PNG, "test")
    emb = np.random.default_rng(0).normal(size=(12, 8))
    report.plot_embedding(emb, [0, 1, 2] * 4, labels, tmp_path / report.EMBEDDING_PNG)
    (tmp_path / "history_head.csv").write_text("epoch,accuracy,loss,val_clip_acc\n0,0.1,3.0,0.2\n1,0.2,2.5,0.3\n")
    (tmp_path / "history_finetune.csv").write_text("epoch,accuracy,loss,val_clip_acc\n0,0.5,1.0,0.6\n")
    history = report.read_history(tmp_path)
    assert [r["phase"] for r in history] == [1, 1, 2]
    report.plot_curves(history, tmp_path / report.CURVES_PNG, "crops, background")
    for name in (report.CONFUSION_PNG, report.EMBEDDING_PNG, report.CURVES_PNG):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    q = evaluate.classification(np.array([0, 1, 2]), np.array([0, 1, 1]), 3)
    doc = {"name": "m", "version": "1.0.0", "headline": {"test_clips": 3, "hop_frames": 5, "int8_clip_accuracy": 0.67}}
    doc |= {"test": {"int8": q}, "thresholds": dict.fromkeys(labels, 0.5)}
    md = report.markdown(doc, labels)
    assert "| siren | 0.00 | 0.00 |" in md and "int8_clip_accuracy | 0.67" in md
    report.write_json(doc, tmp_path / "report.json")
    assert '"int8_clip_accuracy": 0.67' in (tmp_path / "report.json").read_text()


def test_curves_name_only_what_the_run_has() -> None:
    """The YAMNet recipe logs no training accuracy; only a QAT phase validates simulated int8; the legend says
    which augmentations the training windows went through."""
    yamnet = [{"loss": 0.1, "val_clip_acc": 0.8, "phase": 1.0}, {"loss": 0.05, "val_clip_acc": 0.9, "phase": 2.0}]
    assert list(report.curve_series(yamnet, "crops, background")) == ["validation clip accuracy"]
    imagenet = [{"accuracy": 0.5, "val_clip_acc": 0.6, "phase": 2.0}]
    imagenet += [{"accuracy": 0.7, "val_clip_acc": 0.7, "phase": 3.0}]
    assert list(report.curve_series(imagenet, AugmentConfig().described())) == [
        "training window accuracy (augmented: crops, time shift, gain, SpecAugment, mixup, background)",
        "validation clip accuracy (QAT phase: simulated int8)",
    ]
    off = AugmentConfig(time_crop=False, time_shift_frames=0, gain_db=0, time_masks=0, freq_masks=0, mixup_alpha=0,
                        noise_from_background=False)  # fmt: skip
    assert off.described() == "none"


def test_pca_finds_the_main_direction() -> None:
    x = np.outer(np.linspace(-1, 1, 20), [3.0, 4.0, 0.0])
    xy = report.pca_2d(x)
    assert np.allclose(np.abs(xy[:, 0]), np.abs(np.linspace(-1, 1, 20)) * 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fit:\n  epochs: 3\n", "bad.yaml: fit.epochs: unknown key"),
        ("fit:\n  batch_size: 0\n", "bad.yaml: fit.batch_size: expected an integer 1..65536 (windows), got 0"),
        ("model:\n  arch: resnet\n", "bad.yaml: model.arch: expected one of 'mobilenet', "),
        ("data: [1, 2\n", "bad.yaml: line 2, column 1: invalid YAML"),
        ("data:\n  train_folds: [1, 2]\n  test_folds: [2]\n", "bad.yaml: data.test_folds: fold(s) [2] are also"),
        ("features:\n  n_fft: 100\n", "bad.yaml: features: n_fft (100) must be >= window_samples (400)"),
        ("model: {arch: mobilenet_v2}\nfit: {qat_epochs: 3}\n", "bad.yaml: fit.qat_epochs: supported for model.arch"),
        ("fit: {average_epochs: 3}\n", "bad.yaml: fit.average_epochs: supported for model.arch yamnet only"),
        ("fit: {soup_seeds: [1, 2]}\n", "bad.yaml: fit.soup_seeds: supported for model.arch yamnet only"),
        ("fit: {compete_weight: 0.1}\n", "bad.yaml: fit.compete_weight: supported for model.output sigmoid only"),
        ("fit: {soup_seeds: [3]}\n", "bad.yaml: fit.soup_seeds: expected two or more different seeds >= 0, got [3]"),
        ("fit: {soup_seeds: [2, 2]}\n", "bad.yaml: fit.soup_seeds: expected two or more different seeds"),
        ("calibration: {noisy_snr_db: [20, 0]}\n", "bad.yaml: calibration.noisy_snr_db: expected [low, high]"),
    ],
)
def test_config_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert cli.main(["fit", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("auricle-train: ") and err.count("\n") == 1 and message in err


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["run", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: cannot read" in capsys.readouterr().err


def test_config_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "train.yaml"
    path.write_text("data:\n  manifest: ../data/meta.csv\noutput: out\n")
    loaded = load(path)
    assert loaded.path(loaded.config.data.manifest) == (tmp_path / "data" / "meta.csv").resolve()
    assert loaded.output == (tmp_path / "sub" / "out").resolve()
    assert loaded.text == path.read_text()


def test_shipped_config_parses() -> None:
    configs = ROOT / "configs"
    loaded = load(configs / "esc50.yaml")
    c = loaded.config
    assert c.data.test_folds == (4,) and c.model.arch == "yamnet" and c.bundle.version == "5.3.0"
    assert c.model.weights.endswith("yamnet_spectra_in.tflite") and c.window.window_frames == 96
    assert c.model.output == "sigmoid" and c.fit.background_fraction > 0 and len(c.data.background) == 2
    assert c.fit.lwf_weight > 0 and not c.teacher.path  # the kept AudioSet head is the teacher
    assert c.audioset.confirm.mapping == str(configs / "esc50_audioset.csv") and c.audioset.confirm.threshold == 0.03
    assert (c.audioset.confirm.slope, c.audioset.confirm.keep_at) == (4.0, 0.97)  # the confirmation, fitted
    fitted = c.audioset.confirm.fit_thresholds and c.audioset.confirm.fit_slopes
    assert fitted and c.audioset.evidence.unseen_fraction == 0.25  # fitted on background kept from the network
    assert c.calibration.min_threshold == 0.95 and c.audioset.veto.classes == ()  # 5.3.0: the written rule's floor
    assert (c.augment.mixup_alpha, c.augment.time_masks, c.augment.gain_db) == (0.0, 0, 0.0)  # 5.1.0: none
    assert c.augment.noise_from_background  # the open world's background under labelled windows stays
    five = load(configs / "experiments" / "esc50_5.0.0.yaml").config  # what the older AudioSet experiments extend
    assert five.bundle.version == "5.0.0" and five.augment.mixup_alpha == 0.2 and five.calibration.min_threshold == 0.6
    five_two = load(configs / "experiments" / "esc50_5.2.0.yaml").config  # what the experiments after 5.2.0 extend
    assert five_two.bundle.version == "5.2.0" and five_two.calibration.min_threshold == 0.8
    assert five_two.audioset.confirm == c.audioset.confirm  # 5.3.0 is 5.2.0 with the floor raised, nothing else
    five_one = load(configs / "experiments" / "esc50_5.1.0.yaml").config  # what the 5.1.0-era experiments extend
    pair = (five_one.audioset.confirm.threshold, five_one.audioset.confirm.slope)
    assert five_one.bundle.version == "5.1.0" and pair == (0.1, 2.0)
    assert not five_one.audioset.confirm.fit_thresholds and five_one.audioset.evidence.unseen_fraction == 0.0
    assert five_one.calibration.min_threshold == 0.8
    assert [x.name for x in c.audioset.labels if x.enabled_by_default] == ["smoke_alarm"]
    experiments = configs / "experiments"
    v3 = load(experiments / "esc50_v3.yaml").config  # the 3.0.0 recipe, the ImageNet experiments' base
    assert v3.model.arch == "mobilenet" and v3.model.upsample == 2 and v3.bundle.version == "3.0.0"
    assert v3.teacher.path.endswith("yamnet_spectra_in.tflite") and not v3.audioset.confirm.mapping
    for name in ("esc50_v2.yaml", "esc50_96x64.yaml", "esc50_up2.yaml"):
        assert load(experiments / name).config.model.output == "softmax"
    runner_up = load(experiments / "esc50_softmax_background.yaml").config
    assert runner_up.model.output == "softmax_background" and runner_up.model.upsample == 2
    clean_path = experiments / "esc50_clean_background.yaml"
    clean = load(clean_path).config  # only its background differs from 3.0.0
    assert clean.data.background[0].exclude and clean.bundle.version == "3.1.0"
    stated = yaml.safe_load(clean_path.read_text())
    assert set(stated) == {"extends", "output", "bundle", "data"} and set(stated["data"]) == {"background"}
    for name in ("esc50_96x64_v3.yaml", "esc50_nodistill.yaml", "esc50_96x64_sigmoid.yaml"):  # the frontier
        candidate = load(experiments / name).config
        assert candidate.model.upsample == 1 and candidate.data.background
    alone = load(experiments / "esc50_audioset.yaml").config  # the 4.0.0 network without its rule
    assert alone.model.arch == "yamnet" and not alone.audioset.confirm.mapping
    assert alone.calibration.min_threshold == 0.05


def test_model_unfreezes_top_blocks_and_counts_macs() -> None:
    from edge.features import InputSpec
    from training.model import model
    from training.recipe.config import NetworkConfig

    spec = InputSpec(frames=32, bands=32)
    m = model.build(NetworkConfig(weights="none"), spec, 5, bn_momentum=0.9)
    base = m.get_layer(model.BASE_NAME)
    assert not any(layer.trainable for layer in base.layers)
    assert all(layer.momentum == 0.9 for layer in base.layers if "bn" in layer.name)
    n = model.unfreeze_top(m, 2)
    trainable = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert n == len(trainable) and "conv_pw_13" in trainable and "conv_dw_12" in trainable
    assert "conv_pw_11" not in trainable
    macs = model.count_macs(m)
    # first conv alone: 16x16 output, 8 filters, 3x3x3 kernel
    assert macs > 16 * 16 * 8 * 27 and macs < 5_000_000


def test_cross_validation_folds_hold_out_each_fold(tmp_path: Path) -> None:
    from training import crossval

    path = tmp_path / "cv.yaml"
    path.write_text("data:\n  train_folds: [1, 2]\n  test_folds: [3]\noutput: out\nbundle: {path: x.auricle}\n")
    loaded = load(path)
    fold = crossval.fold_config(loaded, 2)
    assert fold.config.data.test_folds == (2,) and fold.config.data.train_folds == ()
    assert fold.output == tmp_path / "out" / "cv" / "fold_2"
    assert fold.config.bundle.path == ""  # each fold's bundle stays in its own folder
    s = crossval.summarise({1: {"float_clip_accuracy": 0.8, "int8_clip_accuracy": 0.7},
                            2: {"float_clip_accuracy": 0.9, "int8_clip_accuracy": 0.9}})  # fmt: skip
    assert s["int8_mean"] == pytest.approx(0.8) and s["int8_std"] == pytest.approx(0.1)
    assert "heldout_false_per_hour" not in s  # no fold measured it


def test_fold_fingerprint_ignores_settings_left_at_their_default(tmp_path: Path) -> None:
    from training import crossval

    def prints(text: str) -> str:
        path = tmp_path / "c.yaml"
        path.write_text(text)
        return crossval.fingerprint(crossval.fold_config(load(path), 1))

    plain = prints("data: {background: [{path: bg}]}\noutput: out\n")
    assert prints("data: {background: [{path: bg, exclude: []}]}\noutput: out\nfit: {seed: 1}\n") == plain
    assert prints("data: {background: [{path: bg, exclude: ['*/rain.wav']}]}\noutput: out\n") != plain
    assert prints("data: {background: [{path: bg}]}\noutput: out\nfit: {seed: 2}\n") != plain
    assert prints("data: {background: [{path: other}]}\noutput: out\n") != plain


def test_cross_validation_pools_the_held_out_false_alarms(tmp_path: Path) -> None:
    from training import crossval

    for fold, (events, recall) in {1: (3, 0.5), 2: (1, 0.7)}.items():
        (tmp_path / str(fold)).mkdir()
        report = {"heldout_background": {"false_events": events, "hours": 0.5, "per_label": {"frog": events}},
                  "calibration": {"recall": recall}}  # fmt: skip
        (tmp_path / str(fold) / "report.json").write_text(json.dumps(report))
    acc = {"float_clip_accuracy": 0.8, "int8_clip_accuracy": 0.7}
    per_fold = {k: acc | crossval.open_world(tmp_path / str(k)) for k in (1, 2)}
    assert per_fold[1]["heldout_false_per_label"] == {"frog": 3}
    s = crossval.summarise(per_fold)
    assert (s["heldout_false_events"], s["heldout_hours"], s["heldout_false_per_hour"]) == (4, 1.0, 4.0)
    assert s["val_event_recall_mean"] == pytest.approx(0.6)
    assert crossval.open_world(tmp_path / "missing") == {}
    assert "heldout_false_events" not in crossval.summarise(per_fold | {3: acc})  # one fold without: no pooled rate


def test_frozen_bn_blocks_keep_imagenet_statistics() -> None:
    import keras

    from edge.features import InputSpec
    from training.model import model as model_mod
    from training.recipe.config import NetworkConfig

    model = model_mod.build(NetworkConfig(weights="none"), InputSpec(frames=32, bands=32), 4, 0.9)
    model_mod.unfreeze_top(model, 13, frozen_bn_blocks=5)
    base = model.get_layer(model_mod.BASE_NAME)
    blocks = model_mod.block_of_layers(base)
    bn = [(b, layer.trainable) for layer, b in zip(base.layers, blocks, strict=True)
          if isinstance(layer, keras.layers.BatchNormalization)]  # fmt: skip
    assert bn and all(not trainable for b, trainable in bn if b <= 5)
    assert all(trainable for b, trainable in bn if b > 5)
    convs = [layer.trainable for layer in base.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert all(convs), "frozen statistics do not freeze the convolutions"


def test_a_bundle_with_a_confirmation_needs_yamnets_class_map(tmp_path: Path) -> None:
    mapping = ROOT / "configs" / "esc50_audioset.csv"
    text = f"audioset: {{confirm: {{mapping: {mapping}, class_map: {tmp_path / 'none.csv'}, threshold: 0.1}}}}\n"
    cfg = parse(text, "t.yaml")
    with pytest.raises(ConfigError, match=r"^audioset\.confirm\.class_map: no such file: .*none\.csv$"):
        evaluate._confirm(cfg, ["dog"], evaluate._class_names(cfg))
    classes = shared_dir() / "peers" / "yamnet_class_map.csv"
    if classes.is_file():
        cfg = parse(text.replace(str(tmp_path / "none.csv"), str(classes)), "t.yaml")
        got = evaluate._confirm(cfg, ["dog", "can_opening"], evaluate._class_names(cfg))
        assert got.threshold == 0.1 and list(got.classes) == ["dog"] and 69 in got.classes["dog"]  # 69: Dog
