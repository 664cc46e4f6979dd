"""Dataset loading, resampling, bad files, splits and the feature cache."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from support import training_data as td

from edge import features
from edge.features import FeatureParams
from training.data import cache, data
from training.recipe.config import DataConfig


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


@pytest.mark.parametrize(
    ("fmt", "suffix", "rate", "channels"),
    [("WAV", ".wav", 44100, 2), ("FLAC", ".flac", 8000, 1), ("OGG", ".ogg", 22050, 2), ("WAV", ".wav", 16000, 1)],
)
def test_read_audio_mixes_to_mono_and_resamples(
    tmp_path: Path, fmt: str, suffix: str, rate: int, channels: int
) -> None:
    seconds, hz = 1.0, 1000.0
    tone = td.tone_clip(hz, seconds, rate, seed=1)
    stereo = np.stack([tone, tone], axis=1) if channels == 2 else tone
    path = td.write(tmp_path / f"clip{suffix}", stereo, rate, fmt)
    x = data.read_audio(path, 16000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) <= 2
    assert abs(_peak_hz(x, 16000) - hz) < 5


def test_stereo_is_the_channel_mean(tmp_path: Path) -> None:
    left = td.tone_clip(500, 0.5, 16000, seed=2)
    path = td.write(tmp_path / "lr.wav", np.stack([left, np.zeros_like(left)], axis=1), 16000, "WAV")
    np.testing.assert_allclose(data.read_audio(path, 16000), left / 2, atol=1e-4)


def test_unreadable_audio_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(data.DataError, match=r"broken\.wav: unreadable audio"):
        data.read_audio(bad, 16000)


def test_manifest_with_folds(tmp_path: Path) -> None:
    manifest = td.tone_manifest(tmp_path, folds=2, per_fold=1)
    clips = data.load_clips(DataConfig(), manifest, tmp_path / "audio")
    assert len(clips) == 6
    assert {c.fold for c in clips} == {1, 2}
    assert {c.label for c in clips} == set(td.TONES_HZ)


def test_manifest_label_column_is_configurable(tmp_path: Path) -> None:
    manifest = td.tone_manifest(tmp_path, folds=1, per_fold=1)
    clips = data.load_clips(DataConfig(label_column="target", fold_column=""), manifest, tmp_path / "audio")
    assert {c.label for c in clips} == {"0", "1", "2"}
    assert all(c.fold is None for c in clips)


def test_manifest_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    manifest = td.tone_manifest(tmp_path, folds=1, per_fold=1)
    with pytest.raises(data.DataError, match=r"meta\.csv: no column 'label'"):
        data.load_clips(DataConfig(label_column="label"), manifest, tmp_path / "audio")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    manifest = td.tone_manifest(tmp_path, folds=1, per_fold=1)
    (tmp_path / "audio" / "1-mid-0.flac").unlink()
    with pytest.raises(data.DataError, match=r"1-mid-0\.flac: audio file listed in the dataset does not exist"):
        data.load_clips(DataConfig(), manifest, tmp_path / "audio")


def test_folder_tree(tmp_path: Path) -> None:
    root = td.tone_tree(tmp_path / "tree", per_class=2)
    (root / "notes.txt").write_text("not audio")
    clips = data.read_tree(root)
    assert sorted(c.label for c in clips) == sorted(list(td.TONES_HZ) * 2)
    with pytest.raises(data.DataError, match="dataset folder does not exist"):
        data.read_tree(tmp_path / "nowhere")


def test_a_flat_folder_of_prefix_named_files_needs_no_csv(tmp_path: Path) -> None:
    """The shape a newcomer's dataset often has: gunshot_001.wav, glass_breaking-7.flac, ... in one folder."""
    tree = td.tone_tree(tmp_path / "tree", per_class=2)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted(tree.rglob("*.wav"))):
        f.rename(flat / f"{f.parent.name}_{i:03d}.wav")
    (flat / "README.txt").write_text("not audio")
    clips = data.read_tree(flat)
    assert sorted(c.label for c in clips) == sorted(list(td.TONES_HZ) * 2)
    (flat / "dog-bark-7.wav").write_bytes(b"")
    assert any(c.label == "dog-bark" for c in data.read_tree(flat))
    (flat / "untitled.wav").write_bytes(b"")
    with pytest.raises(data.DataError, match=r"untitled\.wav: a flat folder's files must be named <label>_<number>"):
        data.read_tree(flat)
    (flat / "untitled.wav").unlink()
    (flat / "extra").mkdir()
    (flat / "extra" / "x.wav").write_bytes(b"")
    with pytest.raises(data.DataError, match="audio both in class folders and at the top"):
        data.read_tree(flat)


def test_prepare_says_each_class_split_and_warns_far_from_the_asked_share() -> None:
    from training.data.data import Clip, Split
    from training.data.prepare import Prepared

    clips = [Clip(path=Path(f"{i}.wav"), label="a" if i < 10 else "b") for i in range(20)]
    split = Split(train=(*range(8), *range(10, 19)), val=(), test=(8, 9, 19))
    p = Prepared(clips=clips, frames=[], labels=["a", "b"], split=split, skipped=[], cache_files=[])
    lines = p.class_lines(0.2)
    assert lines[1].split() == ["a", "8", "0", "2"] and lines[2].split() == ["b", "9", "0", "1"]  # within 10 points
    assert "test share 20%, asked 50%" in p.class_lines(0.5)[1] and "<-" not in p.class_lines(None)[1]


def test_too_few_clips_in_a_class(tmp_path: Path) -> None:
    clips = data.read_tree(td.tone_tree(tmp_path, per_class=2))
    assert data.check_counts(clips, 2) == sorted(td.TONES_HZ)
    with pytest.raises(data.DataError, match=r"class 'high' has 2 usable clip\(s\), fewer than .*=3"):
        data.check_counts(clips, 3)


def _clips(n_per_label: int, folds: int | None) -> list[data.Clip]:
    return [
        data.Clip(path=Path(f"{label}{i}.wav"), label=label, fold=(i % folds) + 1 if folds else None)
        for label in ("a", "b", "c")
        for i in range(n_per_label)
    ]


def test_fold_split_holds_out_the_test_fold() -> None:
    clips = _clips(20, folds=4)
    split = data.make_split(clips, DataConfig(test_folds=(4,), val_fraction=0.2, seed=3))
    assert {clips[i].fold for i in split.test} == {4}
    assert not {clips[i].fold for i in split.train + split.val} & {4}
    assert not set(split.train) & set(split.val)
    assert len(split.train) + len(split.val) + len(split.test) == len(clips)
    val_labels = [clips[i].label for i in split.val]
    assert all(val_labels.count(label) == 3 for label in "abc")  # 20% of 15 per class


def test_split_is_seeded() -> None:
    clips = _clips(20, folds=None)
    a = data.make_split(clips, DataConfig(seed=5))
    assert a == data.make_split(clips, DataConfig(seed=5))
    assert a != data.make_split(clips, DataConfig(seed=6))
    test_labels = [clips[i].label for i in a.test]
    assert all(test_labels.count(label) == 4 for label in "abc")  # stratified 20%


def test_unknown_test_fold(tmp_path: Path) -> None:
    with pytest.raises(data.DataError, match=r"fold\(s\) \[7\] not in the dataset"):
        data.make_split(_clips(4, folds=2), DataConfig(test_folds=(7,)))


def test_cache_matches_front_end_and_is_reused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = td.tone_tree(tmp_path / "tree", per_class=1)
    bad = root / "mid" / "zz_broken.wav"
    bad.write_bytes(b"garbage")
    clips = data.read_tree(root)
    params = FeatureParams()
    with caplog.at_level(logging.WARNING):
        got = cache.extract(clips, params, tmp_path / "cache", workers=1)
    assert [p.name for p, _ in got.skipped] == ["zz_broken.wav"]
    assert "zz_broken.wav" in caplog.text
    assert len(got.clips) == 3
    expected = features.compute(data.read_audio(got.clips[0].path, 16000), params)
    np.testing.assert_array_equal(got.frames[0], expected)
    files = sorted((tmp_path / "cache" / params.fingerprint()).glob("*.npy"))
    assert len(files) == 3
    stamps = [f.stat().st_mtime_ns for f in files]
    again = cache.extract(clips, params, tmp_path / "cache", workers=1)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # reused, not recomputed
    assert isinstance(again.frames[0], np.memmap)
    other = FeatureParams(n_bands=32)
    cache.extract(clips[:1], other, tmp_path / "cache", workers=1)
    assert (tmp_path / "cache" / other.fingerprint()).is_dir()


def test_groups_never_straddle_the_validation_split() -> None:
    clips = [
        data.Clip(path=Path(f"{label}{i}.wav"), label=label, fold=1, group=f"{label}-src{i // 3}")
        for label in ("a", "b")
        for i in range(30)
    ]
    split = data.make_split(clips, DataConfig(val_fraction=0.2, seed=2))
    val_groups = {clips[i].group for i in split.val}
    assert not val_groups & {clips[i].group for i in split.train}
    assert [clips[i].label for i in split.val].count("a") == 6  # 2 whole groups of 3


def test_group_column_is_read_and_checked(tmp_path: Path) -> None:
    manifest = td.tone_manifest(tmp_path, folds=1, per_fold=2)
    clips = data.load_clips(DataConfig(group_column="target"), manifest, tmp_path / "audio")
    assert {c.group for c in clips} == {"0", "1", "2"}
    with pytest.raises(data.DataError, match="no column 'src_file'"):
        data.load_clips(DataConfig(group_column="src_file"), manifest, tmp_path / "audio")
