"""The bundle's self-test: one window of audio and the scores the model gave for it.

Training stores it in the bundle (``selftest.npz``, pinned by the manifest's
``selftest_sha256``, so a signature covers it); a device runs the same audio
through its own front end and interpreter before it switches to a new model
and refuses the model when the scores disagree beyond int8 rounding, are not
finite, or take longer than the latency budget.  That catches what the zip and
manifest checks cannot: a model that loads but computes something else on this
device's runtime.

How scores are compared (in the units int8 rounding moves) is edge/model/agreement.py; which window
training stores, edge/model/window_choice.py.

``selftest.npz`` is a zip of two ``.npy`` arrays (no pickles): ``samples``
(int16 PCM, mono, at the model's rate, exactly one window) and ``scores``
(float32, every output of the model including background labels, dequantised);
a model with an AudioSet head (edge/model/audioset.py) adds a third, ``audioset``
(float32, its 521 AudioSet scores, dequantised), and both outputs are checked.
"""

from __future__ import annotations

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
from edge.model.agreement import INT8_TOLERANCE_STEPS, LOGIT_TOLERANCE_STEPS, Floats, all_outputs, compared
from edge.model.audioset import AUDIOSET_CLASSES
from edge.model.bundle import SELFTEST, Bundle, BundleError, Manifest, read_bundle, write_bundle
from edge.model.classifier import Classifier
from edge.model.window_choice import choose_window

_LOGGER = logging.getLogger(__name__)
MEMBERS = ("samples.npy", "scores.npy")
AUDIOSET = "audioset.npy"
"""The third member, exactly when the manifest has an ``audioset`` section."""
MAX_NPY_BYTES = 4 * 1024 * 1024
"""Largest array file inside ``selftest.npz`` (a window of 16-bit audio is tens of KB)."""
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
    if samples.dtype != np.int16 or samples.shape != (manifest.window_samples,):
        raise BundleError(f"{where}: samples must be {manifest.window_samples} int16 values (one window)")
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
    samples = test.samples if test is not None else _noise(m.window_samples)
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
    found = compared(classifier, want, now)
    for c in found:
        if not c.passed:
            raise BundleError(
                f"{name}: smoke test: scores differ from the stored ones: {c.worst_failing()} (limits "
                f"{INT8_TOLERANCE_STEPS} steps, or {LOGIT_TOLERANCE_STEPS} steps of the logit)"
            )
    worst = max(float(np.max(c.steps)) for c in found)
    logits = max(float(np.max(c.logits)) for c in found)
    return SelfTestResult(round(worst, 2), latency_ms, round(logits, 2))


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
