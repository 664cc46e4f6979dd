"""``auricle-train audioset-suggest`` and ``screen`` in small: tones through the real YAMNet peer, the mapping it
writes read back by training's reader, and every bad input one line with exit status 2."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from support import training_data as td

from training import cli
from training.model import yamnet

CLASS_MAP = td.TEACHER.with_name("yamnet_class_map.csv")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    if not td.TEACHER.is_file():
        pytest.skip(td.missing(td.TEACHER))
    root = tmp_path / "sounds"
    for k, (label, hz) in enumerate(td.TONES_HZ.items()):
        for i in range(4):
            td.write(root / f"{label}_{i}.wav", td.tone_clip(hz, 1.5, 16000, 10 * k + i), 16000)
    td.noise_folder(tmp_path / "bg", per_part=1)
    cfg = tmp_path / "tones.yaml"
    cfg.write_text(
        "data: {manifest: '', audio_root: sounds, test_fraction: 0.25, val_fraction: 0.0, cache_dir: cache,\n"
        "  workers: 1, background: [{path: bg}]}\n"
        f"model: {{weights: none}}\nteacher: {{path: {td.TEACHER}}}\noutput: run\n"
    )
    return cfg


def _mapping(path: Path, *rows: tuple[str, str]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "audioset_classes"])
        writer.writerows(rows)
    return path


def test_suggest_writes_a_mapping_that_training_reads(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tones_audioset.csv"
    suggest = ["audioset-suggest", "--config", str(config), "--top", "4", "--threshold", "0.1", "-o", str(out)]
    assert cli.main(suggest) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("audioset-suggest: 9 training clips of 3 labels through YAMNet's AudioSet head")
    rows = {line.split()[0]: line for line in printed[2:5]}
    assert set(rows) == {"high", "low", "mid"}
    assert printed[-1].startswith(f"audioset-suggest: wrote {out}")
    with out.open(newline="") as fh:
        written = list(csv.DictReader(fh))
    assert [r["label"] for r in written] == ["high", "low", "mid"] and all(r["note"] for r in written)
    mapping = yamnet.read_mapping(out, yamnet.read_class_names(CLASS_MAP))  # no class twice, every name YAMNet's
    assert mapping, "a tone fires YAMNet's tone classes"
    assert all(f"{yamnet.read_class_names(CLASS_MAP)[mapping[x][0]]} " in rows[x] for x in mapping), "as printed"
    # The config's mapping is measured beside the proposal, with training's checks.
    config.write_text(config.read_text() + f"audioset: {{confirm: {{mapping: {out}, threshold: 0.1}}}}\n")
    assert cli.main(["audioset-suggest", "--config", str(config)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "tones_audioset.csv" in table[1]
    proposed, theirs = table[2].split()[2:4]
    assert proposed == theirs, "the written mapping confirms what the proposal does"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            (("higgh", "Sine wave"), ("low", "Beep, bleep")),
            r"'higgh' is not one of the labels \(did you mean 'high'\?\)",
        ),
        ((("low", "Beeep, bleep"),), r"low: 'Beeep, bleep' is not a YAMNet class \(did you mean 'Beep, bleep'\?\)"),
        ((("dog", "Dog"),), r"maps none of the dataset's labels \(high, low, mid, \.\.\.\)"),
    ],
)
def test_a_bad_mapping_is_one_line_naming_it(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: tuple[tuple[str, str], ...], message: str
) -> None:
    import re

    bad = _mapping(tmp_path / "bad.csv", *rows)
    assert cli.main(["screen", "--config", str(config), "--mapping", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"auricle-train: {bad}: "), err
    assert re.search(message, err), err
    config.write_text(config.read_text() + f"audioset: {{confirm: {{mapping: {bad}}}}}\n")
    assert cli.main(["audioset-suggest", "--config", str(config)]) == 2  # the config's mapping, the same checks
    assert re.search(message, capsys.readouterr().err)


def test_other_bad_inputs_are_one_line(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["screen", "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        "auricle-train: screen: no mapping: give --mapping CSV or audioset.confirm.mapping (audioset-suggest -o)\n"
    )
    no_yamnet = tmp_path / "plain.yaml"
    no_yamnet.write_text("data: {manifest: '', audio_root: sounds}\nmodel: {weights: none}\n")
    assert cli.main(["audioset-suggest", "--config", str(no_yamnet)]) == 2
    assert capsys.readouterr().err == (
        "auricle-train: no YAMNet in the config: model.arch yamnet with model.weights, or teacher.path, names it\n"
    )
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text(config.read_text().replace(", background: [{path: bg}]", ""))
    good = _mapping(tmp_path / "good.csv", ("low", "Sine wave"))
    assert cli.main(["screen", "--config", str(quiet), "--mapping", str(good)]) == 2
    assert capsys.readouterr().err == "auricle-train: screen: the config's data.background sources have no files\n"
    for flag, value, said in (
        ("--threshold", "1.5", "expected a number in [0, 1], got 1.5"),
        ("--show", "0", "expected a whole number from 1, got '0'"),
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["screen", "--config", str(config), flag, value])
        assert exit_.value.code == 2
        assert f"argument {flag}: {said}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["audioset-suggest", "--config", str(config), "--top", "-1"])
    assert "argument --top: expected a whole number from 1, got '-1'" in capsys.readouterr().err
