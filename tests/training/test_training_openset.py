"""Background sources, open-set targets, teacher targets, the distillation model and calibration wiring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import training_data as td

from edge.features import FeatureParams, InputSpec
from edge.schema import ConfigError
from training.calibrate import replay
from training.data import augment, background
from training.data.background import Background, Part
from training.data.data import Clip, DataError, Split
from training.data.prepare import Prepared
from training.evaluate import report
from training.fit import teacher, windows
from training.model import model as model_mod
from training.recipe.config import (
    AugmentConfig,
    BackgroundSource,
    DataConfig,
    FitConfig,
    NetworkConfig,
    TeacherConfig,
    TrainConfig,
    WindowConfig,
)
from training.recipe.load import load

P = FeatureParams()


# --- background sources ---------------------------------------------------------------------------


def test_folder_source_splits_by_top_level_subfolder(tmp_path: Path) -> None:
    root = td.noise_folder(tmp_path / "bg", per_part=2)
    files = background.list_files(BackgroundSource(path=str(root), report_fraction=0.0), root)
    assert sorted(p.name for p in files["train"]) == ["loose.wav", "noise_0.wav", "noise_1.wav"]
    assert [p.parent.name for p in files["calibrate"]] == ["calibrate", "calibrate"]
    loose_to_calibrate = background.list_files(
        BackgroundSource(path=str(root), split="calibrate", report_fraction=0.0), root
    )
    assert len(loose_to_calibrate["train"]) == 2 and len(loose_to_calibrate["calibrate"]) == 3


def test_manifest_source_uses_its_split_column(tmp_path: Path) -> None:
    root = td.noise_folder(tmp_path / "bg", per_part=1)
    rows = [{"filename": "train/noise_0.wav", "split": "fit"}, {"filename": "calibrate/noise_0.wav", "split": "hold"},
            {"filename": "loose.wav", "split": "other"}]  # fmt: skip
    manifest = td.write_manifest(root / "bg.csv", rows)
    src = BackgroundSource(path=str(manifest), train_split="fit", calibrate_split="hold", report_fraction=0.0)
    files = background.list_files(src, manifest)
    assert [p.name for p in files["train"]] == ["noise_0.wav"] and files["train"][0].parent.name == "train"
    assert [p.parent.name for p in files["calibrate"]] == ["calibrate"]  # 'other' is in neither part
    plain = td.write_manifest(root / "plain.csv", [{"filename": "loose.wav"}])
    assert len(background.list_files(BackgroundSource(path=str(plain)), plain)["train"]) == 1
    kept_out = BackgroundSource(path=str(manifest), train_split="none", calibrate_split="hold", report_fraction=0.0)
    out = background.list_files(kept_out, manifest, evidence_fraction=0.25)  # a source out of training only
    assert not out["train"] and not out["evidence"] and [p.parent.name for p in out["calibrate"]] == ["calibrate"]


def test_exclude_leaves_label_recordings_out_of_every_part(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A recording of a label's own sound is not background: not a negative, not a false alarm."""
    root = td.noise_folder(tmp_path / "bg", per_part=2)
    src = BackgroundSource(
        path=str(root), report_fraction=0.0, exclude=("calibrate/noise_1.wav", "*/noise_0.wav", "x*")
    )
    with caplog.at_level("INFO", logger="training.data.background"):
        files = background.list_files(src, root)
    assert [p.name for p in files["train"]] == ["loose.wav", "noise_1.wav"]
    assert files["calibrate"] == [] and files["report"] == []
    assert "left out 3 file(s) by exclude" in caplog.text and "matched no file: x*" in caplog.text
    rows = [
        {"filename": "train/noise_0.wav", "split": "train"},
        {"filename": "calibrate/noise_0.wav", "split": "calibrate"},
    ]
    manifest = td.write_manifest(root / "bg.csv", rows)
    listed = background.list_files(BackgroundSource(path=str(manifest), exclude=("calibrate/*",)), manifest)
    assert [p.parent.name for p in listed["train"]] == ["train"] and not listed["calibrate"] and not listed["report"]


def test_report_part_holds_out_whole_groups(tmp_path: Path) -> None:
    """A share of the calibrate groups is kept from threshold choice; a group never straddles the two."""
    root = td.noise_folder(tmp_path / "bg", per_part=1)
    name = "calibrate/noise_0.wav"
    rows = [{"filename": name, "split": "calibrate", "group": f"speaker{i % 40}"} for i in range(400)]
    manifest = td.write_manifest(root / "bg.csv", rows)
    files = background.list_files(BackgroundSource(path=str(manifest), report_fraction=0.5), manifest)
    held = {f"speaker{i}" for i in range(40) if background.held_out(f"speaker{i}", 0.5)}
    assert 10 <= len(held) <= 30
    assert len(files["report"]) == 10 * len(held) and len(files["calibrate"]) == 10 * (40 - len(held))
    assert background.held_out("speaker3", 0.5) == background.held_out("speaker3", 0.5)
    none = background.list_files(BackgroundSource(path=str(manifest), report_fraction=0.0), manifest)
    assert not none["report"] and len(none["calibrate"]) == 400


def test_evidence_part_keeps_whole_train_groups_from_the_network(tmp_path: Path) -> None:
    """``unseen_fraction``: a share of the train groups goes to the evidence part, drawn apart from the report's;
    calibrate and report are untouched, and a group never straddles train and evidence."""
    root = td.noise_folder(tmp_path / "bg", per_part=1)
    rows = [{"filename": "train/noise_0.wav", "split": "train", "group": f"speaker{i % 40}"} for i in range(400)]
    rows += [{"filename": "calibrate/noise_0.wav", "split": "calibrate", "group": f"speaker{i}"} for i in range(40)]
    manifest = td.write_manifest(root / "bg.csv", rows)
    source = BackgroundSource(path=str(manifest), report_fraction=0.5)
    files = background.list_files(source, manifest, 0.3)
    kept = {f"speaker{i}" for i in range(40) if background.kept_for_evidence(f"speaker{i}", 0.3)}
    assert 4 <= len(kept) <= 20
    assert len(files["evidence"]) == 10 * len(kept) and len(files["train"]) == 10 * (40 - len(kept))
    assert kept != {f"speaker{i}" for i in range(40) if background.held_out(f"speaker{i}", 0.3)}  # salted
    before = background.list_files(source, manifest)
    assert not before["evidence"] and len(before["train"]) == 400
    tiny = background.list_files(source, manifest, 1e-9)  # no group drawn: the whole group hashed lowest is kept
    assert (len(tiny["evidence"]), len(tiny["train"])) == (10, 390)
    assert (files["calibrate"], files["report"]) == (before["calibrate"], before["report"])
    folder = background.list_files(BackgroundSource(path=str(root)), root, 0.9)
    assert sorted(p.name for p in folder["evidence"] + folder["train"]) == ["loose.wav", "noise_0.wav"]
    assert folder["evidence"]  # a folder's groups are its files


def test_evidence_part_is_loaded_kept_apart_and_round_trips(tmp_path: Path) -> None:
    """Through the feature cache into ``prepared.json`` and back; the fit reads it, the network never does."""
    from training.rule import fit_background

    bg = td.background_subset(tmp_path, train=4, calibrate=1)
    if bg is None:
        pytest.skip(f"missing {td.BACKGROUND / 'background.csv'}")
    cfg = tmp_path / "c.yaml"
    head = (
        f"data: {{manifest: m.csv, audio_root: a, cache_dir: cache, background: [{{path: {bg}, audio_root: "
        f"{td.BACKGROUND}}}]}}\noutput: run\n"
    )
    cfg.write_text(head + "audioset: {evidence: {enabled: true, unseen_fraction: 0.5}}\n")
    loaded = background.load(load(cfg))
    assert loaded.evidence.paths and loaded.train.paths
    assert not set(loaded.evidence.paths) & set(loaded.train.paths)
    assert len(loaded.evidence.frames) == len(loaded.evidence.paths)
    back = background.from_json(background.to_json(loaded))
    assert back.evidence.paths == loaded.evidence.paths and back.train.paths == loaded.train.paths
    assert "kept for the evidence" in back.summary(0.01)
    wanted = load(cfg).config.audioset.evidence
    assert fit_background(back, wanted) is back.evidence
    assert fit_background(back, type(wanted)(enabled=True)) is back.train  # no share kept: the train part
    cfg.write_text(head + "audioset: {evidence: {enabled: false, unseen_fraction: 0.5}}\n")
    assert not background.load(load(cfg)).evidence.paths  # no fit, nothing kept from the network
    fit_confirm = "audioset: {confirm: {fit_thresholds: [0.1], fit_slopes: [2]}, evidence: {unseen_fraction: 0.5}}\n"
    cfg.write_text(head + fit_confirm)
    assert background.load(load(cfg)).evidence.paths == loaded.evidence.paths  # the fitted confirmation's too
    cfg.write_text(head + "audioset: {evidence: {enabled: true, unseen_fraction: 0.0001}}\n")
    tiny = background.load(load(cfg))  # a share too small to draw any group: one is kept anyway, the rest train
    assert (
        len(tiny.evidence.paths) == 1 and len(tiny.train.paths) == len(loaded.train.paths + loaded.evidence.paths) - 1
    )
    one = td.write_manifest(tmp_path / "one.csv", [{"filename": "train/noise_0.wav", "split": "train"}])
    td.noise_folder(tmp_path / "one_audio", per_part=1)
    sources = f"[{{path: {one}, audio_root: one_audio}}]"
    cfg.write_text(
        f"data: {{manifest: m.csv, audio_root: a, cache_dir: cache, background: {sources}}}\n"
        "output: run\naudioset: {evidence: {enabled: true, unseen_fraction: 0.0001}}\n"
    )
    with pytest.raises(DataError, match=r"unseen_fraction 0\.0001 kept no background train group from the network"):
        background.load(load(cfg))  # one group only: it stays the network's, and the fit has none


def test_manifest_source_errors_name_the_problem(tmp_path: Path) -> None:
    manifest = td.write_manifest(tmp_path / "bg.csv", [{"filename": "nowhere.wav", "split": "train"}])
    with pytest.raises(DataError, match=r"nowhere\.wav: background file listed in bg\.csv does not exist"):
        background.list_files(BackgroundSource(path=str(manifest)), manifest)
    named = td.write_manifest(tmp_path / "named.csv", [{"file": "x.wav"}])
    with pytest.raises(DataError, match="no column 'filename'"):
        background.list_files(BackgroundSource(path=str(named)), named)
    with pytest.raises(DataError, match=r"neither a folder nor a \.csv manifest"):
        background.list_files(BackgroundSource(path="x.txt"), tmp_path / "x.txt")


def test_background_goes_through_the_feature_cache_and_prepared_json(tmp_path: Path) -> None:
    from training.data import prepare

    root = td.noise_folder(tmp_path / "bg", per_part=1)
    manifest = td.tone_manifest(tmp_path / "tones", folds=2, per_fold=1, seconds=1.0)
    path = tmp_path / "c.yaml"
    path.write_text(
        f"data: {{manifest: {manifest}, cache_dir: cache, workers: 1, min_clips_per_class: 1, test_folds: [2],\n"
        f"  background: [{{path: {root}, report_fraction: 0}}]}}\nfit: {{background_fraction: 0.5}}\noutput: run\n"
    )
    loaded = load(path)
    p = prepare.prepare(loaded)
    assert len(p.background.train.paths) == 2 and len(p.background.calibrate.paths) == 1
    assert all(Path(f).parent.parent == tmp_path / "cache" for f in p.background.train.cache_files)
    again = prepare.load(loaded.output)
    assert again.background.calibrate.paths == p.background.calibrate.paths
    np.testing.assert_array_equal(again.background.train.frames[0], p.background.train.frames[0])
    assert "background train 2 files" in p.summary()


# --- config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fit: {background_fraction: 0.3}\n", "fit.background_fraction: needs data.background"),
        ("model: {output: softmax_background}\n", "model.output: softmax_background needs data.background"),
        ("teacher: {path: y.tflite}\nfit: {distill_weight: 0}\n", "teacher.path: set, but fit.distill_weight"),
        ("model: {output: logits}\n", "model.output: expected one of 'softmax', 'softmax_background', 'sigmoid'"),
        ("data: {background: [{split: train}]}\n", "data.background[0].path: missing"),
        ("calibration: {budget_per_hour: 0}\n", "calibration.budget_per_hour: expected a number 0.001.."),
    ],
)
def test_open_set_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load(path)


# --- targets and batches ----------------------------------------------------------------------------


def _cfg(output: str, fraction: float = 0.25, **fit: object) -> TrainConfig:
    return TrainConfig(
        model=NetworkConfig(output=output),  # type: ignore[arg-type]
        augment=AugmentConfig(mixup_alpha=0.0, noise_probability=1.0),
        fit=FitConfig(background_fraction=fraction, batch_size=8, crops_per_clip=3, **fit),  # type: ignore[arg-type]
        data=DataConfig(background=(BackgroundSource(path="bg"),)),
        window=WindowConfig(window_frames=48),
    )


@pytest.mark.parametrize(
    ("output", "background_row"),
    [("softmax", [1 / 3] * 3), ("softmax_background", [0, 0, 0, 1]), ("sigmoid", [0, 0, 0])],
)
def test_background_targets_per_output(output: str, background_row: list[float]) -> None:
    rows, bg = windows.class_targets(_cfg(output), 3)
    assert rows.shape == (3, len(background_row)) and np.array_equal(rows[:, :3], np.eye(3))
    np.testing.assert_allclose(bg, background_row)
    assert model_mod.output_labels(NetworkConfig(output=output), ["a", "b", "c"])[-1] == (  # type: ignore[arg-type]
        "_background" if output == "softmax_background" else "c"
    )


@pytest.mark.parametrize("output", ["softmax", "softmax_background", "sigmoid"])
def test_mixup_keeps_targets_valid_for_every_output(output: str) -> None:
    rows, bg = windows.class_targets(_cfg(output), 3)
    targets = np.concatenate([rows, bg[None], bg[None], rows[:1]]).astype(np.float32)
    aug = augment.Augmenter(AugmentConfig(mixup_alpha=1.0), P, 48)
    frames = np.stack([np.full((48, P.n_bands), v, np.float32) for v in range(len(targets))])
    _, soft = aug.mixup(frames, targets, np.random.default_rng(0))
    assert np.all((soft >= 0) & (soft <= 1 + 1e-6))
    if output != "sigmoid":
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    else:  # a label's target is the blend weight of the windows that hold it
        assert np.all(soft.sum(axis=1) <= 1 + 1e-6)


def _frames(n: int, level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(level, 5, (n, P.n_bands)), P.db_floor, P.db_ceiling).astype(np.float32)


def _prepared(n_bg: int = 2) -> Prepared:
    clips = [Clip(path=Path(f"{label}{i}.wav"), label=label) for label in "abc" for i in range(2)]
    frames = [_frames(120, -20.0 + 10 * k, k) for k in range(len(clips))]
    bg = Part([Path(f"bg{i}.wav") for i in range(n_bg)], [_frames(200, -40.0, 10 + i) for i in range(n_bg)],
              [f"/c/{i:064x}.npy" for i in range(n_bg)])  # fmt: skip
    split = Split(train=tuple(range(6)), val=(), test=())
    return Prepared(clips, frames, ["a", "b", "c"], split, [], [f"/c/{k:064x}.npy" for k in range(6)], Background(bg))


def test_batches_hold_the_background_share_and_its_targets() -> None:
    cfg, prepared = _cfg("softmax_background"), _prepared()
    aug = augment.Augmenter(cfg.augment, P, 48)
    source = windows.TrainWindows(cfg, prepared, aug)
    assert source.labelled_per_batch == 6 and source.steps == 3  # 18 labelled crops, 6 + 2 per batch
    batches = list(source())
    assert [len(x) for x, _ in batches] == [8, 8, 8]
    x, y = batches[0]
    assert x.shape == (8, 48, P.n_bands, 3) and y.shape == (8, 4)
    assert np.all(y[:6, 3] == 0) and np.all(y[6:] == [0, 0, 0, 1])
    assert np.all(y[:6, :3].sum(axis=1) == 1)


def test_background_share_without_background_files_is_an_error() -> None:
    cfg = _cfg("softmax_background")
    with pytest.raises(DataError, match=r"data\.background has no usable file in its train part"):
        windows.TrainWindows(cfg, _prepared(n_bg=0), augment.Augmenter(cfg.augment, P, 48))


def test_labelled_windows_get_background_mixed_under_them() -> None:
    params = P
    quiet = np.full((120, P.n_bands), -60.0, np.float32)
    loud_noise = [np.full((200, P.n_bands), -30.0, np.float32)]
    cfg = AugmentConfig(time_shift_frames=0, gain_db=0, time_masks=0, freq_masks=0, noise_probability=1.0,
                        noise_snr_db=(0.0, 0.0))  # fmt: skip
    aug = augment.Augmenter(cfg, params, 48, noise=loud_noise)
    rng = np.random.default_rng(0)
    mixed = aug.window_of(quiet, 100, rng)
    assert mixed.mean() == pytest.approx(-60.0 + 10 * np.log10(2), abs=1e-3)  # 0 dB SNR: twice the power
    assert np.array_equal(aug.window_of(quiet, 100, rng, mix=False), quiet[52:100])


def test_background_pool_is_uniform_over_time_and_skips_silence() -> None:
    silent = np.full((300, P.n_bands), P.db_floor, np.float32)
    silent[250:260] = -20.0
    pool = augment.WindowPool([_frames(60, -30, 1), silent], 48, P)
    rng = np.random.default_rng(0)
    crops = [pool.draw(rng) for _ in range(400)]
    assert all(c.end >= 251 for c in crops if c.clip == 1)
    share = np.mean([c.clip == 1 for c in crops])
    assert 0.6 < share < 0.9  # 50 active ends against 13


# --- teacher ----------------------------------------------------------------------------------------


def test_teacher_positions_and_nearest() -> None:
    ends = teacher.positions(500, 10)
    assert ends[0] == 100 and ends[-1] == 500 and np.all(np.diff(ends) == 10)
    assert [int(ends[teacher.nearest(ends, e)]) for e in (96, 104, 106, 500, 9999)] == [100, 100, 110, 500, 500]
    assert list(teacher.positions(40, 10)) == [40]  # a file shorter than a patch: one position, padded


def _fake_rows(n_frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(teacher.positions(n_frames, 10))
    return rng.uniform(0, 2, (n, teacher.EMBEDDING_DIM + teacher.N_SCORES)).astype(np.float16)


def _fake_targets(prepared: Prepared) -> teacher.Targets:
    keys: list[teacher.Key] = [("clip", c) for c in prepared.split.train]
    keys += [("background", b) for b in range(len(prepared.background.train.frames))]
    frames = [prepared.frames[c] for c in prepared.split.train] + prepared.background.train.frames
    n = {k: f.shape[0] for k, f in zip(keys, frames, strict=True)}
    return teacher.Targets({k: _fake_rows(n[k], i) for i, k in enumerate(keys)}, n, 10)


def test_teacher_targets_are_standardised_and_looked_up_by_position() -> None:
    targets = _fake_targets(_prepared())
    all_rows = np.concatenate([r[:, : teacher.EMBEDDING_DIM] for r in targets.rows.values()]).astype(np.float64)
    np.testing.assert_allclose(targets.mean, all_rows.mean(axis=0), rtol=1e-4)
    embedding, scores = targets.lookup(("background", 1), 157)
    row = targets.rows[("background", 1)][6]  # positions 100, 110, ..., 160: 157 is nearest to 160
    np.testing.assert_allclose(scores, row[teacher.EMBEDDING_DIM :].astype(np.float32))
    np.testing.assert_allclose(embedding * targets.std + targets.mean, row[: teacher.EMBEDDING_DIM], rtol=1e-3)
    with pytest.raises(DataError, match="teacher cache has 1 positions for a file of 500 frames"):
        teacher.Targets({("clip", 0): _fake_rows(120, 0)[:1]}, {("clip", 0): 500}, 10)


def test_distillation_batches_carry_teacher_targets() -> None:
    cfg = _cfg("sigmoid", distill_scores_weight=0.5)
    cfg = TrainConfig(**{**cfg.__dict__, "teacher": TeacherConfig(path="yamnet.tflite")})
    prepared = _prepared()
    source = windows.TrainWindows(cfg, prepared, augment.Augmenter(cfg.augment, P, 48), _fake_targets(prepared))
    assert source.heads == (teacher.EMBEDDING_DIM, teacher.N_SCORES)
    _, y = next(iter(source()))
    assert set(y) == {"scores", "teacher_embedding", "teacher_scores"}
    assert y["scores"].shape == (8, 3) and np.all(y["scores"][6:] == 0)  # sigmoid: background all zero
    assert y["teacher_embedding"].shape == (8, 1024) and y["teacher_scores"].shape == (8, 521)
    assert y["teacher_scores"].min() >= 0 and y["teacher_scores"].max() <= 2


def test_distillation_model_shares_layers_and_exports_the_classifier_only() -> None:
    import keras

    from training.fit import fit

    model = model_mod.build(NetworkConfig(weights="none", output="sigmoid"), InputSpec(frames=32, bands=32), 3, 0.9)
    trainer = model_mod.distillation_model(model, 16, 5)
    assert set(trainer.output) == {"scores", "teacher_embedding", "teacher_scores"}
    cfg = TrainConfig(fit=FitConfig(distill_scores_weight=1.0), model=NetworkConfig(output="sigmoid"))
    fit._compile(trainer, cfg, 1e-2)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    y = {"scores": np.zeros((8, 3), np.float32), "teacher_embedding": rng.normal(size=(8, 16)).astype(np.float32),
         "teacher_scores": rng.uniform(0, 1, (8, 5)).astype(np.float32)}  # fmt: skip
    before = np.asarray(model.get_layer("scores").bias).copy()  # (an untrained base gives ~0 features)
    trainer.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.all(np.asarray(model.get_layer("scores").bias) < before - 1e-3)  # shared, trained toward 0
    assert len(model.outputs) == 1 and model.output.shape[-1] == 3
    copy = keras.models.clone_model(model)
    assert not any(layer.name.startswith("teacher") for layer in copy.layers)
    np.testing.assert_allclose(float(fit.cosine_distance(np.ones((1, 4)), 2 * np.ones((1, 4)))[0]), 0.0, atol=1e-6)


def test_competing_loss_adds_only_where_a_labelled_window_has_a_sure_rival() -> None:
    import keras
    import tensorflow as tf

    from training.fit import fit

    plain = TrainConfig(fit=FitConfig(label_smoothing=0.0), model=NetworkConfig(output="sigmoid"))
    assert isinstance(fit.class_loss(plain), keras.losses.BinaryCrossentropy)
    compete = TrainConfig(fit=FitConfig(label_smoothing=0.0, compete_weight=0.1), model=NetworkConfig(output="sigmoid"))
    loss = fit.class_loss(compete)
    y = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0]], np.float32)  # a label, background, a label
    logits = tf.Variable(np.array([[2.0, 2.0, -2.0], [2.0, -2.0, -2.0], [4.0, -4.0, -4.0]], np.float32))
    with tf.GradientTape() as tape:
        extra = loss(y, tf.sigmoid(logits)) - keras.losses.binary_crossentropy(y, tf.sigmoid(logits))
    gain = np.asarray(extra)
    assert gain[1] == 0.0  # background: binary cross-entropy alone
    assert gain[0] > 10 * gain[2] > 0  # a rival as sure as the label costs far more than a clear win
    np.testing.assert_allclose(gain[0], 0.1 * -np.log(np.exp(2) / (2 * np.exp(2) + np.exp(-2))), rtol=1e-4)
    grad = np.asarray(tape.gradient(extra, logits))
    assert grad[0, 1] > 0 > grad[0, 0]  # the rival pushed down, the label up
    np.testing.assert_array_equal(grad[1], 0.0)


def test_quantisation_aware_twin_keeps_a_sigmoid_head() -> None:
    from training.model import qat

    model = model_mod.build(NetworkConfig(weights="none", output="sigmoid"), InputSpec(frames=32, bands=32), 3, 0.9)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    twin, _ = qat.build(model, qat.activation_ranges(model, x))
    out = np.asarray(twin(x, training=False))
    assert np.all((out > 0) & (out < 1)) and not np.allclose(out.sum(axis=1), 1.0)
    np.testing.assert_allclose(out, np.asarray(model(x, training=False)), atol=0.1)


# --- manifest, calibration wiring, report -----------------------------------------------------------


def test_manifest_lists_background_output_without_threshold() -> None:
    cfg = TrainConfig(model=NetworkConfig(output="softmax_background"))
    labels = ["a", "b"]
    assert model_mod.background_labels(cfg.model) == ("_background",)
    out_labels = model_mod.output_labels(cfg.model, labels)
    assert out_labels == ["a", "b", "_background"]
    assert model_mod.background_labels(NetworkConfig(output="sigmoid")) == ()


def test_sound_span_covers_the_frames_above_the_floor() -> None:
    frames = np.full((500, P.n_bands), P.db_floor, np.float32)
    frames[100:220] = -20.0
    start, end = replay.sound_span(frames, 400, 160, 16000, P.db_floor)
    assert start == pytest.approx(1.0) and end == pytest.approx((219 * 160 + 400) / 16000)
    assert replay.sound_span(np.full((10, 4), P.db_floor), 400, 160, 16000, P.db_floor)[0] == 0.0


def test_calibration_section_of_the_report() -> None:
    doc = {
        "calibration": {"budget_per_hour": 1.0, "label_budget_per_hour": 0.5, "background_hours": 0.25,
                        "false_per_hour": 0.0, "upper_95_per_hour": 12.0, "recall": 0.75, "min_recall": 0.5,
                        "failing": ["b"]},
        "per_label": {
            "a": {"threshold": 0.4, "recall": 1.0, "clips": 2, "false_events": 0, "false_per_hour": 0.0,
                  "upper_95_per_hour": 12.0, "meets_budget": True},
            "b": {"threshold": 1.0, "recall": None, "clips": 0, "false_events": 0, "false_per_hour": 0.0,
                  "upper_95_per_hour": 12.0, "meets_budget": False},
        },
    }  # fmt: skip
    text = "\n".join(report.calibration_markdown(doc))
    assert "15.0 min of the background's calibrate part" in text and "recall >= 0.5: b." in text
    assert "| a | 0.40 | 1.00 | 2 | 0 | 0 | 12 | yes |" in text and "| b | 1.00 | n/a | 0 |" in text
    assert report.calibration_markdown({}) == []
