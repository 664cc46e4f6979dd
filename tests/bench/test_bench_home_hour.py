"""bench/home_stream.py and bench/home_hour.py: the builder on generated audio, the scorer on hand-made detections."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from bench import home_hour as hh
from bench import home_stream as hs
from bench import streams
from bench.event_scoring import HOME_LABELS, Detection, Span

RATE = 16000
BURST_S = 1.5
Floats = npt.NDArray[np.float32]
Material = tuple[list[streams.Item], list[streams.Item], list[streams.Item]]


def _write(path: Path, x: Floats) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, RATE, subtype="FLOAT")


def _tone(seconds: float, hz: float, amplitude: float) -> Floats:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _background(tmp: Path, speech: int, other: int) -> Path:
    """A background CSV of ``speech`` one-second 'words' (a tone between silences) and ``other`` noise files."""
    rng, rows = np.random.default_rng(7), []
    for i in range(speech + other):
        kind = "speech" if i < speech else "noise"
        x = np.zeros(RATE, dtype=np.float32)
        x[4000:12000] = _tone(0.5, 200 + 40 * i, 0.3)
        if kind == "noise":
            x = (0.1 * rng.standard_normal(3 * RATE)).astype(np.float32)
        name = f"{kind}/{i}.wav"
        _write(tmp / name, x)
        rows.append({"filename": name, "kind": kind, "group": name, "split": "calibrate", "duration_s": len(x) / RATE})
    path = tmp / "background.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["filename", "source", "kind", "group", "split", "duration_s"], restval="gen")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _esc50(tmp: Path, labels: list[str], per_label: int) -> Path:
    """An esc50.csv of 5 s clips in fold 2 (one extra label in fold 1): digital silence, a tone burst, silence."""
    rows = []
    for j, label in enumerate([*labels, "other_fold"]):
        for k in range(per_label):
            name = f"{label}-{k}.wav"
            x = np.zeros(5 * RATE, dtype=np.float32)
            lead = round((0.3 + 0.4 * k) * RATE)
            x[lead : lead + round(BURST_S * RATE)] = _tone(BURST_S, 300 + 50 * j, 0.5)
            _write(tmp / "audio" / name, x)
            rows.append({"filename": name, "fold": 1 if label == "other_fold" else 2, "category": label})
    path = tmp / "esc50.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["filename", "fold", "category"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    tmp = tmp_path_factory.mktemp("home")
    speech, other = hs.bed_material(_background(tmp, 40, 2), "calibrate+report", RATE)
    sounds = hs.draw_sounds(
        _esc50(tmp, ["dog", "siren", "cat"], 4), 2, ["dog", "siren", "cat"], 10, RATE, np.random.default_rng(1)
    )
    return speech, other, sounds


def test_draw_spreads_over_labels_of_the_fold_and_trims_the_silence(material: Material) -> None:
    speech, other, sounds = material
    assert len(speech) == 40 and len(other) == 2
    counts = sorted(np.unique([label for _, label, _ in sounds], return_counts=True)[1])
    assert len(sounds) == 10 and counts == [3, 3, 4]  # 10 over 3 labels; nothing of fold 1
    assert all(len(x) == pytest.approx(BURST_S * RATE, abs=2) for _, _, x in sounds)


def test_the_builder_is_deterministic_for_a_seed(material: Material) -> None:
    speech, other, sounds = material
    a, b = (hs.build_home(speech, other, sounds, 2.0, RATE, seed=3) for _ in range(2))
    assert np.array_equal(a.samples, b.samples) and a.spans == b.spans and a.sounds == b.sounds
    c = hs.build_home(speech, other, sounds, 2.0, RATE, seed=4)
    assert not np.array_equal(a.samples, c.samples) and a.spans != c.spans


def test_sounds_never_overlap_and_their_spans_hold_their_energy(material: Material) -> None:
    speech, other, sounds = material
    home = hs.build_home(speech, other, sounds, 2.0, RATE, seed=5)
    bed = hs.build_home(speech, other, [], 2.0, RATE, seed=5).samples  # the bed never depends on the sounds
    added = home.samples - bed
    assert len(home.spans) == 10
    order = sorted(home.spans, key=lambda s: s.start_s)
    assert all(b.start_s - a.end_s >= hs.MIN_GAP_S for a, b in itertools.pairwise(order))
    inside = np.zeros(len(bed), dtype=bool)
    for span in home.spans:
        lo, hi = round(span.start_s * RATE), round(span.end_s * RATE)
        inside[lo:hi] = True
        assert hi - lo == pytest.approx(BURST_S * RATE, abs=2)  # the clip's silence was trimmed
        edge = round(0.02 * RATE)
        peak = np.abs(added[lo:hi]).max()  # the burst is steady: its first and last 20 ms are as loud as the rest
        assert peak > 0 and min(np.abs(added[lo : lo + edge]).max(), np.abs(added[hi - edge : hi]).max()) > 0.9 * peak
    assert not np.any(added[~inside])  # nothing was added outside the spans


def test_levels_land_in_the_requested_snr_range(material: Material) -> None:
    speech, other, sounds = material
    home = hs.build_home(speech, other, sounds, 2.0, RATE, seed=6, snr_db=(5.0, 12.0), floor_dbfs=-np.inf)
    bed = hs.build_home(speech, other, [], 2.0, RATE, seed=6).samples.astype(np.float64)
    added = home.samples.astype(np.float64) - bed
    measured = []
    for span, record in zip(home.spans, home.sounds, strict=True):
        lo, hi = round(span.start_s * RATE), round(span.end_s * RATE)
        context = bed[max(0, lo - 5 * RATE) : hi + 5 * RATE]  # the bed alone, 5 s either side
        snr = 10 * np.log10(np.mean(added[lo:hi] ** 2) / np.mean(context**2))  # a steady tone: active = plain RMS
        assert snr == pytest.approx(record["snr_db"], abs=0.05) and not record["capped"] and not record["raised"]
        measured.append(snr)
    assert min(measured) >= 5.0 - 0.05 and max(measured) <= 12.0 + 0.05
    assert max(measured) - min(measured) > 2  # drawn, not one fixed level


def test_the_bed_has_speech_pauses_and_room_noise_at_the_set_levels(material: Material) -> None:
    speech, other, _ = material
    home = hs.build_home(speech, other, [], 3.0, RATE, seed=2)
    words = [p for p in home.pieces if p.label == "speech"]
    assert words and {p.label for p in home.pieces} == {"speech", "noise"}
    for p in (
        p for p in words if p.end_s - p.start_s == 1.0
    ):  # each whole word's tone (0.25-0.75 s of the file) at -30 to -20 dBFS, over -62 dBFS room noise
        lo = round(p.start_s * RATE)
        assert -30.5 <= 10 * np.log10(np.mean(home.samples[lo + 4200 : lo + 11800].astype(np.float64) ** 2)) <= -19.5
    busy = np.zeros(len(home.samples), dtype=bool)
    for p in home.pieces:
        busy[round(p.start_s * RATE) : round(p.end_s * RATE)] = True
    assert busy.mean() < 0.6  # pauses between runs
    quiet = home.samples[~busy].astype(np.float64)
    assert 10 * np.log10(np.mean(quiet**2)) == pytest.approx(hs.ROOM_DBFS, abs=0.5)


def test_reuse_is_reported_when_material_is_short(material: Material) -> None:
    speech, other, _ = material
    home = hs.build_home(speech[:5], other[:1], [], 2.0, RATE, seed=1)
    short = home.bed
    assert short["speech"]["max_uses"] > 3 and short["speech"]["unique_min"] == round(5 / 60, 2)
    assert short["reuse"] > 3
    words = [p for p in home.pieces if p.label == "speech"]
    passes = [[p.name for p in words[i : i + 5]] for i in range(0, len(words) - 4, 5)]
    assert all(sorted(names) == sorted(passes[0]) for names in passes)  # every file once per pass ...
    assert len({tuple(names) for names in passes}) > 1  # ... in a new order
    levels = {round(float(np.abs(home.samples[round(p.start_s * RATE) :][4200:11800]).max()), 4) for p in words[:-1]}
    assert len(levels) > 10  # with new gains
    ample = hs.build_home(speech, other, [], 0.75, RATE, seed=1).bed
    assert ample["speech"]["placements"] > 3 and ample["speech"]["max_uses"] == 1 and ample["reuse"] == 1.0


def test_too_many_sounds_for_the_stream_is_refused(material: Material) -> None:
    speech, other, sounds = material
    with pytest.raises(SystemExit, match="do not fit"):
        hs.build_home(speech, other, sounds, 0.5, RATE, seed=0)


def test_score_counts_hits_wrong_labels_and_false_events() -> None:
    spans = [Span("a", "dog", 10.0, 15.0), Span("b", "siren", 30.0, 33.0)]
    home = hs.Home(np.zeros(36 * RATE, dtype=np.float32), RATE, spans, [Span("w", "speech", 20.0, 22.0)], [], {})
    found = [
        Detection("dog", 9.6, 10.2),  # hit, 0.4 s before the dog
        Detection("dog", 14.0, 14.5),  # the same dog again: not false
        Detection("cat", 12.0, 12.3),  # wrong label near the dog
        Detection("dog", 21.0, 21.2),  # on speech
        Detection("siren", 31.0, 32.0),  # hit
        Detection("siren", 34.5, 34.6),  # 1.5 s after the siren: false, in a pause
    ]
    report = hh.score(home, found, ["dog", "siren"], named=["dog"])
    assert report["recall"]["total"]["recalled"] == 2 and report["recall"]["total"]["latency_p50_s"] == 1.1
    assert report["recall_yamnet_labels"]["clips"] == 1 and report["recall_yamnet_labels"]["recall"] == 1.0
    assert report["false"]["total"] == {"events": 3, "per_hour": 300.0}  # 3 in 0.01 h
    assert report["false"]["where"] == {"near a sound": 1, "speech": 1, "pauses": 1}
    assert set(report["false"]["per_label"]) == {"cat", "dog", "siren"}


def test_false_events_on_one_replayed_file_are_one_distinct_source() -> None:
    """``false.distinct``: a confusion on a bed file the hour plays again and again counts once per (label, file)."""
    spans = [Span("a", "dog", 10.0, 15.0)]
    pieces = [Span("dish", "noise", 20.0, 30.0), Span("w", "speech", 24.0, 26.0), Span("dish", "noise", 40.0, 50.0)]
    home = hs.Home(np.zeros(60 * RATE, dtype=np.float32), RATE, spans, pieces, [], {})
    found = [
        Detection("cat", 12.0, 12.3),  # wrong label on the dog
        Detection("washing_machine", 22.0, 22.5),
        Detection("washing_machine", 25.0, 25.5),  # over speech too: the noise file is named
        Detection("washing_machine", 45.0, 45.5),  # the same file played again
        Detection("snoring", 55.0, 55.5),  # in a pause
    ]
    false = hh.score(home, found, ["dog"], named=["dog"])["false"]
    assert false["total"]["events"] == 5 and false["distinct"] == 3
    assert false["sources"][0] == {"label": "washing_machine", "source": "dish", "events": 3}
    assert {(x["label"], x["source"]) for x in false["sources"][1:]} == {("cat", "a"), ("snoring", "pauses")}


class _Peer:
    """A stand-in for YAMNet: the dog's score per call from a script, counting calls."""

    def __init__(self, dog: list[float]) -> None:
        self.dog, self.calls = iter(dog), 0

    def infer(self, patch: Floats) -> tuple[Floats, Floats]:
        self.calls += 1
        scores = np.zeros(521, dtype=np.float32)
        scores[70] = next(self.dog)
        return scores, np.zeros(1024, dtype=np.float32)


def test_yamnet_runs_once_and_other_thresholds_replay_its_scores() -> None:
    peer = _Peer([0.9, 0.6, 0.1, 0.7])
    recorded = hh._Recorded(peer)  # type: ignore[arg-type]
    samples = np.zeros(4 * 15600, dtype=np.float32)
    high = streams.yamnet_detections(recorded, samples, {"dog": [70]}, 0.8)  # type: ignore[arg-type]
    recorded.k = 0
    low = streams.yamnet_detections(recorded, samples, {"dog": [70]}, 0.5)  # type: ignore[arg-type]
    assert peer.calls == 4
    assert [d.start_s for d in high] == [0.975] and [d.start_s for d in low] == [0.975, 3.9]


def test_no_file_peaks_above_minus_1_dbfs_and_the_sum_is_clipped(material: Material) -> None:
    _, _, sounds = material
    click = np.zeros(RATE, dtype=np.float32)
    click[RATE // 2] = 0.001  # its active level is ~-85 dBFS: raised to -30..-20 it would peak far above 0 dBFS
    home = hs.build_home([("click.wav", "speech", click)], [], sounds[:2], 1.0, RATE, seed=0)
    assert np.abs(home.samples).max() <= hs.PEAK + 0.01 and home.bed["clipped_samples"] == 0
    loud = [("loud.wav", "dog", np.full(RATE, 0.9, dtype=np.float32))]
    home = hs.build_home([("click.wav", "speech", click)], [], loud, 1.0, RATE, seed=0, snr_db=(60.0, 60.0))
    assert home.sounds[0]["capped"] and home.sounds[0]["active_dbfs"] == pytest.approx(-1.0, abs=0.01)


def _gappy(i: int) -> streams.Item:
    """0.3 s of tone, 0.3 s of silence, 0.3 s of tone: its active level is the tones' RMS, not the clip's."""
    x = np.zeros(round(0.9 * RATE), dtype=np.float32)
    x[: round(0.3 * RATE)] = x[round(0.6 * RATE) :] = _tone(0.3, 500 + 30 * i, 0.1)
    return (f"s{i}.wav", "dog", x)


def test_a_sound_drawn_below_the_floor_comes_out_at_the_floor() -> None:
    bed = hs.room_noise(60 * RATE, np.random.default_rng(0))  # -62 dBFS; the second half 30 dB louder
    bed[30 * RATE :] *= 10 ** (30 / 20)
    sounds = [_gappy(i) for i in range(10)]
    mix, spans, placed = hs.place_sounds(bed, sounds, RATE, np.random.default_rng(4), snr_db=(0.0, 10.0))
    added = mix.astype(np.float64) - bed
    for span, record in zip(spans, placed, strict=True):
        lo = round(span.start_s * RATE)
        tones = np.r_[added[lo : lo + round(0.3 * RATE)], added[lo + round(0.6 * RATE) : lo + round(0.9 * RATE)]]
        level = 10 * np.log10(np.mean(tones**2))
        wanted = max(record["bed_dbfs"] + record["drawn_snr_db"], hs.FLOOR_DBFS)
        assert level == pytest.approx(wanted, abs=0.5) and not record["capped"]
        assert record["raised"] == (record["bed_dbfs"] + record["drawn_snr_db"] < hs.FLOOR_DBFS)
        if record["raised"]:
            assert level == pytest.approx(-45.0, abs=0.5) and record["snr_db"] > record["drawn_snr_db"]
        else:
            assert record["snr_db"] == pytest.approx(record["drawn_snr_db"], abs=0.01)
    assert 0 < sum(r["raised"] for r in placed) < len(placed)  # the quiet half raised, the loud half as drawn


def _labelled_home() -> hs.Home:
    spans = [Span("a", "dog", 10.0, 15.0), Span("b", "cow", 20.0, 22.0), Span("c", "siren", 30.0, 33.0)]
    return hs.Home(np.zeros(36 * RATE, dtype=np.float32), RATE, spans, [Span("w", "speech", 25.0, 27.0)], [], {})


FOUND = [
    Detection("dog", 10.2, 10.5),  # hit, a home label
    Detection("cow", 20.1, 20.4),  # hit, not a home label: only in the all view
    Detection("cat", 12.0, 12.3),  # a home label, wrong near the dog: both views
    Detection("frog", 31.0, 31.2),  # not a home label, wrong near the siren: all only
    Detection("cow", 26.0, 26.2),  # on speech, not a home label: all only
    Detection("dog", 5.0, 5.1),  # in a pause, a home label: both views
    Detection("siren", 30.5, 31.0),  # hit
]


def test_home_labels_are_ones_the_model_knows_and_include_the_default_announcements() -> None:
    from edge.detect.listening import DEFAULT_ANNOUNCE

    assert set(DEFAULT_ANNOUNCE) <= set(HOME_LABELS) and len(set(HOME_LABELS)) == len(HOME_LABELS) == 16
    assert {"cow", "frog", "laughing", "keyboard_typing"}.isdisjoint(HOME_LABELS)


def test_the_home_view_counts_only_home_sounds_and_home_label_starts() -> None:
    views = hh.score_views(_labelled_home(), FOUND, ["cow", "dog", "siren"], named=["cow", "dog"])
    home, every = views["home"], views["all"]
    assert home["events"] == 4 and every["events"] == 7
    assert home["recall"]["total"]["clips"] == 2 and home["recall"]["total"]["recalled"] == 2
    assert every["recall"]["total"]["clips"] == 3 and every["recall"]["total"]["recalled"] == 3
    assert home["recall_yamnet_labels"]["clips"] == 1 and every["recall_yamnet_labels"]["clips"] == 2
    assert home["false"]["total"] == {"events": 2, "per_hour": 200.0}  # cat and the dog in the pause, in 0.01 h
    assert every["false"]["total"] == {"events": 4, "per_hour": 400.0}
    assert home["false"]["where"] == {"near a sound": 1, "pauses": 1}
    assert every["false"]["where"] == {"near a sound": 2, "speech": 1, "pauses": 1}
    assert set(home["false"]["per_label"]) == {"cat", "dog"}


def test_the_table_prints_a_home_and_an_all_row_per_detector(material: Material) -> None:
    speech, other, sounds = material
    home = hs.build_home(speech, other, sounds, 2.0, RATE, seed=5)
    hits = [Detection(s.label, s.start_s + 0.5, s.start_s + 1.0) for s in home.spans]
    found = {"ours test 1": [*hits, Detection("frog", 1.0, 1.0)], "YAMNet int8 at 0.8": hits[:3]}
    args = hh.parse_args(["--floor-dbfs", "-45"])
    report = hh.build_report(home, found, ["dog", "siren"], args, fold=2)
    json.dumps(report, allow_nan=False)  # the JSON carries both views
    assert set(report["detectors"]["ours test 1"]) == {"home", "all"}
    lines = hh.table(report).splitlines()
    assert lines[0].split()[:2] == ["detector", "labels"]
    assert lines[1].startswith("ours test 1") and lines[1].split()[3] == "home"
    assert lines[2].split()[0] == "all" and lines[3].startswith("YAMNet int8 at 0.8") and lines[4].split()[0] == "all"
    assert "100% (10/10)" in lines[1] and "0.0" in lines[1].split() and "30.0" in lines[2].split()  # 1 frog in 2 min
    raised = sum(s["raised"] for s in home.sounds)
    assert f"{raised} raised to the -45 dBFS floor" in hh.table(report)
