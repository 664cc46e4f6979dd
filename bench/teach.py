"""Teaching on the device, measured through the daemon's pipeline and event logic (issue 25 item 7).

    .venv/bin/python -m bench.teach [--split report|calibrate] [--part fewshot feedback cost]
        [--model BUNDLE] [--draws 3] [--confusion SOUND LABEL] [--tiny] [--cache DIR] [--json-out FILE]
    .venv/bin/python -m bench.tune_teach ...   (the hyper-parameter sweep, calibrate only)

- **Few-shot.**  Base: YAMNet int8's own network, which never learned the ESC-50 labels, on the model's
  windows and hop (bench/teach_record.py).  For each K in 1, 3, 5, 10 and each draw, K example clips of each of
  ten household labels (bench/teach_material.py) become heads exactly as ``auricle teach`` fits them
  (``edge.learn.heads.fit_head`` with ``edge.detect.teaching.fit_all``'s negatives: the bundle's background
  set, a reservoir, the other labels' examples), all ten taught together.  Their per-hop scores go through
  ``edge.learn.personal.Personal`` and the daemon's ``EventDetector`` (default parameters, the taught
  labels' threshold).  Recall: withheld clips of those labels in a home bed of held-out background; false
  events per hour: of that stream, and of the held-out background corpora back to back.  Beside it YAMNet's
  AudioSet class for the same sound at 0.8 as Frigate runs it (bench/streams.py), on the same samples.
- **Feedback.**  Base: the shipped model (its embedding).  A sound the model confuses with one of its labels
  (chosen on calibrate material: bench/tune_teach.py), its withheld clips placed several times in each half
  of a held-out home stream, the label's own clips in the second half.  The first N confusions of the first
  half become "wrong" verdicts (the event's hop embeddings from 1 s before its start to its end, as the
  daemon keeps them), fitted as a correction as ``fit_all`` does; the second half is replayed with it:
  confusions left, and the label's recall, beside no feedback.  ``--confusion SOUND LABEL`` names another case
  (footsteps taken for door_wood_knock is 5.3.0's last home-label false event on the never-tuned hours).
- **Cost.**  ``Personal.apply`` with 10 heads against one ``Classifier.scores`` call; ``auricle teach`` with
  5 clips, wall time, and what it means on a Raspberry Pi 4.

Every figure is printed with the targets of issue 25 in the same run.  Embeddings and fitted heads are
cached under ``runs/bench/teach`` (``--cache``); ``--tiny`` is a seconds-long case for CI
(tests/bench/test_bench_teach.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import streams
from bench import teach_cost as cost
from bench import teach_material as tm
from bench import teach_record as tr
from bench.event_scoring import Detection, Span, in_window
from edge.daemon.learning import LEAD_S
from edge.detect.events import EventDetector, EventParams
from edge.learn.heads import Head
from edge.learn.personal import TAUGHT_THRESHOLD, Personal
from edge.model.bundle import BundleError, read_bundle
from edge.model.classifier import Classifier
from training.model import yamnet

_LOGGER = logging.getLogger("bench.teach")
F32 = tm.F32
LABELS = (
    *("door_wood_knock", "washing_machine", "vacuum_cleaner", "toilet_flush", "footsteps"),
    *("door_wood_creaks", "glass_breaking", "can_opening", "water_drops", "clock_alarm"),
)
"""Household sounds a user would teach (YAMNet names all but washing_machine and can_opening)."""
CONFUSION = ("footsteps", "fireworks")
"""(the sound, the model label it is taken for): the most frequent confusion of esc50 4.x on calibrate material
(folds 1-3 in one stream: 5 of 24 footsteps clips raised fireworks; bench/tune_teach.py)."""
NS = (0, 1, 3, 5)
YAMNET_THRESHOLD = 0.8
PLANS = {
    "report": tm.Plan("report", (1, 2, 3), 4, LABELS, (1, 3, 5, 10), 3, 60.0),
    "calibrate": tm.Plan("calibrate", (1, 2), 3, LABELS, (1, 3, 5, 10), 3, 60.0, other=False),
    "tiny": tm.Plan(
        split="report",
        example_folds=(1,),
        sound_fold=4,
        labels=("toilet_flush", "door_wood_knock"),
        ks=(1, 3),
        draws=1,
        home_minutes=1.5,
        per_label=3,
        files=8,
        other=False,
        bundle_windows=40,
        reservoir_rows=20,
        reservoir_minutes=2.0,
        train_files=40,
        feedback_minutes=1.5,
        feedback_clips=2,
        repeats=2,
    ),
}


# --- few-shot -------------------------------------------------------------------------------------------


def draws(names: dict[str, list[str]], plan: tm.Plan) -> list[dict[str, list[str]]]:
    """Per draw, each label's examples in a seeded order: the first K are that draw's K examples."""
    return [
        {label: [clips[i] for i in np.random.default_rng([plan.seed, d, j]).permutation(len(clips))]
         for j, (label, clips) in enumerate(sorted(names.items()))}
        for d in range(plan.draws)
    ]  # fmt: skip


def taught_detector(personal: Personal) -> EventDetector:
    """The daemon's detector of the taught labels alone (a base with no labels of its own): default parameters,
    each at TAUGHT_THRESHOLD, where ``Personal`` maps its head's threshold."""
    return EventDetector(personal.labels, dict.fromkeys(personal.labels, TAUGHT_THRESHOLD), EventParams())


def score(spans: Sequence[Span], found: Sequence[Detection], labels: Sequence[str]) -> dict[str, Any]:
    """Per label the sounds and those heard (an event of its label starting 0.5 s before to 1 s after it), and
    the false starts: every start that is not such an event."""
    per = {x: {"sounds": 0, "heard": 0} for x in labels}
    for s in spans:
        if s.label in per:
            per[s.label]["sounds"] += 1
            per[s.label]["heard"] += any(d.label == s.label and in_window(s, d.start_s) for d in found)
    false = [d for d in found if not any(s.label == d.label and in_window(s, d.start_s) for s in spans)]
    return {"per_label": per, "false": len(false), "false_labels": [d.label for d in false]}


@dataclass(frozen=True)
class FewShot:
    """What every few-shot fit and replay of one plan shares: the example clips, the negatives, both streams."""

    plan: tm.Plan
    base: tr.YamnetBase
    clips: dict[str, tr.Clip]
    names: dict[str, list[str]]
    bundle: F32
    reservoir: F32
    home: tr.Hops
    background: tr.Hops
    clean: tr.Hops
    """The withheld clips alone, 3 s of -70 dBFS noise between them (as bench/events.py plays a fold)."""
    home_stream: tuple[str, Callable[[], tuple[F32, list[Span]]]]
    clean_stream: tuple[str, Callable[[], tuple[F32, list[Span]]]]

    def examples(self, draw: dict[str, list[str]], k: int) -> dict[str, F32]:
        """The sounding windows of each label's first ``k`` examples of a draw."""
        spec = tr.codes_of(self.base)
        return {x: np.concatenate([self.clips[n].sounding(spec) for n in draw[x][:k]]) for x in draw}

    def run(self, heads: Sequence[Head]) -> dict[str, Any]:
        """One set of heads replayed over both streams, scored."""
        personal = Personal(heads, (), {})
        on_home = [d for d, _ in tm.replay(self.home, personal, taught_detector(personal))]
        on_bg = [d for d, _ in tm.replay(self.background, personal, taught_detector(personal))]
        on_clean = [d for d, _ in tm.replay(self.clean, personal, taught_detector(personal))]
        clean = score(self.clean.spans, on_clean, self.plan.labels)["per_label"]
        scored = score(self.home.spans, on_home, self.plan.labels)
        heard = [sum(v[k] for v in clean.values()) for k in ("heard", "sounds")]
        return scored | {"background_false": len(on_bg), "thresholds": [h.threshold for h in heads], "clean": heard}


def setup(plan: tm.Plan, base: tr.YamnetBase) -> FewShot:
    rate = base.manifest.features.sample_rate
    items = tm.example_items(plan, plan.labels)
    clips = tr.clips(base, items, f"examples-{plan.example_folds}")
    names: dict[str, list[str]] = {}
    for name, label, _ in items:
        names.setdefault(label, []).append(name)
    bundle, reservoir = tm.negatives(base, plan)
    home_key = f"home|{plan.split}|{plan.sound_fold}|{plan.labels}|{plan.home_minutes}|{plan.files}|{plan.other}"
    home_key += f"|{plan.per_label}"

    def make_home() -> tuple[F32, list[Span]]:
        sounds = tm.withheld(plan, plan.labels, rate, plan.per_label)
        return tm.home(plan, sounds, rate, plan.home_minutes, plan.seed)

    home = tr.cached_hops(base, home_key, make_home)
    bg = tr.cached_hops(base, f"background|{plan.split}|{plan.files}|{plan.seed}", lambda: tm.background(plan, rate))

    def make_clean() -> tuple[F32, list[Span]]:
        return streams.build_stream(tm.withheld(plan, plan.labels, rate, plan.per_label), 3.0, rate, plan.seed)

    clean = tr.cached_hops(base, "clean" + home_key[4:], make_clean)
    streams_ = (home_key, make_home), ("clean" + home_key[4:], make_clean)
    return FewShot(plan, base, clips, names, bundle, reservoir, home, bg, clean, *streams_)


def fewshot(plan: tm.Plan, base: tr.YamnetBase, peer: yamnet.Yamnet) -> dict[str, Any]:
    """Recall and false events of heads taught from K examples, per K, pooled over the draws; YAMNet beside."""
    fs = setup(plan, base)
    rows = []
    for k in plan.ks:
        for scenario, common in (
            ("bundle+reservoir", np.concatenate([fs.bundle, fs.reservoir])),
            ("bundle", fs.bundle),
        ):
            if scenario == "bundle" and k != 5:
                continue
            runs = [fs.run(tm.fit_cached(base, fs.examples(d, k), {}, common)) for d in draws(fs.names, plan)]
            rows.append({"k": k, "negatives": scenario, "runs": runs})
    return {
        "labels": list(plan.labels),
        "negatives": {"bundle": len(fs.bundle), "reservoir": len(fs.reservoir)},
        "home": {"minutes": round(fs.home.seconds / 60, 2), "sounds": len(fs.home.spans)},
        "background_hours": round(tm.audio_hours(fs.background), 4),
        "rows": [pooled(r, fs.home, fs.background) for r in rows],
        "yamnet": _yamnet(plan, base, peer, fs),
    }


def pooled(row: dict[str, Any], home: tr.Hops, bg: tr.Hops) -> dict[str, Any]:
    runs = row["runs"]
    labels = list(runs[0]["per_label"])
    counts = {x: [sum(r["per_label"][x][k] for r in runs) for k in ("heard", "sounds")] for x in labels}
    heard = sum(r["per_label"][x]["heard"] for r in runs for x in labels)
    sounds = sum(r["per_label"][x]["sounds"] for r in runs for x in labels)
    thr = [t for r in runs for t in r["thresholds"]]
    clean = [sum(r["clean"][i] for r in runs) for i in (0, 1)]
    n, home_h, bg_h = len(runs), home.seconds / 3600, tm.audio_hours(bg)
    return {
        "k": row["k"], "negatives": row["negatives"], "draws": n,
        "recall": round(heard / max(1, sounds), 4), "heard": heard, "sounds": sounds,
        "per_label": {x: round(h / max(1, n), 3) for x, (h, n) in counts.items()},
        "per_label_counts": counts,
        "clean_recall": round(clean[0] / max(1, clean[1]), 4),
        "home_false": sum(r["false"] for r in runs),
        "home_false_per_h": round(sum(r["false"] for r in runs) / (n * home_h), 2),
        "background_false": sum(r["background_false"] for r in runs),
        "background_false_per_h": round(sum(r["background_false"] for r in runs) / (n * bg_h), 2) if bg_h else None,
        "threshold_min_median_max": [round(float(v), 6) for v in np.percentile(thr, [0, 50, 100])],
    }  # fmt: skip


def _yamnet(plan: tm.Plan, base: tr.YamnetBase, peer: yamnet.Yamnet, fs: FewShot) -> dict[str, Any]:
    """YAMNet's AudioSet classes of the labels at 0.8, Frigate's way, on the same three streams."""
    mapping = {x: v for x, v in yamnet.read_mapping(streams.MAPPING_CSV, peer.class_names).items() if x in plan.labels}
    rate, bg = base.manifest.features.sample_rate, fs.background
    key, make_home = fs.home_stream
    on_home, home_spans, home_s = tr.cached_detections(
        base, "frigate|" + key, make_home, peer, mapping, YAMNET_THRESHOLD
    )
    on_clean, clean_spans, _ = tr.cached_detections(
        base, "frigate|" + fs.clean_stream[0], fs.clean_stream[1], peer, mapping, YAMNET_THRESHOLD
    )
    clean = score(clean_spans, on_clean, list(mapping))["per_label"].values()
    on_bg, _, _ = tr.cached_detections(
        base, f"frigate|background|{plan.split}|{plan.files}|{plan.seed}", lambda: tm.background(plan, rate),
        peer, mapping, YAMNET_THRESHOLD,
    )  # fmt: skip
    scored = score(home_spans, on_home, list(mapping))
    heard = sum(v["heard"] for v in scored["per_label"].values())
    sounds = sum(v["sounds"] for v in scored["per_label"].values())
    return {
        "threshold": YAMNET_THRESHOLD, "labels": list(mapping), "unnamed": [x for x in plan.labels if x not in mapping],
        "recall": round(heard / max(1, sounds), 4), "heard": heard, "sounds": sounds,
        "clean_recall": round(sum(v["heard"] for v in clean) / max(1, sum(v["sounds"] for v in clean)), 4),
        "per_label": {x: round(v["heard"] / max(1, v["sounds"]), 3) for x, v in scored["per_label"].items()},
        "home_false_per_h": round(scored["false"] / (home_s / 3600), 2),
        "background_false_per_h": round(len(on_bg) / tm.audio_hours(bg), 2) if tm.audio_hours(bg) else None,
    }  # fmt: skip


# --- feedback -------------------------------------------------------------------------------------------


def feedback_stream(
    plan: tm.Plan, clf: Classifier, seed: int, disjoint: bool, confusion: tuple[str, str] = CONFUSION
) -> tuple[tr.Hops, tr.Hops]:
    """(first half, second half) of a held-out home stream with the confused sound's withheld clips, each placed
    ``plan.repeats`` times per half (other places and levels, another bed): all of them in both halves (the same
    sources recurring, as a home's one dishwasher does), or with ``disjoint`` half of them in each (other
    recordings of the sound); the label's own withheld clips (twice each) in the second half."""
    rate, (sound, label), minutes = clf.manifest.features.sample_rate, confusion, plan.feedback_minutes
    key = f"feedback|{plan}|{seed}|{confusion}|{disjoint}"

    def make() -> tuple[F32, list[Span]]:
        mine = tm.withheld(plan, [sound], rate, plan.feedback_clips)
        order = np.random.default_rng([plan.seed, seed]).permutation(len(mine))
        first, second = [mine[i] for i in order[: len(mine) // 2]], [mine[i] for i in order[len(mine) // 2 :]]
        if not disjoint:
            first = second = mine
        theirs = tm.withheld(plan, [label], rate, plan.feedback_clips)
        a, spans_a = tm.home(plan, first * plan.repeats, rate, minutes, 100 * plan.seed + 2 * seed)
        b, spans_b = tm.home(plan, second * plan.repeats + theirs * 2, rate, minutes, 100 * plan.seed + 2 * seed + 1)
        shift = len(a) / rate
        moved = [dataclasses.replace(s, start_s=s.start_s + shift, end_s=s.end_s + shift) for s in spans_b]
        return np.concatenate([a, b]), [*spans_a, *moved]

    hops = tr.cached_hops(clf, key, make)
    half = minutes * 60
    return hops.part(0.0, half), hops.part(half, hops.seconds)


def model_detector(clf: Classifier, personal: Personal | None) -> EventDetector:
    """The daemon's detector for the model with the heads, every label listened for (as bench/streams.py)."""
    manifest = dataclasses.replace(clf.bundle.manifest, taught=personal.added if personal else ())
    return EventDetector.for_model(manifest, EventParams(listening="all"))


def confusions(
    found: Sequence[tuple[Detection, float]], spans: Sequence[Span], confusion: tuple[str, str] = CONFUSION
) -> list[tuple[Detection, float]]:
    sound, label = confusion
    return [
        f for f in found if f[0].label == label and any(s.label == sound and in_window(s, f[0].start_s) for s in spans)
    ]


def verdict_rows(hops: tr.Hops, wrong: Sequence[tuple[Detection, float]]) -> F32:
    """The embeddings a "wrong" verdict keeps of each event when recording is off (edge/daemon/learning.py):
    its hops from LEAD_S before its start to its end."""
    rows = hops.embeddings()
    return np.concatenate([rows[(hops.t >= d.start_s - LEAD_S) & (hops.t <= end)] for d, end in wrong])


def feedback(
    plan: tm.Plan, clf: Classifier, disjoint: bool = False, confusion: tuple[str, str] = CONFUSION
) -> dict[str, Any]:
    """Confusions and the label's recall in the second half after N "wrong" verdicts from the first;
    ``confusion``: (the sound, the model label it is taken for)."""
    sound, label = confusion
    bundle, reservoir = tm.negatives(clf, plan)
    common, labels = np.concatenate([bundle, reservoir]), clf.bundle.manifest.score_labels
    thresholds = clf.bundle.manifest.score_thresholds
    plain = None  # the model as shipped (Classifier.taught(()) applies no Personal either)
    totals = {
        n: dict.fromkeys(("confusions", "heard", "sounds", "instances", "verdicts", "other_false"), 0) for n in NS
    }
    for seed in range(plan.draws):
        first, second = feedback_stream(plan, clf, seed, disjoint, confusion)
        wrong = confusions(tm.replay(first, plain, model_detector(clf, plain)), first.spans, confusion)
        for n in NS:
            personal = plain
            if n and wrong:
                heads = tm.fit_cached(clf, {}, {label: verdict_rows(first, wrong[:n])}, common, labels)
                personal = Personal(heads, labels, thresholds)
            found = tm.replay(second, personal, model_detector(clf, personal))
            scored = score(second.spans, [d for d, _ in found], [label])
            mistaken = len(confusions(found, second.spans, confusion))
            t = totals[n]
            t["confusions"] += mistaken
            t["heard"] += scored["per_label"][label]["heard"]
            t["sounds"] += scored["per_label"][label]["sounds"]
            t["instances"] += sum(s.label == sound for s in second.spans)
            t["verdicts"] += min(n, len(wrong))
            t["other_false"] += scored["false"] - mistaken
    rows = []
    for n, t in totals.items():
        none = totals[0]
        fall = 1 - t["confusions"] / none["confusions"] if none["confusions"] else None
        loss = 100 * (none["heard"] - t["heard"]) / max(1, t["sounds"])
        rows.append(t | {"n": n, "recall": round(t["heard"] / max(1, t["sounds"]), 4),
                         "fall": None if fall is None else round(fall, 4), "loss_points": round(loss, 2)})  # fmt: skip
    return {"sound": sound, "label": label, "draws": plan.draws, "repeats": plan.repeats, "disjoint": disjoint,
            "minutes_per_half": plan.feedback_minutes, "rows": rows}  # fmt: skip


# --- output ---------------------------------------------------------------------------------------------


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else "MET" if ok else "NOT MET"


def table(report: dict[str, Any]) -> str:
    lines: list[str] = []
    fs = report.get("fewshot")
    if fs:
        lines += _fewshot_lines(fs, report["split"])
    for part in ("feedback", "feedback_other"):
        if report.get(part):
            lines += _feedback_lines(report[part], report["split"], report["model"])
    if report.get("cost"):
        lines += cost.lines(report["cost"])
    return "\n".join(lines + targets(report))


def _fewshot_lines(fs: dict[str, Any], split: str) -> list[str]:
    y = fs["yamnet"]
    lines = [
        f"FEW-SHOT on YAMNet's network ({split} split): {len(fs['labels'])} labels taught together, "
        f"{fs['home']['sounds']} withheld sounds in a {fs['home']['minutes']:.0f} min home stream, "
        f"{fs['background_hours']:.2f} h of background; negatives: bundle set {fs['negatives']['bundle']}, "
        f"reservoir {fs['negatives']['reservoir']}",
        f"{'K':>3} {'negatives':>17} {'draws':>5} {'recall':>14} {'YAMNet-named':>12} {'clean clips':>11} "
        f"{'false/h home':>12} {'false/h background':>18} {'threshold min/med/max':>24}",
    ]
    for r in fs["rows"]:
        named = _named_recall(r, y["labels"])
        thr = "/".join(f"{v:.4g}" for v in r["threshold_min_median_max"])
        lines.append(
            f"{r['k']:>3} {r['negatives']:>17} {r['draws']:>5} {r['recall']:>6.0%} ({r['heard']}/{r['sounds']})"
            f"{named:>12.0%} {r['clean_recall']:>11.0%} {r['home_false_per_h']:>12.2f} "
            f"{r['background_false_per_h']:>18.2f} {thr:>24}"
        )
    lines.append(
        f"YAMNet AudioSet class at {y['threshold']} (Frigate's way), the {len(y['labels'])} labels it names: recall "
        f"{y['recall']:.0%} ({y['heard']}/{y['sounds']}), clean clips {y['clean_recall']:.0%}, false/h home "
        f"{y['home_false_per_h']:.2f}, background {y['background_false_per_h']:.2f}; "
        f"cannot name {', '.join(y['unnamed']) or '-'}"
    )
    five = next((r for r in fs["rows"] if r["k"] == 5 and r["negatives"] == "bundle+reservoir"), None)
    if five:
        lines.append("K=5 per label (ours | YAMNet 0.8): " + ", ".join(
            f"{x} {v:.0%}|{y['per_label'][x]:.0%}" if x in y["per_label"] else f"{x} {v:.0%}|-"
            for x, v in five["per_label"].items()))  # fmt: skip
    return lines


def _named_recall(row: dict[str, Any], named: Sequence[str]) -> float:
    """Recall over the sounds of the labels YAMNet names."""
    counts = [row["per_label_counts"][x] for x in named if x in row["per_label_counts"]]
    return float(sum(h for h, _ in counts) / max(1, sum(n for _, n in counts)))


def _feedback_lines(fb: dict[str, Any], split: str, model: str) -> list[str]:
    lines = [
        f"FEEDBACK on {model} ({split} split): {fb['sound']} taken for {fb['label']}; {fb['draws']} "
        f"stream(s) of 2 x {fb['minutes_per_half']:g} min, each withheld {fb['sound']} clip {fb['repeats']}x per half, "
        + (
            "half of the clips in each half (other recordings)"
            if fb["disjoint"]
            else "all of them in both halves (the same sources recurring)"
        ),
        f"{'N':>3} {'verdicts':>8} {'confusions (2nd half)':>22} {'fall':>6} {fb['label'] + ' recall':>22} "
        f"{'loss (points)':>13} {'other false':>11}",
    ]
    for r in fb["rows"]:
        fall = "-" if r["fall"] is None else f"{r['fall']:.0%}"
        lines.append(
            f"{r['n']:>3} {r['verdicts']:>8} {r['confusions']:>10} of {r['instances']:<9} {fall:>6} "
            f"{r['recall']:>12.0%} ({r['heard']}/{r['sounds']}) {r['loss_points']:>13.1f} {r['other_false']:>11}"
        )
    return lines


def targets(report: dict[str, Any]) -> list[str]:
    """Issue 25's targets, met or not, with the figure."""
    out = ["TARGETS (issue 25):"]
    fs, fb, c = report.get("fewshot"), report.get("feedback"), report.get("cost")
    if fs:
        r = next((r for r in fs["rows"] if r["k"] == 5 and r["negatives"] == "bundle+reservoir"), None)
        if r:
            n = len(fs["labels"])
            bg, home = r["background_false_per_h"] / n, r["home_false_per_h"] / n
            out.append(
                f"- 5 examples of a new sound: event recall >= 0.90: {_met(r['recall'] >= 0.9)} ({r['recall']:.2f} "
                f"in the home stream; {r['clean_recall']:.2f} on the clips alone); <= 1 false event/h per taught sound "
                f"on held-out speech and household audio: background corpora {_met(bg <= 1)} ({bg:.2f}/h), home "
                f"stream {_met(home <= 1)} ({home:.2f}/h); all {n} labels together {r['background_false_per_h']:.2f} "
                f"and {r['home_false_per_h']:.2f}/h"
            )
    if fb:
        r5 = next(r for r in fb["rows"] if r["n"] == 5)
        ok = None if r5["fall"] is None else r5["fall"] >= 0.8 and r5["loss_points"] <= 5
        fall = "-" if r5["fall"] is None else f"{r5['fall']:.0%} ({fb['rows'][0]['confusions']} -> {r5['confusions']})"
        out.append(
            f"- 5 'wrong' verdicts: confusions fall >= 80% at <= 5 points of recall: {_met(ok)} (fall {fall}, "
            f"{r5['loss_points']:.1f} points, {r5['verdicts']} verdicts over {fb['draws']} stream(s); the same "
            "sources recurring)"
        )
    if c:
        out += cost.targets(c, _met)
    return out


# --- main -----------------------------------------------------------------------------------------------


def unknown_confusion(confusion: tuple[str, str], clf: Classifier, plan: tm.Plan) -> str:
    """What is wrong with a feedback case (a sound with no withheld ESC-50 clip, a label the model lacks), or ""."""
    sound, label = confusion
    if not any(r["category"] == sound and int(r["fold"]) == plan.sound_fold for r in tm.esc50_rows()):
        return f"no ESC-50 clip of {sound!r} in fold {plan.sound_fold}"
    if label not in clf.manifest.score_labels:
        return f"{label!r} is not a label of {clf.manifest.name} {clf.manifest.version}"
    return ""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=streams.ROOT / "models" / "esc50.auricle")
    p.add_argument("--split", choices=("report", "calibrate"), default="report")
    p.add_argument(
        "--part", nargs="+", choices=("fewshot", "feedback", "cost"), default=["fewshot", "feedback", "cost"]
    )
    p.add_argument("--draws", type=int, default=None, help="draws of the examples / feedback streams (default 3)")
    p.add_argument(
        "--confusion", nargs=2, metavar=("SOUND", "LABEL"), default=list(CONFUSION),
        help=f"the feedback case: a sound and the label the model takes it for (default {' '.join(CONFUSION)})",
    )  # fmt: skip
    p.add_argument("--tiny", action="store_true", help="a seconds-long case (2 labels, K 1 and 3, short streams)")
    p.add_argument("--cache", type=Path, default=tr.CACHE, help="where embeddings and heads are kept")
    p.add_argument("--json-out", type=Path, default=streams.ROOT / "runs" / "bench" / "teach.json")
    return p.parse_args(argv)


def plan_of(args: argparse.Namespace) -> tm.Plan:
    plan = PLANS["tiny" if args.tiny else args.split]
    return dataclasses.replace(plan, draws=args.draws) if args.draws else plan


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tr.CACHE = args.cache
    plan, began = plan_of(args), time.monotonic()
    try:
        clf = Classifier(read_bundle(args.model), threads=1)
    except (BundleError, OSError) as e:
        _LOGGER.error("bench.teach --model: %s", e)
        return 2
    wrong = "feedback" in args.part and unknown_confusion((args.confusion[0], args.confusion[1]), clf, plan)
    if wrong:
        _LOGGER.error("bench.teach --confusion: %s", wrong)
        return 2
    needs = [part for part in args.part if part in ("feedback", "cost")]
    if needs and not clf.has_embedding:
        _LOGGER.error(
            "bench.teach --model: %s: %s %s has no embedding output, which --part %s teaches on "
            "(auricle-train embed adds one)",
            args.model, clf.manifest.name, clf.manifest.version, " ".join(needs),
        )  # fmt: skip
        return 2
    report: dict[str, Any] = {
        "split": plan.split,
        "tiny": args.tiny,
        "model": f"{clf.manifest.name} {clf.manifest.version}",
    }
    if "fewshot" in args.part:
        peers = streams.SHARED / "peers"
        peer = yamnet.Yamnet(yamnet.YamnetParams(model_path=peers / "yamnet_spectra_in.tflite",
                                                 class_map_path=peers / "yamnet_class_map.csv"))  # fmt: skip
        report["fewshot"] = fewshot(plan, tr.YamnetBase(peer, clf.manifest), peer)
    if "feedback" in args.part:
        confusion = (args.confusion[0], args.confusion[1])
        report["feedback"] = feedback(plan, clf, confusion=confusion)
        report["feedback_other"] = feedback(plan, clf, disjoint=True, confusion=confusion)
    if "cost" in args.part:
        report["cost"] = cost.measure(clf, args.model, tiny=args.tiny)
    report["seconds"] = round(time.monotonic() - began, 1)
    streams.publish(table(report) + f"\n({report['seconds']:.0f} s)", report, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
