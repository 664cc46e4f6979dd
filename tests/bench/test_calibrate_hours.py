"""bench/calibrate_hours.py: the verdict hours are home_hour's hours, every bundle and YAMNet on the same samples,
summed honestly - real audio, the shipped bundle, the real YAMNet (short hours)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import training_data as td
from support.shared import ROOT

from bench import calibrate_hours, home_hour, streams

SHIPPED = ROOT / "edge" / "models" / "esc50.auricle"
pytestmark = pytest.mark.skipif(
    bool(td.missing(streams.ESC50_CSV, streams.BACKGROUND_CSV, streams.SHARED / "peers" / "yamnet_spectra_in.tflite")),
    reason="needs ../shared's ESC-50, background and YAMNet",
)


def test_an_hour_is_home_hours_hour_and_the_totals_add_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hours.json"
    small = ["--minutes", "2", "--sounds", "4"]
    argv = ["--model", str(SHIPPED), "--beds", str(streams.BACKGROUND_CSV), "--hours", "1", "7", "2", "8", *small]
    assert calibrate_hours.main([*argv, "--floors", "1", "0", "--draws", "1", "--json-out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["hour"] for r in doc["hours"]] == ["background fold 1 seed 7", "background fold 2 seed 8"]
    text = capsys.readouterr().out
    assert "all 2 (" in text and "YAMNet int8 at 0.8" in text and "recipes, their draws pooled" in text

    single = tmp_path / "one.json"
    one = ["--model", str(SHIPPED), "--split", "calibrate", "--fold", "2", "--seed", "8", *small]
    assert home_hour.main([*one, "--json-out", str(single)]) == 0
    alone = json.loads(single.read_text())
    ours = next(name for name in alone["detectors"] if name.startswith("ours"))
    assert list(doc["hours"][1]["detectors"]) == [
        ours,
        f"{ours} floor 1",
        f"{ours} floor 0",
        *list(alone["detectors"])[1:],
    ]
    assert {k: doc["hours"][1]["detectors"][k] for k in alone["detectors"]} == alone["detectors"], "the same figures"

    # a replayed floor is the daemon's event logic on the pipeline's hop scores: floor 0 changes nothing, and no
    # int8 score reaches 1
    assert doc["totals"][f"{ours} floor 0"] == doc["totals"][ours]
    assert doc["totals"][ours]["recalled"] + doc["totals"][ours]["all_false"] > 0, "nothing to compare"
    assert doc["totals"][f"{ours} floor 1"]["recalled"] == doc["totals"][f"{ours} floor 1"]["all_false"] == 0
    # one draw per recipe: its pooled rows are its own totals, floors upwards, and at floor 1 nothing can fire
    (recipe,) = doc["recipes"]
    assert [r["floor"] for r in recipe["rows"]] == ["calibrated", 0, 1]
    assert recipe["rows"][0]["recall"] == doc["totals"][ours]["recall"]
    assert recipe["rows"][0]["home_false"] == doc["totals"][ours]["home_false"]
    assert recipe["figure"] is not None and recipe["figure"]["home_false"] == 0

    for name, t in doc["totals"].items():
        views = [r["detectors"][name] for r in doc["hours"]]
        assert t["sounds"] == sum(v["home"]["recall"]["total"]["clips"] for v in views) == 8
        assert t["home_false"] == sum(v["home"]["false"]["total"]["events"] for v in views)
        assert t["home_distinct"] == sum(v["home"]["false"]["distinct"] for v in views) <= t["home_false"]
        assert t["recall"] == pytest.approx(t["recalled"] / t["sounds"], abs=1e-4)


def test_a_floor_outside_0_1_is_refused() -> None:
    with pytest.raises(SystemExit):
        calibrate_hours.parse_args(["--floors", "0.95", "1.5"])


def test_two_bundles_of_one_name_are_refused(tmp_path: Path) -> None:
    argv = ["--model", str(SHIPPED), str(SHIPPED), "--minutes", "1", "--sounds", "2", "--hours", "1", "7"]
    assert calibrate_hours.main([*argv, "--json-out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def _cell(recalled: int, home_false: int, hours: float = 8.0) -> dict[str, float]:
    return {"recalled": recalled, "sounds": 100, "home_false": home_false, "hours": hours}


def test_draws_are_pooled_per_recipe_and_the_figure_is_the_first_floor_within_one_per_draw_per_8_hours() -> None:
    totals = {
        "a1": _cell(60, 0), "a1 floor 0.99": _cell(50, 0), "a1 floor 0.97": _cell(55, 0),
        "a2": _cell(70, 5), "a2 floor 0.99": _cell(60, 2), "a2 floor 0.97": _cell(65, 3),
        "b1": _cell(80, 9), "b1 floor 0.99": _cell(75, 2), "b1 floor 0.97": _cell(78, 5),
        "b2": _cell(40, 0), "b2 floor 0.99": _cell(30, 1), "b2 floor 0.97": _cell(35, 0),
    }  # fmt: skip
    a, b = calibrate_hours.pooled(totals, ["a1", "a2", "b1", "b2"], 2, [0.99, 0.97])
    assert a["draws"] == ["a1", "a2"] and a["budget"] == 2
    assert [(r["floor"], r["recall"], r["home_false"]) for r in a["rows"]] == [
        ("calibrated", 0.65, 5),
        (0.97, 0.6, 3),
        (0.99, 0.55, 2),
    ]
    assert a["figure"] == a["rows"][2], "the first floor at 2 or fewer in 16 draw-hours"
    assert b["figure"] is None, "3 false events left at 0.99 is over the budget"
    assert "no floor with at most 2 home-label false events" in calibrate_hours.pooled_table([a, b])
    assert "55.0%  2  <- figure" in calibrate_hours.pooled_table([a, b])
    (short,) = calibrate_hours.pooled(
        {k: v | {"hours": 4.0} for k, v in totals.items() if k.startswith("a1")}, ["a1"], 1, [0.97, 0.99]
    )
    assert short["budget"] == 0.5 and short["figure"] == short["rows"][0], "half the hours, half the budget"


def test_draws_that_do_not_divide_the_bundles_are_refused() -> None:
    with pytest.raises(SystemExit):
        calibrate_hours.parse_args(["--model", str(SHIPPED), str(SHIPPED), str(SHIPPED), "--draws", "2"])
    with pytest.raises(SystemExit):
        calibrate_hours.parse_args(["--draws", "-1"])
