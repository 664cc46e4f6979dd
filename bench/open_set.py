"""Open-set rules replayed: how the AudioSet head's confirmation and a threshold floor trade recall for
false events, chosen on audio the held-out figures never use.

    .venv/bin/python -m bench.open_set --model RUN/esc50.auricle [--split calibrate] [--fold 1] [--seed 7]
        [--bed ../shared/data/background_more/background_more.csv]
        [--confirm 0 0.05 0.1 0.15] [--slope 0 2] [--keep-at 1 0.98] [--floor 0.05 0.2 0.3 0.4 0.5 0.6]
        [--thresholds-from BUNDLE]
        [--config configs/esc50.yaml] [--json-out FILE]

``--model`` is a two-output bundle: the per-hop scores of its event labels and its 521 AudioSet scores are
recorded once per stream through the daemon's pipeline (``edge.daemon.replay``; the default config
infers every hop) and cached in ``runs/bench/open_set``.  The bundle's own rule is left out of the
recording.  Each rule is then replayed through the device's own code: ``edge.model.audioset.HeadScorer``
with a ``Confirm`` of the mapping's classes (``configs/esc50_audioset.csv``; confirmation 0 = none; slope 0 the
hard gate, above 0 the soft confirmation, with ``--keep-at`` the label head scores it never weighs), and
the ``EventDetector`` at the thresholds of ``--thresholds-from`` (default: the model's own) raised to the
floor.  Three streams, all from one ``--split`` of the backgrounds:

- an hour in a home (``bench/home_stream.py``'s bed, from ``--bed``'s split, background.csv unless given; 90
  sounds of the home labels from ``--fold``): recall, false events per hour over the home labels and over all
  labels. A bed from background_more behaves like the never-tuned hour, which comes from that corpus
  (models/MODEL_CARD.md, 5.2.0's targets): choose on both beds;
- the split of every background source of ``--config`` back to back, then 30 min of its mixtures (as
  the training report's held-out figure): event starts per hour;
- the ``--fold`` clips as one stream (``bench/events.py``'s): event recall over all labels.

Choose on ``--split calibrate`` with a training fold's sounds; measure the choice once on ``report``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import event_scoring as scoring
from bench import home_stream, streams
from bench.event_scoring import HOME_LABELS, Detection, Span
from bench.streams import Floats
from edge.detect.events import EventDetector, EventParams
from edge.model.audioset import Confirm, HeadScorer
from edge.model.bundle import Manifest, read_bundle
from edge.model.classifier import Classifier
from edge.model.evidence import Evidence
from training.calibrate import evidence, replay
from training.data import background
from training.model import yamnet
from training.recipe.load import load

_LOGGER = logging.getLogger("bench.open_set")
CACHE = streams.ROOT / "runs" / "bench" / "open_set"
MIXTURE_S = 1800.0


@dataclass(frozen=True)
class Recording:
    """One stream: per inferred hop its offset, the event labels' scores (no rule) and the 521 AudioSet scores."""

    t: npt.NDArray[np.float64]
    events: Floats
    audioset: Floats
    seconds: float
    spans: tuple[Span, ...] = ()


def record(classifier: Classifier, samples: Floats, spans: Sequence[Span] = ()) -> Recording:
    """Both outputs at every hop of the daemon's pipeline over ``samples`` (training's own recorder)."""
    made = evidence.record(classifier, samples)
    rate = classifier.manifest.features.sample_rate
    return Recording(made.t, made.scores, made.audioset, len(samples) / rate, tuple(spans))


def _without_rule(manifest: Manifest) -> Manifest:
    head = manifest.audioset
    if head is None:
        raise SystemExit("the model has no AudioSet head: nothing to confirm with")
    # every rule the bundle states, the evidence included: a recording replayed under a rule must hold the
    # network's own scores, or the evidence is applied twice
    return dataclasses.replace(manifest, audioset=dataclasses.replace(head, veto=None, confirm=None, evidence=None))


def _cached(key: str, make: Any) -> Recording:
    path = CACHE / f"{key}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=True)
        spans = tuple(Span(*s) for s in z["spans"].tolist())
        return Recording(z["t"], z["events"], z["audioset"], float(z["seconds"]), spans)
    made: Recording = make()
    CACHE.mkdir(parents=True, exist_ok=True)
    spans_array = np.array([dataclasses.astuple(s) for s in made.spans], dtype=object)
    np.savez(path, t=made.t, events=made.events, audioset=made.audioset, seconds=made.seconds, spans=spans_array)
    return made


def home_key(name: str, bed: Path) -> str:
    """The cache key of the hour in a home: the default bed's as before, another bed's named after its file."""
    return f"{name}-home" if bed == streams.BACKGROUND_CSV else f"{name}-home-{bed.stem}"


def recordings(clf: Classifier, args: argparse.Namespace) -> dict[str, list[Recording]]:
    """The three streams of ``args.split`` (cached by model, split, fold and seed)."""
    rate, tag = clf.manifest.features.sample_rate, clf.manifest.model_sha256[:12]
    labels = [x for x in HOME_LABELS if x in clf.labels]

    def home() -> Recording:
        speech, other = home_stream.bed_material(args.bed, args.split, rate)
        rng = np.random.default_rng([args.seed, 3])
        sounds = home_stream.draw_sounds(streams.ESC50_CSV, args.fold, labels, 90, rate, rng)
        made = home_stream.build_home(speech, other, sounds, 60.0, rate, args.seed)
        return record(clf, made.samples, made.spans)

    def fold() -> Recording:
        items = streams.fold_items(streams.ESC50_CSV, args.fold, rate, None)
        samples, spans = streams.build_stream(items, 3.0, rate, args.seed)
        return record(clf, samples, spans)

    @functools.cache
    def parts() -> dict[str, Floats]:  # read and mixed only when a part is not cached yet
        loaded = load(args.config)
        sources = loaded.config.data.background
        paths = [p for s in sources for p in background.list_files(s, loaded.path(s.path))[args.split]]
        return dict(replay.part_streams(replay.read_part(paths, rate), rate, MIXTURE_S))

    name = f"{tag}-{args.split}-{args.fold}-{args.seed}"
    return {
        "home": [_cached(home_key(name, args.bed), home)],
        "background": [
            _cached(f"{tag}-{args.split}-{part}", lambda part=part: record(clf, parts()[part]))
            for part in ("plain", "mixtures")
        ],
        "fold": [_cached(f"{tag}-fold{args.fold}-{args.seed}", fold)],
    }


class Rule:
    """A confirmation threshold (0: none) or a fitted evidence, and a floor under the thresholds, through the
    device's code."""

    def __init__(self, manifest: Manifest, mapping: dict[str, list[int]], confirm: float, floor: float,
                 thresholds: dict[str, float], evidence: Evidence | None = None,
                 slope: float = 0.0, keep_at: float = 1.0) -> None:  # fmt: skip
        head = manifest.audioset
        assert head is not None
        labels = manifest.event_labels
        classes = {x: tuple(mapping[x]) for x in labels if x in mapping}
        soft = {"slope": slope, "keep_at": keep_at}
        rule = Confirm(threshold=confirm, classes=classes, **soft) if confirm > 0 and evidence is None else None
        self.scorer = HeadScorer(dataclasses.replace(head, confirm=rule, evidence=evidence, labels=()), labels)
        self.labels = labels
        self.thresholds = {x: max(thresholds[x], floor) for x in labels}

    def starts(self, rec: Recording) -> list[Detection]:
        det = EventDetector(self.labels, self.thresholds, EventParams())
        found = []
        for t, events, audioset in zip(rec.t, rec.events, rec.audioset, strict=True):
            for e in det.update(self.scorer.combine(events, audioset), float(t)):
                if e.kind == "start":
                    found.append(Detection(e.label, e.start_offset_s, e.offset_s))
        return found


def figures(rule: Rule, recs: dict[str, list[Recording]]) -> dict[str, Any]:
    """Recall and false events per hour of one rule on the three streams."""
    home = recs["home"][0]
    found = rule.starts(home)
    false = [d for d in found if not any(s.label == d.label and scoring.in_window(s, d.start_s) for s in home.spans)]
    hours = home.seconds / 3600
    labels = [x for x in HOME_LABELS if x in rule.labels]
    bg = [d for rec in recs["background"] for d in rule.starts(rec)]
    bg_hours = sum(rec.seconds for rec in recs["background"]) / 3600
    fold = recs["fold"][0]
    return {
        "home_recall": scoring.recall(list(home.spans), found, labels)["total"]["recall"],
        "home_false_per_hour_home": round(sum(d.label in HOME_LABELS for d in false) / hours, 1),
        "home_false_per_hour_all": round(len(false) / hours, 1),
        "home_false_labels": dict(Counter(d.label for d in false).most_common()),
        "background_false_events": len(bg),
        "background_hours": round(bg_hours, 2),
        "fold_recall": scoring.recall(list(fold.spans), rule.starts(fold), rule.labels)["total"]["recall"],
    }


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    bg_hours = rows[0]["background_hours"] if rows else 0
    lines = [
        f"split {args.split}, fold {args.fold}, seed {args.seed}; thresholds of {args.thresholds_from or args.model}",
        f"{'confirm':>8} {'slope':>5} {'keep':>5} {'floor':>6}  {'home recall':>11}  {'false/h home / all':>18}  "
        f"{'background (' + format(bg_hours, '.2f') + ' h)':>20}  {'fold recall':>11}",
    ]
    for r in rows:
        rule = "evidence" if r.get("evidence") else f"{r['confirm']:.2f}"
        lines.append(
            f"{rule:>8} {r.get('slope', 0):>5g} {r.get('keep_at', 1):>5g} {r['floor']:>6.2f}  "
            f"{r['home_recall']:>11.0%}  "
            f"{r['home_false_per_hour_home']:>8.1f} / {r['home_false_per_hour_all']:<7.1f}  "
            f"{r['background_false_events']:>20d}  {r['fold_recall']:>11.0%}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a two-output bundle (its own rule is ignored)")
    p.add_argument("--thresholds-from", type=Path, help="bundle whose thresholds to floor (default: --model's)")
    p.add_argument("--split", default="calibrate", choices=("calibrate", "report"))
    p.add_argument("--fold", type=int, default=1, help="ESC-50 fold of the sounds (a training fold to choose)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--bed", type=Path, default=streams.BACKGROUND_CSV,
        help="background CSV the hour in a home is built from (bench/home_hour.py's --background)",
    )  # fmt: skip
    p.add_argument("--confirm", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.15])
    p.add_argument("--floor", type=float, nargs="+", default=[0.05, 0.2, 0.3, 0.4, 0.5, 0.6])
    p.add_argument("--slope", type=float, nargs="+", default=[0.0], help="0: the hard gate; else the soft one")
    p.add_argument("--keep-at", type=float, nargs="+", default=[1.0], help="label head scores kept whatever")
    p.add_argument("--config", type=Path, default=streams.ROOT / "configs" / "esc50.yaml", help="the backgrounds")
    p.add_argument("--mapping", type=Path, default=streams.MAPPING_CSV, help="ESC-50 label -> AudioSet classes")
    p.add_argument(
        "--evidence", type=Path, help="also replay this bundle's audioset.evidence at its own thresholds, floored"
    )
    p.add_argument("--json-out", type=Path, default=streams.ROOT / "runs" / "bench" / "open_set.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bundle = read_bundle(args.model)
    bare = _without_rule(bundle.manifest)
    clf = Classifier(dataclasses.replace(bundle, manifest=bare), threads=1)
    thresholds = dict(
        read_bundle(args.thresholds_from).manifest.thresholds if args.thresholds_from else bare.thresholds
    )
    class_names = yamnet.read_class_names(streams.SHARED / "peers" / "yamnet_class_map.csv")
    mapping = yamnet.read_mapping(args.mapping, class_names)
    recs = recordings(clf, args)
    rows = []
    for confirm, slope, keep_at, floor in itertools.product(args.confirm, args.slope, args.keep_at, args.floor):
        rule = Rule(bare, mapping, confirm, floor, thresholds, slope=slope, keep_at=keep_at)
        rows.append({"confirm": confirm, "slope": slope, "keep_at": keep_at, "floor": floor} | figures(rule, recs))
    if args.evidence:
        fitted = read_bundle(args.evidence).manifest
        if fitted.audioset is None or fitted.audioset.evidence is None:
            raise SystemExit(f"{args.evidence}: no audioset.evidence section")
        if fitted.model_sha256 != bundle.manifest.model_sha256:
            raise SystemExit(f"{args.evidence}: another network than --model's: its recordings do not apply")
        for floor in args.floor:
            rule = Rule(bare, mapping, 0.0, floor, dict(fitted.thresholds), fitted.audioset.evidence)
            rows.append({"confirm": 0.0, "evidence": True, "floor": floor} | figures(rule, recs))
    streams.publish(table(rows, args), rows, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
