"""A dataset's own "other" class (``data.other_labels``), a background source's ``exclude_from`` list, and the
run's log of one line per stage: generated tones and noise, no shared material, no training."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from support import training_data as td

from training import cli
from training.data import background, prepare
from training.data.data import DataError
from training.recipe.config import BackgroundSource
from training.recipe.load import load

RATE = 16000


def _chatter(path: Path, seed: int) -> Path:
    """A none-of-these clip: noise bursts."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.05, RATE) * (rng.random(RATE) < 0.5)
    return td.write(path, x.astype(np.float32), RATE)


def _dataset(root: Path, per_class: int = 6) -> Path:
    """One flat folder: tones named low_/mid_/high_<n>.wav and chatter_<n>.wav."""
    for k, (label, hz) in enumerate(td.TONES_HZ.items()):
        for i in range(per_class):
            td.write(root / f"{label}_{i}.wav", td.tone_clip(hz, 1.0, RATE, 100 * k + i), RATE)
    for i in range(per_class):
        _chatter(root / f"chatter_{i}.wav", i)
    return root


def _config(tmp_path: Path, data: str, extra: str = "") -> Path:
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(
        f"data: {{manifest: '', audio_root: sounds, test_fraction: 0.34, val_fraction: 0.25, cache_dir: cache,\n"
        f"  workers: 1, {data}}}\n"
        "window: {window_frames: 32, hop_frames: 16}\nmodel: {weights: none, output: sigmoid}\n"
        f"output: run\n{extra}"
    )
    return cfg


def test_an_other_label_trains_as_background_keeps_its_split_and_is_never_an_output(tmp_path: Path) -> None:
    _dataset(tmp_path / "sounds")
    # no background source at all: the other label is background enough for background windows in every batch
    cfg = _config(tmp_path, "other_labels: [chatter]", "fit: {background_fraction: 0.3}\n")
    p = prepare.prepare(load(cfg))
    assert p.labels == ["high", "low", "mid"]
    assert all(c.label != "chatter" for c in p.clips) and len(p.clips) == 18
    bg = p.background
    parts = {name: [x.name for x in part.paths] for name, part in (("train", bg.train), ("calibrate", bg.calibrate),
                                                                   ("report", bg.report))}  # fmt: skip
    assert sorted(x for names in parts.values() for x in names) == [f"chatter_{i}.wav" for i in range(6)]
    assert len(parts["report"]) == 2 and len(parts["calibrate"]) == 1  # test 0.34 and validation 0.25 of the rest
    assert len(bg.train.frames) == 3 and bg.train.frames[0].shape[1] == 64  # through the feature cache
    again = prepare.load(tmp_path / "run")  # prepared.json keeps them where the later stages look
    assert [x.name for x in again.background.train.paths] == parts["train"] and again.labels == p.labels
    split = again.split
    assert sorted(split.train + split.val + split.test) == list(range(18))


@pytest.mark.parametrize(
    ("others", "message"),
    [
        ("[chater]", r"data\.other_labels: 'chater' is not one of the dataset's labels \(did you mean 'chatter'\?\)"),
        ("[chatter, low, mid, high]", r"data\.other_labels: every label of the dataset is an 'other' label"),
        ("[_background]", r"data\.other_labels: '_background' is not one of the dataset's labels"),
    ],
)
def test_a_bad_other_label_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], others: str, message: str
) -> None:
    _dataset(tmp_path / "sounds", per_class=2)
    _refused(_config(tmp_path, f"other_labels: {others}"), capsys, message)


def _refused(cfg: Path, capsys: pytest.CaptureFixture[str], message: str) -> None:
    """``prepare`` exits 2 with one line on stderr that matches ``message``."""
    assert cli.main(["prepare", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("auricle-train: ")
    assert re.search(message, err), err


def test_without_background_or_other_labels_background_windows_are_refused(tmp_path: Path) -> None:
    from edge.schema import ConfigError

    cfg = _config(tmp_path, "min_clips_per_class: 2", "fit: {background_fraction: 0.3}\n")
    with pytest.raises(ConfigError, match=r"needs data\.background sources or data\.other_labels"):
        load(cfg)


def _exclude_list(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["# written by hand", "", *lines]) + "\n", encoding="utf-8")
    return path


def test_exclude_from_leaves_the_listed_files_out_of_folder_and_manifest_sources(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = td.noise_folder(tmp_path / "bg", per_part=2)
    other = td.noise_folder(tmp_path / "elsewhere", per_part=1)
    listed = _exclude_list(
        tmp_path / "lists" / "exclude.txt",
        "../bg/train/noise_0.wav",  # relative to the list's folder
        str(root / "calibrate" / "noise_1.wav"),  # or absolute
        "../elsewhere/loose.wav",  # another source's file: not this one's concern
    )
    src = BackgroundSource(path=str(root), report_fraction=0.0, exclude_from=str(listed))
    with caplog.at_level("INFO", logger="training.data.background"):
        files = background.list_files(src, root)
    assert [p.name for p in files["train"]] == ["loose.wav", "noise_1.wav"]
    assert [p.name for p in files["calibrate"]] == ["noise_0.wav"]
    assert f"left out 2 file(s) listed in {listed}" in caplog.text
    rows = [{"filename": "train/noise_0.wav", "split": "train"}, {"filename": "loose.wav", "split": "train"}]
    manifest = td.write_manifest(other / "bg.csv", rows)
    from_csv = background.list_files(BackgroundSource(path=str(manifest), exclude_from=str(listed)), manifest)
    assert [p.name for p in from_csv["train"]] == ["noise_0.wav"]


def test_exclude_from_resolves_from_the_config_that_states_it_and_a_missing_list_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _dataset(tmp_path / "sounds", per_class=2)
    td.noise_folder(tmp_path / "bg", per_part=1)
    cfg = _config(tmp_path, "min_clips_per_class: 2, background: [{path: bg, exclude_from: lists/exclude.txt}]")
    source = load(cfg).config.data.background[0]
    assert source.exclude_from == str(tmp_path / "lists" / "exclude.txt")
    child = tmp_path / "experiments" / "child.yaml"
    child.parent.mkdir()
    child.write_text("extends: ../mine.yaml\nmodel: {dropout: 0.5}\n")
    assert load(child).config.data.background[0].exclude_from == source.exclude_from  # rebased by extends
    assert cli.main(["prepare", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"auricle-train: {tmp_path / 'lists' / 'exclude.txt'}: cannot read the exclude_from list: " + (
        f"[Errno 2] No such file or directory: '{tmp_path / 'lists' / 'exclude.txt'}'"
    )
    _exclude_list(tmp_path / "lists" / "exclude.txt", "../bg/loose.wav")
    p = prepare.prepare(load(cfg))
    assert "loose.wav" not in [x.name for x in p.background.train.paths] and len(p.background.train.paths) == 1
    with pytest.raises(DataError, match="cannot read the exclude_from list"):
        background.read_exclude_list(tmp_path / "nowhere.txt")


def test_a_stage_writes_one_line_per_stage_to_the_run_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _dataset(tmp_path / "sounds", per_class=2)
    td.noise_folder(tmp_path / "bg", per_part=1)
    cfg = _config(tmp_path, "min_clips_per_class: 2, background: [{path: bg}]")
    assert cli.main(["prepare", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    lines = (tmp_path / "run" / cli.RUN_LOG).read_text().splitlines()
    stages = [line.split(" ", 2)[2].split(":")[0] for line in lines]  # date, time, then the stage
    assert stages == ["auricle-train prepare --config " + str(cfg), "features", "background", "prepare"]
    assert lines[-1].endswith(out.splitlines()[0]), "the summary the terminal got"
    assert all(line.rstrip().endswith(" s)") for line in lines[1:]), "each stage with its time"
    assert "%|" not in "".join(lines) and "train    val" not in "".join(lines)  # no progress bars, no class table
    elsewhere = tmp_path / "logs" / "prepare.log"
    assert cli.main(["prepare", "--config", str(cfg), "--log", str(elsewhere)]) == 0
    assert len(elsewhere.read_text().splitlines()) == 4
    assert len((tmp_path / "run" / cli.RUN_LOG).read_text().splitlines()) == 4, "not in the run folder's log then"


def test_a_log_that_cannot_be_written_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _dataset(tmp_path / "sounds", per_class=2)
    cfg = _config(tmp_path, "min_clips_per_class: 2")
    (tmp_path / "taken").write_text("a file, not a folder")
    assert cli.main(["prepare", "--config", str(cfg), "--log", str(tmp_path / "taken" / "run.log")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"auricle-train: the run's log: {tmp_path / 'taken' / 'run.log'}: ") and err.count("\n") == 1


def _extra(tmp_path: Path, rows: str) -> Path:
    """Two long recordings from elsewhere (3 s tones), listed as ../shared/data/labelled_other lists its own."""
    folder = tmp_path / "elsewhere"
    for i, hz in enumerate((td.TONES_HZ["low"], td.TONES_HZ["high"])):
        td.write(folder / f"rec_{i}.flac", td.tone_clip(hz, 3.0, RATE, 900 + i), RATE)
    (folder / "elsewhere.csv").write_text("filename,label,source\n" + rows, encoding="utf-8")
    return folder / "elsewhere.csv"


def test_extra_recordings_only_ever_train(tmp_path: Path) -> None:
    _dataset(tmp_path / "sounds")
    _extra(tmp_path, "rec_0.flac,low,x\nrec_1.flac,high,y\n")
    cfg = _config(tmp_path, "other_labels: [chatter], extra: [{manifest: elsewhere/elsewhere.csv}]")
    p = prepare.prepare(load(cfg))
    extra = [i for i, c in enumerate(p.clips) if c.path.parent.name == "elsewhere"]
    assert [(p.clips[i].path.name, p.clips[i].label) for i in extra] == [("rec_0.flac", "low"), ("rec_1.flac", "high")]
    assert set(extra) <= set(p.split.train) and not set(extra) & set(p.split.val + p.split.test)
    assert p.frames[extra[0]].shape[0] > 250  # the whole 3 s recording, through the feature cache
    again = prepare.load(tmp_path / "run")
    assert set(extra) <= set(again.split.train) and again.clips[extra[1]].path.name == "rec_1.flac"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("rec_0.flac,lwo,x\n", r"elsewhere\.csv: rec_0\.flac: label 'lwo' is not one of the dataset's \(did you mean"),
        ("rec_9.flac,low,x\n", r"rec_9\.flac: audio file listed in elsewhere\.csv does not exist"),
    ],
)
def test_a_bad_extra_recording_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: str, message: str
) -> None:
    _dataset(tmp_path / "sounds", per_class=2)
    _extra(tmp_path, rows)
    _refused(_config(tmp_path, "min_clips_per_class: 2, extra: [{manifest: elsewhere/elsewhere.csv}]"), capsys, message)
