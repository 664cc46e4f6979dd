"""The embedding output added to a converted model (training/model/embedding.py) and read on the device
(edge/model/embedding.py, Classifier.embedding): the other outputs stay the same int8 codes."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from support.daemon import tone_wav
from support.models import HEAD, audioset_bundle

from edge.features import compute, window_at
from edge.model.bundle import BundleError, read_bundle, write_bundle
from edge.model.classifier import Classifier
from edge.model.embedding import BACKGROUND, NoEmbedding, background_embeddings
from training.model.embedding import EmbeddingError, embed_bundle, with_embedding_output

BANDS = 64
"""The two-head test model pools its input over time: its heads read a 64-value vector."""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("embed")
    source = audioset_bundle(tmp / "two.auricle", head=dataclasses.replace(HEAD, veto=None))
    rows = []
    for i, hz in enumerate((300.0, 700.0, 4000.0)):
        tone_wav(tmp / f"bg{i}.wav", seconds=2.0, tone_s=(0.0, 2.0), hz=hz)
        rows.append({"path": f"bg{i}.wav", "split": "train"})
    rows.append({"path": "bg0.wav", "split": "calibrate"})
    with (tmp / "bg.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "split"])
        writer.writeheader()
        writer.writerows(rows)
    from training.model.embedding import background_files

    files = background_files([tmp / "bg.csv"])
    assert [f.name for f in files] == ["bg0.wav", "bg1.wav", "bg2.wav"]  # the train part only
    target = tmp / "release" / "two-1.1.0.auricle"  # a folder that does not exist yet
    embed_bundle(source, target, "1.1.0", files, windows=12, size=BANDS)
    return source, target


def _window(clf: Classifier, hz: float) -> np.ndarray:
    t = np.arange(16000) / 16000
    frames = compute((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), clf.manifest.features)
    return window_at(frames, len(frames), clf.manifest.window_frames, clf.manifest.features)


def test_the_embedding_is_declared_and_the_other_outputs_are_unchanged(made: tuple[Path, Path]) -> None:
    source, target = made
    old, new = Classifier(read_bundle(source)), Classifier(read_bundle(target))
    assert new.manifest.version == "1.1.0" and new.manifest.embedding is not None
    assert new.manifest.embedding.size == BANDS and new.has_embedding and not old.has_embedding
    assert [p.name for p in target.parent.iterdir()] == [target.name], "the folder made, no draft left beside it"
    for hz in (500.0, 1000.0, 2000.0, 3000.0):
        window = _window(old, hz)
        assert np.array_equal(old.scores(window), new.scores(window)), hz
        assert np.array_equal(old.audioset_scores(), new.audioset_scores()), hz  # type: ignore[arg-type]
        emb = new.embedding()
        assert emb.shape == (BANDS,) and np.isfinite(emb).all()
    with pytest.raises(NoEmbedding, match="has no embedding output: teaching needs a bundle that declares one"):
        old.embedding()


def test_the_background_set_is_pinned_and_readable(made: tuple[Path, Path], tmp_path: Path) -> None:
    _, target = made
    b = read_bundle(target)
    assert b.background is not None and b.manifest.embedding is not None
    rows = background_embeddings(b.background, b.manifest.embedding, str(target))
    assert rows.shape == (12, BANDS) and rows.dtype == np.float32
    write_bundle(tmp_path / "tampered.auricle", b.manifest, b.model, selftest=b.selftest, background=b.background)
    assert read_bundle(tmp_path / "tampered.auricle").background == b.background  # a copy keeps it
    with pytest.raises(BundleError, match="a background set needs the manifest's embedding section"):
        write_bundle(tmp_path / "x.auricle", dataclasses.replace(b.manifest, embedding=None), b.model,
                     background=b.background)  # fmt: skip
    import zipfile

    with zipfile.ZipFile(target) as zf, zipfile.ZipFile(tmp_path / "swapped.auricle", "w") as out:
        for name in zf.namelist():
            out.writestr(name, zf.read(name) + (b"x" if name == BACKGROUND else b""))
    with pytest.raises(BundleError, match=f"{BACKGROUND} sha256 mismatch"):
        read_bundle(tmp_path / "swapped.auricle")


def test_a_model_without_such_a_tensor_is_refused(made: tuple[Path, Path]) -> None:
    source, target = made
    with pytest.raises(EmbeddingError, match="expected one 999-value tensor read by the heads, found 0"):
        with_embedding_output(read_bundle(source).model, 999)
    with pytest.raises(EmbeddingError, match="already an output"):
        with_embedding_output(read_bundle(target).model, BANDS)


def test_the_command_line(made: tuple[Path, Path], tmp_path: Path) -> None:
    from training.cli import main

    source, _ = made
    csv_path = source.parent / "bg.csv"
    out = tmp_path / "cli.auricle"
    args = ["embed", str(source), "--version", "1.2.0", "-o", str(out), "--background", str(csv_path)]
    assert main([*args, "--size", str(BANDS), "--windows", "5"]) == 0
    assert read_bundle(out).manifest.version == "1.2.0" and read_bundle(out).background is not None
    assert main([*args, "--size", "999"]) == 2  # one line: no such tensor


def test_a_run_on_a_machine_without_a_gpu_leaves_out_the_cuda_probe() -> None:
    """TensorFlow's CUDA probe logs 'failed call to cuInit' as an error on every CPU-only run; auricle-train's
    start leaves it out (training/cli.py quiet_first_run), and without that start it is there."""
    import os
    import subprocess
    import sys

    if any(Path(p).exists() for p in ("/dev/nvidiactl", "/proc/driver/nvidia")):
        pytest.skip("an NVIDIA driver is here: TensorFlow's log is left as it is")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    devices = "import tensorflow as tf; tf.constant(1.0)"
    for start, probe in (("from training.cli import quiet_first_run; quiet_first_run(); ", False), ("", True)):
        done = subprocess.run(
            [sys.executable, "-c", start + devices], capture_output=True, text=True, timeout=300, env=env
        )
        assert done.returncode == 0, done.stderr
        assert ("cuInit" in done.stderr) is probe, done.stderr
