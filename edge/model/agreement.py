"""Whether two runs of a model agree: the comparison rule of the bundle's self-test (edge/model/selftest.py).

The comparison is in the units rounding moves.  The label and AudioSet scores
are sigmoids of int8 logits, and int8 kernels differ by a step or two of the
logit (XNNPACK against TFLite's builtin kernels, on x86_64 and aarch64, and
ai-edge-litert 1.4.0 against 2.3.0: bench/kernel_spread.py, 672 fold-3/4
windows of esc50 5.2.0); one step of the AudioSet logit (0.33) moves a
mid-range score by 21 output steps.  So an output passes within
:data:`INT8_TOLERANCE_STEPS` output steps, or within
:data:`LOGIT_TOLERANCE_STEPS` steps of the logit it is the sigmoid of (the
model's own ``LOGISTIC`` input scale, edge/model/outputs.py ``logit_scale``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge import features
from edge.model.audioset import AUDIOSET_CLASSES
from edge.model.classifier import Classifier
from edge.model.outputs import OutputSpec

Floats = npt.NDArray[np.float32]
INT8_TOLERANCE_STEPS = 4
"""Allowed difference per output, in output quantisation steps: runtimes round a few values differently
(esc50 3.0.0: up to 3 steps between ai-edge-litert 1.4.0 and 2.3.0, tests/model/test_runtime_compat.py), plus one."""
LOGIT_TOLERANCE_STEPS = 2
"""Allowed difference of an output's logit, in steps of it, where the output steps are over the limit: the
most that kernels, releases and machines were measured to differ by on the windows the self-test stores
(edge/model/window_choice.py)."""
FLOAT_TOLERANCE = 0.02
"""Allowed difference per output of a float32 model (0..1 scores)."""


def all_scores(classifier: Classifier, samples: npt.ArrayLike) -> Floats:
    """Every output (background labels too) for the last window of ``samples``."""
    m = classifier.manifest
    frames = features.compute(samples, m.features)
    window = features.window_at(frames, len(frames), m.window_frames, m.features)
    return classifier.invoke(features.to_input(window, m.features, m.input))


def all_outputs(classifier: Classifier, samples: npt.ArrayLike) -> tuple[Floats, Floats | None]:
    """:func:`all_scores` and the 521 AudioSet scores of the same inference (None without an AudioSet head)."""
    return all_scores(classifier, samples), classifier.audioset_scores()


@dataclass(frozen=True)
class Comparison:
    """One output's scores against the stored ones."""

    steps: Floats
    """Difference per score, in output steps."""
    logits: Floats
    """Difference of the logit, in logit steps, of the scores over :data:`INT8_TOLERANCE_STEPS` (else 0)."""
    failing: npt.NDArray[np.bool_]
    names: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not bool(np.any(self.failing))

    def worst_failing(self) -> str:
        i = int(np.argmax(np.where(self.failing, self.steps, -1.0)))
        logits = f", {self.logits[i]:.1f} logit steps" if self.logits[i] else ""
        return f"{self.names[i]!r} by {self.steps[i]:.1f} steps{logits}"


@dataclass(frozen=True)
class Output:
    """One output's stored scores and how to compare scores with them."""

    scores: Floats
    spec: OutputSpec
    logit_scale: float | None
    names: tuple[str, ...]

    def steps(self, got: Floats) -> Floats:
        diff: Floats = np.abs(got - self.scores).astype(np.float32)
        return diff / np.float32(output_step(self.spec))

    def compare(self, got: Floats) -> Comparison:
        """Output steps of ``got`` from the stored scores, and logit steps where those are over the limit."""
        steps = self.steps(got)
        over = steps > INT8_TOLERANCE_STEPS + 1e-3
        logits = np.zeros_like(steps)
        if self.logit_scale is not None and np.any(over):
            half = 0.5 * output_step(self.spec)  # a score rounded to 0 or 1 stands for a logit half a step inside
            logits[over] = np.abs(_logit(got[over], half) - _logit(self.scores[over], half)) / self.logit_scale
        failing = over & ((logits > LOGIT_TOLERANCE_STEPS + 1e-3) | (self.logit_scale is None))
        return Comparison(steps, logits, failing, self.names)


def compare_outputs(classifier: Classifier, want: Sequence[Floats], got: Sequence[Floats]) -> tuple[float, float, bool]:
    """``got`` against ``want`` by the self-test's rule, each the model's outputs for one window (labels, then
    AudioSet scores when it has them; :func:`all_outputs`): the largest difference in output steps, the largest in
    logit steps of the outputs over :data:`INT8_TOLERANCE_STEPS`, and whether every output passes."""
    found = compared(classifier, want, got)
    steps = max(float(np.max(c.steps)) for c in found)
    return steps, max(float(np.max(c.logits)) for c in found), all(c.passed for c in found)


def compared(classifier: Classifier, want: Sequence[Floats], got: Sequence[Floats]) -> list[Comparison]:
    """Each output of ``got`` against the same output of ``want`` (labels, then AudioSet scores)."""
    return [Output(w, *spec).compare(g) for w, g, spec in zip(want, got, _specs(classifier), strict=False)]


def outputs(classifier: Classifier, samples: Floats) -> list[Output]:
    """The model's outputs for one window of ``samples``: its labels, then its AudioSet classes if it has them."""
    scores, audioset = all_outputs(classifier, samples)
    got = [scores] if audioset is None else [scores, audioset]
    return [Output(g, *spec) for g, spec in zip(got, _specs(classifier), strict=False)]


def output_step(spec: OutputSpec) -> float:
    """One output step: the quantisation scale of an int8 output, a fixed share of the tolerance for float."""
    return spec.scale if spec.dtype == "int8" else FLOAT_TOLERANCE / INT8_TOLERANCE_STEPS


def _specs(classifier: Classifier) -> list[tuple[OutputSpec, float | None, tuple[str, ...]]]:
    """(quantisation, logit step, names) of the model's label output, then of its AudioSet output if it has one."""
    m = classifier.manifest
    found = [(m.output, classifier.logit_scale, m.labels)]
    if m.audioset is not None:
        classes = tuple(f"AudioSet class {i}" for i in range(AUDIOSET_CLASSES))
        found.append((m.audioset.output, classifier.audioset_logit_scale, classes))
    return found


def _logit(p: Floats, half: float) -> Floats:
    q = np.clip(p.astype(np.float64), half, 1.0 - half)
    return np.log(q / (1.0 - q)).astype(np.float32)
