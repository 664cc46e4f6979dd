"""training/recipe/extends.py: a recipe that states only its difference (``extends``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.shared import ROOT

from edge.schema import ConfigError
from training.recipe.load import load, parse

BASE = """\
data:
  manifest: ../data/esc50.csv
  background:
    - path: ../data/background.csv
  test_folds: [4]
model:
  alpha: 0.25
  weights: imagenet
teacher:
  path: ../peers/yamnet.tflite
output: ../runs/base
bundle: {name: esc50, version: 3.0.0}
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_ablation_states_only_its_difference_and_paths_resolve_from_the_file_that_states_them(
    tmp_path: Path,
) -> None:
    base = _write(tmp_path / "configs" / "base.yaml", BASE)
    child = _write(
        tmp_path / "configs" / "experiments" / "alpha.yaml",
        "extends: ../base.yaml\nmodel: {alpha: 0.5}\noutput: ../../runs/alpha\n",
    )
    b, c = load(base), load(child)
    assert c.config.model.alpha == 0.5 and c.config.model.weights == "imagenet", "merged key by key"
    assert c.config.bundle == b.config.bundle and c.config.data.test_folds == (4,)
    assert c.path(c.config.data.manifest) == b.path(b.config.data.manifest) == tmp_path / "data" / "esc50.csv"
    assert c.path(c.config.data.background[0].path) == tmp_path / "data" / "background.csv"
    assert c.path(c.config.teacher.path) == tmp_path / "peers" / "yamnet.tflite"
    assert c.output == tmp_path / "runs" / "alpha"
    merged = yaml.safe_load(c.text)
    assert "extends" not in merged and merged["model"]["alpha"] == 0.5, "the run records the merged text"
    assert parse(c.text, "again") == c.config


def test_lists_are_replaced_and_chains_merge(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", BASE)
    _write(tmp_path / "mid.yaml", "extends: base.yaml\ndata: {background: []}\nmodel: {dropout: 0.5}\n")
    top = load(_write(tmp_path / "top.yaml", "extends: mid.yaml\nmodel: {alpha: 1.0}\n")).config
    assert top.data.background == () and top.model.dropout == 0.5 and top.model.alpha == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("extends: nowhere.yaml\n", r"loop\.yaml: extends: nowhere\.yaml: no such file"),
        ("extends: loop.yaml\n", r"extends itself"),
        ("extends: [a.yaml]\n", r"extends: expected the path of a config file"),
        ("extends: base.yaml\nmodel: {alpah: 1}\n", r"model\.alpah"),
    ],
)
def test_a_bad_extends_is_one_line_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    _write(tmp_path / "base.yaml", BASE)
    path = _write(tmp_path / "loop.yaml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load(path)
    assert "\n" not in str(info.value)


def test_every_experiment_extends_a_shipped_recipe_and_is_in_the_table() -> None:
    experiments = ROOT / "configs" / "experiments"
    table = (experiments / "README.md").read_text()
    names = sorted(p.name for p in experiments.glob("*.yaml"))
    assert len(names) >= 12
    bases = {
        "../esc50.yaml",
        "esc50_v3.yaml",
        "esc50_5.0.0.yaml",
        "esc50_5.1.0.yaml",
        "esc50_5.2.0.yaml",
        "esc50_audioset.yaml",
        "esc50_confirm_nofloor.yaml",
        "esc50_shiftgain.yaml",
        "esc50_nocodec.yaml",
    }
    for name in names:
        text = yaml.safe_load((experiments / name).read_text())
        if name == "esc50_v3.yaml":  # the 3.0.0 recipe, written out in full: the ImageNet experiments' base
            assert "extends" not in text and text["bundle"]["version"] == "3.0.0"
        else:
            assert text["extends"] in bases, name
        assert f"`{name}`" in table, f"{name} is missing from configs/experiments/README.md"
        load(experiments / name)


def test_the_confirmation_mapping_resolves_from_the_file_that_states_it(tmp_path: Path) -> None:
    mapping = _write(tmp_path / "configs" / "map.csv", "esc50_label,audioset_classes,note\ndog,Dog;Bark,\n")
    classes = _write(tmp_path / "peers" / "classes.csv", "index,mid,display_name\n0,/m/a,Dog\n1,/m/b,Bark\n")
    stated = "audioset: {confirm: {mapping: map.csv, class_map: ../peers/classes.csv}}\n"
    base = _write(tmp_path / "configs" / "base.yaml", BASE + stated)
    child = _write(tmp_path / "configs" / "experiments" / "child.yaml", "extends: ../base.yaml\n")
    for path in (base, child):
        confirm = load(path).config.audioset.confirm
        assert (confirm.mapping, confirm.class_map, confirm.threshold) == (str(mapping), str(classes), 0.05)
    beside = _write(tmp_path / "configs" / "yamnet.yaml", BASE + "audioset: {confirm: {mapping: map.csv}}\n")
    assert load(beside).config.audioset.confirm.class_map == str(tmp_path / "configs" / "yamnet_class_map.csv")
    mapping.unlink()
    with pytest.raises(ConfigError, match=r"^child\.yaml: audioset\.confirm\.mapping: no such file: .*map\.csv$"):
        load(child)


@pytest.mark.parametrize(
    ("confirm", "unseen", "message"),
    [
        ("{fit_thresholds: [0.1, 1.0], fit_slopes: [2]}", 0.25, r"fit_thresholds: scores between 0 and 1"),
        ("{fit_thresholds: [0.1], fit_slopes: [0, 2]}", 0.25, r"fit_slopes: above 0 \(0 is the hard gate\)"),
        ("{fit_thresholds: [0.1]}", 0.25, r"fit_thresholds: needs fit_slopes or a slope above 0"),
        ("{fit_thresholds: [0.1], fit_slopes: [2]}", 0.0, r"needs background kept from the network"),
    ],
)
def test_a_fitted_confirmation_needs_a_sound_grid_and_background_kept_apart(
    confirm: str, unseen: float, message: str
) -> None:
    text = BASE + f"audioset: {{confirm: {confirm}, evidence: {{unseen_fraction: {unseen}}}}}\n"
    with pytest.raises(ConfigError, match=r"^c\.yaml: audioset\.(confirm|evidence)\..*" + message):
        parse(text, "c.yaml")
    ok = BASE + "audioset: {confirm: {fit_thresholds: [0.1], fit_slopes: [2]}, evidence: {unseen_fraction: 0.25}}\n"
    assert parse(ok, "c.yaml").audioset.confirm.fit_thresholds == (0.1,)


def test_the_fitted_confirmation_takes_the_most_recall_then_the_fewest_failing_then_the_first() -> None:
    from training.rule import most_recall

    tried = [
        {"threshold": 0.03, "slope": 1.0, "recall": 0.70, "failing": 9},
        {"threshold": 0.1, "slope": 2.0, "recall": 0.74, "failing": 9},
        {"threshold": 0.2, "slope": 2.0, "recall": 0.74, "failing": 7},
        {"threshold": 0.3, "slope": 4.0, "recall": 0.74, "failing": 7},
    ]
    assert most_recall(tried) is tried[2]
    assert most_recall(tried[:2]) is tried[1]
