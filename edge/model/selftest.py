"""The bundle's self-test: one window of audio and the scores the model gave for it.

Training stores it in the bundle (``selftest.npz``, pinned by the manifest's
``selftest_sha256``, so a signature covers it); a device runs the same audio
through its own front end and interpreter before it switches to a new model
and refuses the model when the scores disagree beyond int8 rounding, are not
finite, or take longer than the latency budget.  That catches what the zip and
manifest checks cannot: a model that loads but computes something else on this
device's runtime.

The comparison is in the units rounding moves.  The label and AudioSet scores
are sigmoids of int8 logits, and int8 kernels differ by a step or two of the
logit (XNNPACK against TFLite's builtin kernels, on x86_64 and aarch64, and
ai-edge-litert 1.4.0 against 2.3.0: bench/kernel_spread.py, 672 fold-3/4
windows of esc50 5.2.0); one step of the AudioSet logit (0.33) moves a
mid-range score by 21 output steps.  So an output passes within
:data:`INT8_TOLERANCE_STEPS` output steps, or within
:data:`LOGIT_TOLERANCE_STEPS` steps of the logit it is the sigmoid of (the
model's own ``LOGISTIC`` input scale, edge/model/outputs.py ``logit_scale``).

Which window is stored matters too.  :func:`choose_window` stores, among the
candidates training gives, a window on which XNNPACK and the builtin kernels of
the training machine agree within :data:`STABLE_STEPS` (every such window
passed on every runtime and machine measured, where 2% to 3% of arbitrary ones
fail on the builtin kernels: bench/kernel_spread.py) and on which the smallest
level error of :data:`LEVEL_ERRORS_DB` fails the comparison, so the test can
still tell a front end that scales its input wrongly.

``selftest.npz`` is a zip of two ``.npy`` arrays (no pickles): ``samples``
(int16 PCM, mono, at the model's rate, exactly one window) and ``scores``
(float32, every output of the model including background labels, dequantised);
a model with an AudioSet head (edge/model/audioset.py) adds a third, ``audioset``
(float32, its 521 AudioSet scores, dequantised), and both outputs are checked.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import time
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import features
from edge.model.audioset import AUDIOSET_CLASSES
from edge.model.bundle import SELFTEST, Bundle, BundleError, Manifest, read_bundle, write_bundle
from edge.model.classifier import Classifier
from edge.model.outputs import OutputSpec

_LOGGER = logging.getLogger(__name__)
Floats = npt.NDArray[np.float32]
MEMBERS = ("samples.npy", "scores.npy")
AUDIOSET = "audioset.npy"
"""The third member, exactly when the manifest has an ``audioset`` section."""
MAX_NPY_BYTES = 4 * 1024 * 1024
"""Largest array file inside ``selftest.npz`` (a window of 16-bit audio is tens of KB)."""
INT8_TOLERANCE_STEPS = 4
"""Allowed difference per output, in output quantisation steps: runtimes round a few values differently
(esc50 3.0.0: up to 3 steps between ai-edge-litert 1.4.0 and 2.3.0, tests/model/test_runtime_compat.py), plus one."""
LOGIT_TOLERANCE_STEPS = 2
"""Allowed difference of an output's logit, in steps of it, where the output steps are over the limit: the
most that kernels, releases and machines were measured to differ by on the windows :func:`choose_window` keeps."""
FLOAT_TOLERANCE = 0.02
"""Allowed difference per output of a float32 model (0..1 scores)."""
STABLE_STEPS = 1.0
"""Largest difference between XNNPACK and the builtin kernels, per output, on the window training stores."""
LEVEL_ERRORS_DB = (1.0, 2.0, 3.0)
"""Level errors tried on a candidate window, smallest first: the window that a smaller one fails is kept."""
CANDIDATE_WINDOWS = 240
"""At most this many windows are tried (spread evenly over the candidates' windows), so choosing stays a few s."""
TIMED_RUNS = 3


@dataclass(frozen=True)
class SelfTest:
    """A parsed self-test."""

    samples: Floats
    """One window of mono audio at the model rate, -1..1 (from int16)."""
    scores: Floats
    """Every output of the model for that window, dequantised."""
    audioset: Floats | None = None
    """The model's 521 AudioSet scores for that window, dequantised; None without an AudioSet head."""


@dataclass(frozen=True)
class SelfTestResult:
    """What the smoke test measured."""

    max_diff_steps: float
    """Largest score difference from the stored scores, in output quantisation steps (float models: 1/150)."""
    latency_ms: float
    """Median time of one inference (front end output -> tensor -> invoke)."""
    max_logit_steps: float = 0.0
    """Largest logit difference, in logit steps, of the outputs over :data:`INT8_TOLERANCE_STEPS` (0: none)."""

    def describe(self) -> str:
        """How close the scores were, for the install note."""
        logits = f" ({self.max_logit_steps:g} logit steps)" if self.max_logit_steps else ""
        return f"scores within {self.max_diff_steps:g} steps{logits}"


@dataclass(frozen=True)
class WindowChoice:
    """The window :func:`choose_window` picked and why."""

    samples: npt.NDArray[np.int16]
    """Exactly one window of int16 PCM."""
    spread_steps: float
    """Largest difference between XNNPACK and the builtin kernels on it, in output steps."""
    fails_at_db: float | None
    """The smallest level error of :data:`LEVEL_ERRORS_DB` (one way or the other) that fails the comparison on
    it on both kernel families: what a front end that scales its input wrongly does; None when none does."""
    top_score: float
    """The model's highest label score on it."""
    tried: int
    """Windows compared."""

    @property
    def stable(self) -> bool:
        return self.spread_steps <= STABLE_STEPS + 1e-3

    def describe(self) -> str:
        """One line for the training log."""
        level = "no level error" if self.fails_at_db is None else f"a level {self.fails_at_db:g} dB off"
        return (
            f"self-test window: kernels agree within {self.spread_steps:g} steps (want <= {STABLE_STEPS:g}), "
            f"{level} fails it (tried up to {LEVEL_ERRORS_DB[-1]:g}), top score {self.top_score:.2f}; "
            f"{self.tried} windows tried"
        )


def window_samples(manifest: Manifest) -> int:
    """Samples that make exactly one model window."""
    f = manifest.features
    return (manifest.window_frames - 1) * f.hop_samples + f.window_samples


def all_scores(classifier: Classifier, samples: npt.ArrayLike) -> Floats:
    """Every output (background labels too) for the last window of ``samples``."""
    m = classifier.manifest
    frames = features.compute(samples, m.features)
    window = features.window_at(frames, len(frames), m.window_frames, m.features)
    return classifier.invoke(features.to_input(window, m.features, m.input))


def all_outputs(classifier: Classifier, samples: npt.ArrayLike) -> tuple[Floats, Floats | None]:
    """:func:`all_scores` and the 521 AudioSet scores of the same inference (None without an AudioSet head)."""
    return all_scores(classifier, samples), classifier.audioset_scores()


def make_selftest(
    source: Bundle | Classifier | str | os.PathLike[str], samples: npt.ArrayLike | Sequence[npt.ArrayLike]
) -> bytes:
    """``selftest.npz`` bytes for a model: the window :func:`choose_window` picks from ``samples`` (one clip or
    several, mono, -1..1, model rate) and the scores the model gives for it.

    ``source`` is the bundle (or its path) or a Classifier already loaded from it (on XNNPACK).
    """
    classifier = source if isinstance(source, Classifier) else Classifier(_bundle(source))
    choice = choose_window(classifier, samples)
    _LOGGER.info("%s", choice.describe())
    return _selftest_bytes(classifier, choice.samples)


def choose_window(classifier: Classifier, samples: npt.ArrayLike | Sequence[npt.ArrayLike]) -> WindowChoice:
    """The window of ``samples`` (one clip or several) to store: of those on which XNNPACK and the builtin
    kernels agree within :data:`STABLE_STEPS` (when none do, of all), the one that the smallest level error
    fails, then the most confident, then the one with the least spread.  ValueError when no clip holds a
    window."""
    need = window_samples(classifier.manifest)
    clips = _clips(samples)
    windows = [_pcm(c[i : i + need]) for c in clips for i in _starts(len(c), need, classifier.manifest)]
    if not windows:
        longest = max((len(c) for c in clips), default=0)
        raise ValueError(f"self-test audio: need at least {need} samples (one window), got {longest}")
    windows = [windows[i] for i in np.linspace(0, len(windows) - 1, min(len(windows), CANDIDATE_WINDOWS)).astype(int)]
    builtin = Classifier(classifier.bundle, kernels="builtin")
    choices = [measure_window(classifier, builtin, w) for w in windows]
    worst = LEVEL_ERRORS_DB[-1] + 1.0
    best = min(choices, key=lambda c: (not c.stable, c.fails_at_db or worst, -c.top_score, c.spread_steps))
    return dataclasses.replace(best, tried=len(choices))


def measure_window(xnnpack: Classifier, builtin: Classifier, pcm: npt.NDArray[np.int16]) -> WindowChoice:
    """How one window (int16 PCM) fares: its spread between the kernel families, the smallest level error
    that fails the comparison on it, and its top label score."""
    samples = pcm.astype(np.float32) / np.float32(32768.0)
    got = _outputs(xnnpack, samples)
    spread = max(float(np.max(o.steps(b.scores))) for o, b in zip(got, _outputs(builtin, samples), strict=True))
    fails_at = next(
        (db for db in LEVEL_ERRORS_DB if _fails(xnnpack, got, samples, db) and _fails(builtin, got, samples, db)), None
    )
    top = float(np.max(got[0].scores[: len(xnnpack.manifest.labels)]))
    return WindowChoice(pcm, spread, fails_at, top, tried=1)


def compare_outputs(classifier: Classifier, want: Sequence[Floats], got: Sequence[Floats]) -> tuple[float, float, bool]:
    """``got`` against ``want`` by the self-test's rule, each the model's outputs for one window (labels, then
    AudioSet scores when it has them; :func:`all_outputs`): the largest difference in output steps, the largest in
    logit steps of the outputs over :data:`INT8_TOLERANCE_STEPS`, and whether every output passes."""
    found = _compared(classifier, want, got)
    steps = max(float(np.max(c.steps)) for c in found)
    return steps, max(float(np.max(c.logits)) for c in found), all(c.passed for c in found)


def _compared(classifier: Classifier, want: Sequence[Floats], got: Sequence[Floats]) -> list[_Comparison]:
    """Each output of ``got`` against the same output of ``want`` (labels, then AudioSet scores)."""
    return [_Output(w, *spec).compare(g) for w, g, spec in zip(want, got, _specs(classifier), strict=False)]


def _specs(classifier: Classifier) -> list[tuple[OutputSpec, float | None, tuple[str, ...]]]:
    """(quantisation, logit step, names) of the model's label output, then of its AudioSet output if it has one."""
    m = classifier.manifest
    found = [(m.output, classifier.logit_scale, m.labels)]
    if m.audioset is not None:
        classes = tuple(f"AudioSet class {i}" for i in range(AUDIOSET_CLASSES))
        found.append((m.audioset.output, classifier.audioset_logit_scale, classes))
    return found


def _fails(classifier: Classifier, stored: list[_Output], samples: Floats, db: float) -> bool:
    """Whether ``samples`` with a level ``db`` off (either way) fails the comparison with ``stored``."""
    for sign in (-1, 1):
        off = _outputs(classifier, samples * np.float32(10.0 ** (sign * db / 20.0)))
        if any(not o.compare(w.scores).passed for o, w in zip(stored, off, strict=True)):
            return True
    return False


@dataclass(frozen=True)
class _Output:
    """One output's stored scores and how to compare scores with them."""

    scores: Floats
    spec: OutputSpec
    logit_scale: float | None
    names: tuple[str, ...]

    def steps(self, got: Floats) -> Floats:
        diff: Floats = np.abs(got - self.scores).astype(np.float32)
        return diff / np.float32(_step(self.spec))

    def compare(self, got: Floats) -> _Comparison:
        """Output steps of ``got`` from the stored scores, and logit steps where those are over the limit."""
        steps = self.steps(got)
        over = steps > INT8_TOLERANCE_STEPS + 1e-3
        logits = np.zeros_like(steps)
        if self.logit_scale is not None and np.any(over):
            half = 0.5 * _step(self.spec)  # a score rounded to 0 or 1 stands for a logit half a step inside
            logits[over] = np.abs(_logit(got[over], half) - _logit(self.scores[over], half)) / self.logit_scale
        failing = over & ((logits > LOGIT_TOLERANCE_STEPS + 1e-3) | (self.logit_scale is None))
        return _Comparison(steps, logits, failing, self.names)


@dataclass(frozen=True)
class _Comparison:
    steps: Floats
    logits: Floats
    failing: npt.NDArray[np.bool_]
    names: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not bool(np.any(self.failing))

    def worst_failing(self) -> str:
        i = int(np.argmax(np.where(self.failing, self.steps, -1.0)))
        logits = f", {self.logits[i]:.1f} logit steps" if self.logits[i] else ""
        return f"{self.names[i]!r} by {self.steps[i]:.1f} steps{logits}"


def _outputs(classifier: Classifier, samples: Floats) -> list[_Output]:
    """The model's outputs for one window of ``samples``: its labels, then its AudioSet classes if it has them."""
    scores, audioset = all_outputs(classifier, samples)
    got = [scores] if audioset is None else [scores, audioset]
    return [_Output(g, *spec) for g, spec in zip(got, _specs(classifier), strict=False)]


def _logit(p: Floats, half: float) -> Floats:
    q = np.clip(p.astype(np.float64), half, 1.0 - half)
    return np.log(q / (1.0 - q)).astype(np.float32)


def _starts(n: int, need: int, manifest: Manifest) -> range:
    """Window starts in a clip of ``n`` samples, one per model hop, the last window included."""
    hop = max(1, manifest.features.hop_samples * manifest.hop_frames)
    return range((n - need) % hop, n - need + 1, hop) if n >= need else range(0)


def _clips(samples: npt.ArrayLike | Sequence[npt.ArrayLike]) -> list[npt.NDArray[np.float64]]:
    """One clip or a list of clips, as mono float64 arrays."""
    if isinstance(samples, (list, tuple)) and samples and np.ndim(samples[0]) > 0:
        return [np.asarray(c, dtype=np.float64).reshape(-1) for c in samples]
    return [np.asarray(samples, dtype=np.float64).reshape(-1)]


def _pcm(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def _selftest_bytes(classifier: Classifier, pcm: npt.NDArray[np.int16]) -> bytes:
    scores, audioset = all_outputs(classifier, pcm.astype(np.float32) / 32768.0)
    arrays: dict[str, npt.NDArray[np.generic]] = {"samples.npy": pcm, "scores.npy": scores.astype(np.float32)}
    if audioset is not None:
        arrays[AUDIOSET] = audioset.astype(np.float32)
    if not all(np.all(np.isfinite(a)) for a in arrays.values()):
        raise ValueError("self-test audio: the model gives non-finite scores for it")
    return _npz(arrays)


def selftest_for(manifest: Manifest, model: bytes, samples: npt.ArrayLike | Sequence[npt.ArrayLike]) -> bytes:
    """``selftest.npz`` bytes for a bundle not written yet: pass them to ``write_bundle(..., selftest=...)``.

    This is what training calls: one clip or several of mono audio in -1..1 at
    ``manifest.features.sample_rate``, ideally clips the model classifies confidently; the window
    :func:`choose_window` picks is stored with the scores this model gives for it.
    """
    b = Bundle(manifest, model, manifest.to_json(), None, f"{manifest.name} {manifest.version}")
    return make_selftest(b, samples)


def add_selftest(
    path: str | os.PathLike[str],
    samples: npt.ArrayLike | Sequence[npt.ArrayLike],
    private_key: Ed25519PrivateKey | None = None,
) -> None:
    """Rewrite the bundle at ``path`` with a self-test made from ``samples`` (see :func:`make_selftest`).

    The manifest changes (it pins the self-test), so an old signature no longer fits: pass
    ``private_key`` to sign again, or sign later with ``auricle model sign``.
    """
    b = read_bundle(path)
    write_bundle(path, b.manifest, b.model, private_key=private_key, selftest=make_selftest(b, samples))


def parse_selftest(data: bytes, manifest: Manifest, name: str) -> SelfTest:
    """Check and load ``selftest.npz`` for this manifest; :class:`BundleError` naming what is wrong."""
    where = f"{name}: {SELFTEST}"
    arrays = _arrays(data, where, MEMBERS if manifest.audioset is None else (*MEMBERS, AUDIOSET))
    samples, scores = arrays["samples.npy"], arrays["scores.npy"]
    if samples.dtype != np.int16 or samples.shape != (window_samples(manifest),):
        raise BundleError(f"{where}: samples must be {window_samples(manifest)} int16 values (one window)")
    _check_expected(where, "scores", scores, len(manifest.labels))
    audioset = arrays.get(AUDIOSET)
    if audioset is not None:
        _check_expected(where, "audioset", audioset, AUDIOSET_CLASSES)
    floats = None if audioset is None else audioset.astype(np.float32)
    return SelfTest(samples.astype(np.float32) / np.float32(32768.0), scores.astype(np.float32), floats)


def _check_expected(where: str, what: str, scores: npt.NDArray[np.generic], n: int) -> None:
    if scores.dtype != np.float32 or scores.shape != (n,):
        raise BundleError(f"{where}: {what} must be {n} float32 values (one per output)")
    if not np.all(np.isfinite(scores)):
        raise BundleError(f"{where}: expected {what} are not finite")


def run_selftest(classifier: Classifier, test: SelfTest | None, budget_ms: float) -> SelfTestResult:
    """Smoke-test a loaded model: finite outputs, latency within budget, and (with a self-test) the stored scores.

    Without a self-test the window is quiet noise and only finiteness and latency are checked.
    """
    m, name = classifier.manifest, classifier.bundle.path
    samples = test.samples if test is not None else _noise(window_samples(m))
    got, audioset = all_outputs(classifier, samples)  # the first run also warms the interpreter up
    if not np.all(np.isfinite(got)) or (audioset is not None and not np.all(np.isfinite(audioset))):
        raise BundleError(f"{name}: smoke test: the model gives non-finite scores")
    latency_ms = _latency_ms(classifier, samples)
    if latency_ms > budget_ms:
        raise BundleError(f"{name}: smoke test: {latency_ms:.1f} ms per inference, over the {budget_ms:g} ms budget")
    if test is None:
        return SelfTestResult(0.0, latency_ms)
    want, now = [test.scores], [got]
    if m.audioset is not None and audioset is not None and test.audioset is not None:
        want, now = [test.scores, test.audioset], [got, audioset]
    found = _compared(classifier, want, now)
    for c in found:
        if not c.passed:
            raise BundleError(
                f"{name}: smoke test: scores differ from the stored ones: {c.worst_failing()} (limits "
                f"{INT8_TOLERANCE_STEPS} steps, or {LOGIT_TOLERANCE_STEPS} steps of the logit)"
            )
    worst = max(float(np.max(c.steps)) for c in found)
    logits = max(float(np.max(c.logits)) for c in found)
    return SelfTestResult(round(worst, 2), latency_ms, round(logits, 2))


def _step(spec: OutputSpec) -> float:
    """One output step: the quantisation scale of an int8 output, a fixed share of the tolerance for float."""
    return spec.scale if spec.dtype == "int8" else FLOAT_TOLERANCE / INT8_TOLERANCE_STEPS


def _latency_ms(classifier: Classifier, samples: Floats) -> float:
    m = classifier.manifest
    frames = features.compute(samples, m.features)
    window = features.window_at(frames, len(frames), m.window_frames, m.features)
    times = []
    for _ in range(TIMED_RUNS):
        began = time.perf_counter()
        classifier.scores(window)
        times.append(time.perf_counter() - began)
    return round(float(np.median(times)) * 1000.0, 3)


def _noise(n: int) -> Floats:
    return (0.01 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)


def _bundle(source: Bundle | str | os.PathLike[str]) -> Bundle:
    return source if isinstance(source, Bundle) else read_bundle(source)


def _npz(arrays: dict[str, npt.NDArray[np.generic]]) -> bytes:
    """A deterministic .npz (fixed member times), so the same model gives the same bundle bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
    return out.getvalue()


def _arrays(data: bytes, where: str, members: tuple[str, ...]) -> dict[str, npt.NDArray[np.generic]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            if sorted(infos) != sorted(members):
                raise BundleError(f"{where}: expected exactly {', '.join(members)}")
            if any(i.file_size > MAX_NPY_BYTES for i in infos.values()):
                raise BundleError(f"{where}: an array is too large")
            return {n: np.load(io.BytesIO(zf.read(n)), allow_pickle=False) for n in members}
    except BundleError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"{where}: not a readable self-test: {exc}") from None


def load(path: str | os.PathLike[str]) -> SelfTest | None:
    """The self-test of the bundle at ``path``, or None when it has none (for tools and tests)."""
    b = read_bundle(Path(path))
    return None if b.selftest is None else parse_selftest(b.selftest, b.manifest, b.path)
