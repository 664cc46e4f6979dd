"""Devices lag behind: every model we ship (and the test models) must give the same
scores on the oldest ai-edge-litert we support (README; 2.1.3, the oldest that raises the newest's events:
tests/model/test_runtime_events.py) as on the newest.

"The same" is measured in int8 output codes: XNNPACK's kernels round differently
between releases (1.4.0, 2.0.3 and 2.1.0 all differed from 2.3.0 by one code on
3 of 450 outputs of the 96x64 model 1.0.0; 1.4.0 differs on 12 of 450 outputs of
the deeper-input 2.0.0 model, by two codes on 2 of them; 3.0.0 on 10 of 450, by
at most two; its runner-up with a background output by up to three), so
we require at most three codes (3/256 of a score) of difference on at most 5% of
outputs and the same top label for every window, on each output of a model (a model with
an AudioSet head has two: edge/model/audioset.py). The over-the-air self-test allows
four (edge/model/selftest.py), one more than any release pair measured.

The AudioSet head of esc50 4.0.0 is a sigmoid over int8 logits with a coarse step (about 0.29 in
logit): where 1.4.0 and 2.x round one logit to the next step, a mid-range score jumps by up to 18
codes (0.43 against 0.50), measured on 0.6% of the chirp's outputs and 0.03% of a dog clip's; the
self-test clip differs by one code at most.  So on that output a difference beyond three codes must
be one logit step (at most 0.35 in logit), never more.

On TFLite's builtin kernels (config ``model.kernels: builtin``, no XNNPACK) every output is the same bit for
bit, on the oldest runtime that gives the newest's events on XNNPACK (2.1.3) and on the oldest supported
(1.4.0, which differs by up to 10 codes on XNNPACK).

deploy/setup.sh dev builds those runtimes' venvs in .venv-compat and .venv-oldest (no network in tests).
"""

from __future__ import annotations

import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from support.models import audioset_bundle, tone_bundle
from support.runtimes import COMPAT, OLDEST, OldRuntime
from support.shared import ROOT

from edge.features import FeatureParams, compute, to_input, window_at, window_ends
from edge.model.audioset import AUDIOSET_CLASSES
from edge.model.bundle import read_bundle
from edge.model.classifier import Classifier


def _shipped() -> list[Path]:
    folder = resources.files("edge").joinpath("models")
    if not folder.is_dir():
        return []
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".auricle"))


def _inputs(bundle_path: Path) -> np.ndarray:
    m = read_bundle(bundle_path).manifest
    rng = np.random.default_rng(3)
    t = np.arange(3 * m.features.sample_rate) / m.features.sample_rate
    audio = 0.2 * np.sin(2 * np.pi * 1000 * t * (1 + t)) + 0.05 * rng.standard_normal(len(t))
    frames = compute(audio, m.features)
    ends = window_ends(len(frames), m.window_frames, max(1, len(frames) // 12))
    return np.stack([to_input(window_at(frames, e, m.window_frames, m.features), m.features, m.input) for e in ends])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("compat")
    made = [
        tone_bundle(tmp / "tones_int8.auricle"),
        tone_bundle(tmp / "tones_float.auricle", int8=False),
        tone_bundle(tmp / "tones_bark.auricle", params=FeatureParams(scale="bark", n_bands=32), window_frames=24),
        audioset_bundle(tmp / "two_heads.auricle", selftest=False),
    ]
    return made + _shipped()


def test_oldest_runtime_gives_identical_scores(models: list[Path], tmp_path: Path) -> None:
    COMPAT.check()
    for path in models:
        b = read_bundle(path)
        inputs = _inputs(path)
        oldest = _oldest(COMPAT.python, b.model, inputs, tmp_path, "xnnpack")
        for size, newest in _newest(Classifier(b), inputs).items():
            _same(oldest[f"size_{size}"], newest, f"{path.name} ({size} outputs)", size == AUDIOSET_CLASSES)


@pytest.mark.parametrize("old", [COMPAT, OLDEST], ids=lambda r: r.version)
def test_builtin_kernels_give_every_runtime_the_same_outputs(
    models: list[Path], tmp_path: Path, old: OldRuntime
) -> None:
    old.check()
    for path in models:
        b = read_bundle(path)
        inputs = _inputs(path)
        oldest = _oldest(old.python, b.model, inputs, tmp_path, "builtin")
        for size, newest in _newest(Classifier(b, kernels="builtin"), inputs).items():
            got = oldest[f"size_{size}"].reshape(newest.shape)
            differ = int(np.count_nonzero(got != newest))
            assert differ == 0, f"{path.name} ({size} outputs): {differ} of {newest.size} differ on {old.version}"


def test_the_kernels_are_a_choice_with_their_own_results(tmp_path: Path) -> None:
    """The two kernel sets really are different code: without this the test above could pass by running
    XNNPACK twice."""
    path = _shipped()[0] if _shipped() else audioset_bundle(tmp_path / "two_heads.auricle", selftest=False)
    b = read_bundle(path)
    inputs = _inputs(path)
    fast, builtin = Classifier(b), Classifier(b, kernels="builtin")
    outputs = [np.stack([clf.raw(x).copy() for x in inputs]) for clf in (fast, builtin)]
    assert not np.array_equal(*outputs), "the builtin kernels gave XNNPACK's outputs bit for bit"
    assert np.array_equal(outputs[0].argmax(axis=1), outputs[1].argmax(axis=1))


def _oldest(venv: Path, model: bytes, inputs: np.ndarray, tmp_path: Path, kernels: str) -> dict[str, np.ndarray]:
    """Every output of every input, as ``size_<values>``, on the runtime of ``venv``."""
    (tmp_path / "m.tflite").write_bytes(model)
    np.save(tmp_path / "in.npy", inputs)
    subprocess.run(
        [str(venv), str(ROOT / "tests/support/old_runtime.py"), str(tmp_path / "m.tflite"),
         str(tmp_path / "in.npy"), str(tmp_path / "out.npz"), kernels],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    with np.load(tmp_path / "out.npz") as found:
        return {k: found[k] for k in found.files}


def _newest(clf: Classifier, inputs: np.ndarray) -> dict[int, np.ndarray]:
    """Each output of every input on this runtime, keyed by its size; the AudioSet head's as int8 codes."""
    labels, audioset = [], []
    for x in inputs:
        labels.append(clf.raw(x).copy())
        audioset.append(clf.audioset_scores())
    found = {len(clf.manifest.labels): np.stack(labels)}
    head = clf.manifest.audioset
    if head is None:
        return found
    scores = np.stack(audioset)
    spec = head.output
    codes = np.rint(scores / spec.scale + spec.zero_point).astype(np.int8) if spec.dtype == "int8" else scores
    return found | {AUDIOSET_CLASSES: codes}


def _logit_steps(oldest: np.ndarray, newest: np.ndarray) -> np.ndarray:
    """|difference in logit| of two int8 sigmoid outputs (scale 1/256, zero point -128)."""

    def logit(codes: np.ndarray) -> np.ndarray:
        p = np.clip((codes.astype(float) + 128) / 256, 1 / 512, 1 - 1 / 512)
        return np.asarray(np.log(p / (1 - p)))

    return np.abs(logit(oldest) - logit(newest))


def _same(oldest: np.ndarray, newest: np.ndarray, name: str, audioset: bool = False) -> None:
    oldest = oldest.reshape(newest.shape)
    if newest.dtype != np.int8:
        np.testing.assert_allclose(oldest, newest, rtol=1e-5, atol=1e-6, err_msg=name)
        return
    codes = np.abs(oldest.astype(int) - newest.astype(int))
    beyond = codes > 3
    if audioset:  # one step of the int8 logits before the sigmoid, at most (module doc)
        beyond &= _logit_steps(oldest, newest) > 0.35
    assert not beyond.any(), f"{name}: outputs differ by {codes.max()} int8 codes"
    assert (codes > 0).mean() <= 0.05, f"{name}: {(codes > 0).sum()} of {codes.size} outputs differ"
    assert np.array_equal(oldest.argmax(axis=1), newest.argmax(axis=1)), f"{name}: top label differs"
