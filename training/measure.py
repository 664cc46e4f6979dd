"""What the evaluate stage measures through the device's own code: per-clip scores, thresholds from the
false-alarm budget on the calibrate background, and false alarms on the held-out (report) background.
Used by the stage itself (training/pipeline.py) and by the AudioSet rule's report (training/rule.py)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from training.calibrate.noisy import Noisy
from training.data.background import Part
from training.data.prepare import Prepared
from training.evaluate import evaluate
from training.recipe.load import LoadedConfig

_LOGGER = logging.getLogger(__name__)


def scores(
    loaded: LoadedConfig, prepared: Prepared, model_bytes: bytes, name: str, clips: Any, rule: evaluate.Rule = "recipe"
) -> np.ndarray:
    cfg = loaded.config
    clf = evaluate.classifier(cfg, prepared.labels, model_bytes, name, rule=rule)
    return evaluate.score_clips(clf, prepared.frames, clips, cfg.window.hop_frames)


def calibrate(
    loaded: LoadedConfig,
    prepared: Prepared,
    int8_bytes: bytes,
    rule: evaluate.Rule = "recipe",
    part: Part | None = None,
) -> Any:
    """Thresholds from the false-alarm budget on the calibrate background, or on ``part`` (None without one)."""
    from training.calibrate import replay

    cfg, bg = loaded.config, prepared.background.calibrate if part is None else part
    if not bg.paths:
        _LOGGER.info("no calibrate background: thresholds by best F1 on the validation clips")
        return None
    clf = evaluate.classifier(cfg, prepared.labels, int8_bytes, "int8", rule=rule)
    val = [(prepared.clips[c].path, prepared.frames[c], prepared.targets[c]) for c in prepared.split.val]
    c = cfg.calibration
    mixture_s, min_s = 60.0 * c.mixture_minutes, 3600.0 * c.min_calibrate_hours
    noisy = Noisy(c.noisy_copies, c.noisy_snr_db, cfg.fit.seed)
    return replay.thresholds(clf, bg.paths, val, c.budget_per_hour, mixture_s, c.min_threshold, min_s, noisy)


def heldout(
    loaded: LoadedConfig, prepared: Prepared, int8_bytes: bytes, thresholds: dict[str, float], rule: evaluate.Rule
) -> Any:
    """False alarms per hour on the report part of the background (None without one)."""
    from training.calibrate import replay

    paths = prepared.background.report.paths
    if not paths:
        return None
    clf = evaluate.classifier(loaded.config, prepared.labels, int8_bytes, "int8", rule=rule)
    found = replay.heldout_false_alarms(clf, paths, thresholds, 60.0 * loaded.config.calibration.mixture_minutes)
    if found is not None:
        _LOGGER.info(
            "held-out background: %d false events in %.2f h (%.1f per hour)",
            found["false_events"], found["hours"], found["false_per_hour"],
        )  # fmt: skip
    return found
