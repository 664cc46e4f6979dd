"""``auricle teach`` and ``auricle feedback``: the device learns its home's sounds, in NumPy, on the device.

``auricle teach LABEL FILE...`` keeps the files as examples of LABEL (new, or one of the model's) and refits
the personal heads on the running model's embedding (edge/detect/teaching.py); ``--not LABEL FILE...`` says
"these are not LABEL"; ``--list`` shows what was taught; ``--forget LABEL`` removes it.  ``auricle feedback
EVENT_ID wrong|right`` turns an event the daemon heard into an example.  Everything lives in the state dir
(``model.state_dir`` of ``--config``) and never leaves the device; a running daemon picks the change up
within seconds.  Bad input is one line and changes nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from edge.audio.sources import AudioError
from edge.daemon.config import Config, load_config
from edge.daemon.startup import starting_model_of
from edge.detect import teaching
from edge.detect.set_command import unknown_label
from edge.learn.store import StoreError, TaughtStore, Verdict, check_label
from edge.model.bundle import BundleError
from edge.model.embedding import NoEmbedding
from edge.update.checks import Loaded

_LOGGER = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``teach`` and ``feedback``."""
    p = sub.add_parser(
        "teach",
        help="teach the device a sound from a few examples, or what a sound is not",
        description="Teach LABEL from a few recordings of it (5 are plenty): the device fits a personal head on "
        "the running model's embedding, with household background as negatives, and raises LABEL's events "
        "from then on. LABEL may be new or one of the model's. --not LABEL says the files are not LABEL "
        "(a model label is then silenced on such sounds). Examples stay in the state dir "
        "(model.state_dir/taught), on this device only.",
    )
    p.add_argument("label", nargs="?", metavar="LABEL", help="the sound's name (lowercase, digits, _)")
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="audio files (WAV; FLAC/OGG with soundfile)")
    p.add_argument("--not", dest="negative", action="store_true", help="the files are NOT LABEL")
    p.add_argument("--list", action="store_true", help="show the taught labels, their examples and thresholds")
    p.add_argument("--forget", metavar="LABEL", help="remove a taught label and its examples")
    p.add_argument("--config", "-c", metavar="FILE", help="daemon config (its model and model.state_dir)")
    p.set_defaults(handler=_teach)

    f = sub.add_parser(
        "feedback",
        help="say an event was wrong or right: it becomes an example",
        description="Turn an event the daemon heard (its id is in the event's payload and Home Assistant's "
        "sound event) into an example: 'wrong' = not its label, 'right' = its label.",
    )
    f.add_argument("event_id", metavar="EVENT_ID")
    f.add_argument("verdict", choices=("wrong", "right"))
    f.add_argument("--config", "-c", metavar="FILE", help="daemon config (its model.state_dir)")
    f.set_defaults(handler=_feedback)


def _teach(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = TaughtStore(config.model.state_dir)

    def teach() -> int:
        if args.list:
            return _list(store, config)
        if args.forget:
            return _forget(store, config, args.forget)
        if not args.label or not args.files:
            raise StoreError("teach: give LABEL and at least one FILE (or --list, or --forget LABEL)")
        verdict: Verdict = "not" if args.negative else "yes"
        return _add(store, config, check_label(args.label), verdict, args.files)

    return _said("teach", store, teach)


def _said(command: str, store: TaughtStore, work: Callable[[], int]) -> int:
    """Run ``work``; what the user got wrong is one line and 2, a store that cannot be written one line and 1."""
    try:
        return work()
    except (StoreError, NoEmbedding, AudioError, ValueError) as exc:  # FeedbackError is a ValueError
        print(f"auricle {command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"auricle {command}: cannot keep it in {store.root}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _model(config: Config) -> Loaded:
    startup = starting_model_of(config)
    if startup.model is None:
        raise BundleError(f"no model to teach: {startup.problem}")
    if not startup.model.classifier.has_embedding:
        startup.model.classifier.embedding()  # NoEmbedding's one line
    return startup.model


def _add(store: TaughtStore, config: Config, label: str, verdict: Verdict, files: list[Path]) -> int:
    began = time.monotonic()
    model = _model(config)
    clf, sha = model.classifier, model.sha256
    teaching.check_teachable(label, clf)
    known = set(clf.bundle.manifest.score_labels) | set(store.labels())
    if verdict == "not" and label not in known:
        raise StoreError(f"--not {unknown_label(label, sorted(known))}: teach it first, or name a model label")
    rate = clf.manifest.features.sample_rate
    clips = []
    for path in files:
        samples = teaching.read_clip(path, rate)
        teaching.check_clip(samples, clf, str(path))
        clips.append((samples, teaching.clip_windows(clf, samples)))
    embedded = time.monotonic() - began
    with store.lock():
        added = []
        try:
            for samples, windows in clips:
                example = store.add_audio(label, verdict, samples, rate)
                added.append(example)
                store.cache(example, sha, windows.rows, windows.levels)
            fitted = teaching.fit_all(store, clf, sha)
            store.save(fitted)
            store.touch()
        except BaseException:
            for example in added:  # nothing half-taught: the examples go with the failed fit
                example.path.unlink(missing_ok=True)
            raise
    new = set(clf.bundle.manifest.score_labels)
    what = "examples of" if verdict == "yes" else "examples of not"
    print(f"kept {len(clips)} {what} {label} in {store.root} (embedded in {embedded:.1f} s, "
          f"{time.monotonic() - began:.1f} s in all, model {model.bundle.manifest.name} "
          f"{model.bundle.manifest.version})")  # fmt: skip
    for head in fitted.heads:
        if head.label == label:
            print("  " + teaching.describe(head, head.label not in new))
    for line in fitted.lines:
        if line.startswith(("not fitted", label, "negatives")):
            print("  " + line)
    return 0


def _list(store: TaughtStore, config: Config) -> int:
    counts = store.labels()
    if not counts:
        print(f"nothing taught yet (state dir {store.root})")
        return 0
    model = _model(config)
    fitted = teaching.current(store, model.classifier, model.sha256)
    heads = fitted.heads if fitted else ()
    own = set(model.classifier.bundle.manifest.score_labels)
    m = model.bundle.manifest
    print(f"taught on this device ({store.root}), heads fitted for {m.name} {m.version}:")
    print(f"  {'label':<24} {'kind':<11} {'examples':>8} {'not':>4}  threshold")
    for label, n in sorted(counts.items()):
        kind = "model label" if label in own else "new label"
        mine = [h for h in heads if h.label == label]
        thresholds = ", ".join(
            teaching.threshold_text(h.threshold) + (" (correction)" if h.kind == "correction" else "") for h in mine
        )
        print(f"  {label:<24} {kind:<11} {n['yes']:>8} {n['not']:>4}  {thresholds or 'not fitted'}")
    for line in fitted.lines if fitted else ():
        if not line.startswith("fitted "):
            print(f"  {line}")
    return 0


def _forget(store: TaughtStore, config: Config, label: str) -> int:
    counts = store.labels()
    if label not in counts:
        raise StoreError(f"--forget {unknown_label(label, sorted(counts))}")
    model = _model(config)
    with store.lock():
        n = store.forget(label)
        fitted = teaching.fit_all(store, model.classifier, model.sha256)
        store.save(fitted)
        store.touch()
    print(f"forgot {label}: {n} example(s) deleted from {store.root}")
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from edge.detect.feedback import give

    config = load_config(args.config)
    store = TaughtStore(config.model.state_dir)

    def feedback() -> int:
        model = _model(config)
        print(give(store, model.classifier, model.sha256, args.event_id, args.verdict))
        return 0

    return _said("feedback", store, feedback)
