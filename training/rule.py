"""The AudioSet rule in the evaluate stage: the evidence fitted on the validation clips (when the recipe asks
for it), the labels left unconfirmed because their classes seldom hear them (``min_confirmed``), and the rule
beside the network alone at thresholds from the same budget (training/evaluate/rule_report.py)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from typing import Any

import numpy as np

from edge.model.bundle import sha256
from training import measure
from training.data.background import Background, Part
from training.data.prepare import Prepared
from training.evaluate import evaluate, rule_report
from training.recipe.config import EvidenceConfig
from training.recipe.load import LoadedConfig, replace

_LOGGER = logging.getLogger(__name__)


def evidence_rule(loaded: LoadedConfig, prepared: Prepared, int8_bytes: bytes) -> tuple[evaluate.Rule, dict[str, Any]]:
    """The rule on the event labels: the recipe's, or :class:`Evidence` fitted on the validation clips and the
    backgrounds' train part, or the share of it kept from the network (``unseen_fraction``;
    training/calibrate/evidence.py), with what the fit saw."""
    from training.calibrate import evidence
    from training.data.data import read_audio
    from training.model.export import audioset_output

    cfg = loaded.config
    wanted = cfg.audioset.evidence
    if not wanted.enabled or audioset_output(int8_bytes) is None:
        return "recipe", {}
    labels, rate = prepared.labels, cfg.features.sample_rate
    unseen = wanted.unseen_fraction > 0
    part = fit_background(prepared.background, wanted)
    where = f"_unseen{wanted.unseen_fraction:g}" if unseen else ""
    cached = loaded.output / f"evidence_hops_{sha256(int8_bytes)[:12]}_{wanted.background_minutes:g}{where}.npz"
    if cached.is_file():
        hops = evidence.load(cached)
    else:
        raw = evaluate.classifier(cfg, labels, int8_bytes, "int8", rule="none")
        clips = [(read_audio(prepared.clips[c].path, rate), prepared.targets[c]) for c in prepared.split.val]
        minutes = 60.0 * wanted.background_minutes
        hops = evidence.collect(raw, clips, evidence.background_streams(part.paths, rate, minutes))
        evidence.save(hops, cached)
    classes = evaluate.label_classes(cfg, labels)
    fitted = evidence.fit(hops, labels, classes, wanted.l2, wanted.keep_at)
    with_classes = sum(1 for x in fitted.weights if fitted.classes.get(x))
    _LOGGER.info(
        "evidence: %d labels fitted on %d hops (%d sounding validation hops, %d background), %d weigh AudioSet",
        len(fitted.weights), len(hops.label), int(((hops.label >= 0) & hops.sounding).sum()),
        int((hops.label < 0).sum()), with_classes,
    )  # fmt: skip
    seen = {
        "hops": len(hops.label),
        "background_hops": int((hops.label < 0).sum()),
        "background": "kept from the network" if unseen else "the network's train part",
        "weights": {x: list(w) for x, w in fitted.weights.items()},
        "confirmed_share": evidence.confirmed_share(hops, labels, classes, cfg.audioset.confirm.threshold),
    }
    (loaded.output / "evidence.json").write_text(json.dumps(seen, indent=1) + "\n", encoding="utf-8")
    return fitted, seen


def fit_confirmation(
    loaded: LoadedConfig, prepared: Prepared, int8_bytes: bytes
) -> tuple[LoadedConfig, dict[str, Any]]:
    """``audioset.confirm.fit_thresholds``: the confirmation's threshold and slope fitted on training-side audio by
    the user's measure: for each pair, thresholds for the budget on the background kept from the network, and the
    validation clips' event recall at them; the most recall wins (then the fewest labels failing the budget)."""
    from training.data.data import DataError
    from training.model.export import audioset_output

    confirm = loaded.config.audioset.confirm
    if not confirm.fit_thresholds or not confirm.mapping or audioset_output(int8_bytes) is None:
        return loaded, {}
    part = prepared.background.evidence
    if not part.paths:
        raise DataError(
            "audioset.confirm.fit_thresholds: no background kept from the network (audioset.evidence.unseen_fraction)"
        )
    tried: list[dict[str, Any]] = []
    for threshold, slope in itertools.product(confirm.fit_thresholds, confirm.fit_slopes or (confirm.slope,)):
        trial = _with_confirm(loaded, threshold=threshold, slope=slope)
        calibration = measure.calibrate(trial, prepared, int8_bytes, "recipe", part)
        recall = 0.0 if calibration is None or calibration.recall is None else round(calibration.recall, 4)
        failing = len(prepared.labels) if calibration is None else len(calibration.failing())
        tried.append({"threshold": threshold, "slope": slope, "recall": recall, "failing": failing})
        _LOGGER.info("confirmation fit: threshold %g, slope %g: validation recall %.3f, %d labels failing",
                     threshold, slope, recall, failing)  # fmt: skip
    best = most_recall(tried)
    _LOGGER.info("confirmation fit: threshold %g, slope %g chosen", best["threshold"], best["slope"])
    fitted = {"chosen": best, "tried": tried, "background_files": len(part.paths)}
    (loaded.output / "confirm_fit.json").write_text(json.dumps(fitted, indent=1) + "\n", encoding="utf-8")
    return _with_confirm(loaded, threshold=best["threshold"], slope=best["slope"]), fitted


def most_recall(tried: list[dict[str, Any]]) -> dict[str, Any]:
    """The tried pair with the most validation recall at the budget, then the fewest labels failing it, then the
    first tried (the grid's order: the gentlest rule first)."""
    return max(tried, key=lambda r: (r["recall"], -r["failing"]))


def _with_confirm(loaded: LoadedConfig, threshold: float, slope: float) -> LoadedConfig:
    audioset = loaded.config.audioset
    confirm = dataclasses.replace(audioset.confirm, threshold=threshold, slope=slope)
    return replace(loaded, audioset=dataclasses.replace(audioset, confirm=confirm))


def fit_background(background: Background, wanted: EvidenceConfig) -> Part:
    """The background the evidence is fitted on: the part kept from the network when the recipe keeps one
    (``unseen_fraction``), else the train part the network learned."""
    return background.evidence if wanted.unseen_fraction > 0 else background.train


def against_the_network_alone(
    loaded: LoadedConfig, prepared: Prepared, int8_bytes: bytes, with_rule: np.ndarray, fitted: dict[str, Any]
) -> dict[str, Any]:
    """What the rule costs or gains in clip accuracy on the test clips, beside the network alone (no rule)."""
    from training.model.export import audioset_output

    if audioset_output(int8_bytes) is None:
        return {}
    test = list(prepared.split.test)
    truth = np.asarray(prepared.targets)[test]
    alone = measure.scores(loaded, prepared, int8_bytes, "int8", test, "none")
    n = len(prepared.labels)
    found = {
        "int8_clip_accuracy_with_rule": round(
            evaluate.classification(truth, with_rule.argmax(axis=1), n)["accuracy"], 4
        ),
        "int8_clip_accuracy_network_alone": round(
            evaluate.classification(truth, alone.argmax(axis=1), n)["accuracy"], 4
        ),
    }
    return {"rule": {"kind": "evidence" if fitted else "recipe"} | found | ({"evidence": fitted} if fitted else {})}


def _validation_hops(loaded: LoadedConfig, prepared: Prepared, int8_bytes: bytes) -> Any:
    """Every hop of the validation clips through the daemon's pipeline, with no rule (scores, AudioSet, level)."""
    from training.calibrate import evidence
    from training.data.data import read_audio

    cfg, rate = loaded.config, loaded.config.features.sample_rate
    raw = evaluate.classifier(cfg, prepared.labels, int8_bytes, "int8", rule="none")
    clips = [(read_audio(prepared.clips[c].path, rate), prepared.targets[c]) for c in prepared.split.val]
    return evidence.collect(raw, clips, [])


def learn_unconfirmed(loaded: LoadedConfig, prepared: Prepared, int8_bytes: bytes) -> tuple[LoadedConfig, Any]:
    """``audioset.confirm.min_confirmed``: the labels whose own validation hops their AudioSet classes seldom hear
    are left unconfirmed (added to ``unconfirmed``); the validation hops, when recorded, for the report."""
    from training.model.export import audioset_output

    confirm = loaded.config.audioset.confirm
    if not confirm.mapping or confirm.min_confirmed <= 0 or audioset_output(int8_bytes) is None:
        return loaded, None
    cfg, labels = loaded.config, prepared.labels
    hops = _validation_hops(loaded, prepared, int8_bytes)
    shares = rule_report.confirmation(
        hops, labels, evaluate.label_classes(cfg, labels), evaluate.recipe_confirm(cfg, labels)
    )
    dropped = rule_report.seldom_confirmed(shares, confirm.min_confirmed)
    _LOGGER.info(
        "AudioSet confirmation: %s left unconfirmed (own validation hops confirmed under %g)",
        ", ".join(dropped) or "no label", confirm.min_confirmed,
    )  # fmt: skip
    kept = dataclasses.replace(confirm, unconfirmed=tuple(sorted({*confirm.unconfirmed, *dropped})))
    audioset = dataclasses.replace(loaded.config.audioset, confirm=kept)
    return replace(loaded, audioset=audioset), hops


def confirmation_report(
    loaded: LoadedConfig, prepared: Prepared, int8_bytes: bytes, calibration: Any, heldout: dict[str, Any] | None,
    hops: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """The recipe's confirmation beside the network alone (training/evaluate/rule_report.py): how often each
    label's validation clips are confirmed, and the events of both at thresholds from the same budget."""
    cfg, labels = loaded.config, prepared.labels
    hops = _validation_hops(loaded, prepared, int8_bytes) if hops is None else hops
    confirm = evaluate.recipe_confirm(cfg, labels)
    mapped = evaluate.label_classes(cfg, labels)
    found: dict[str, Any] = {
        "description": rule_report.describe(confirm),
        "confirmation": rule_report.confirmation(hops, labels, mapped, confirm),
        "unconfirmed": sorted(set(mapped) - set(confirm.classes)),
    }
    if calibration is None:
        return found
    alone = measure.calibrate(loaded, prepared, int8_bytes, "none")
    found |= {"recall": calibration.recall, "failing": len(calibration.failing())}
    found["network_alone"] = {"recall": alone.recall, "failing": len(alone.failing())}
    if heldout is not None:
        alone_heldout = measure.heldout(loaded, prepared, int8_bytes, alone.thresholds(), "none")
        found["heldout_false_events"] = heldout["false_events"]
        found["network_alone"]["heldout_false_events"] = alone_heldout["false_events"] if alone_heldout else None
    return found
