"""A bundle's embedding output: declare the backbone's pooled features as a model output, unchanged otherwise.

The int8 model already computes the embedding (YAMNet's 1024 averaged features, the input of both heads'
fully connected layers); this adds that tensor to the flatbuffer's outputs and its signature, and changes
nothing else: every operator, weight and quantisation stays as it was, so the label and AudioSet outputs
are the same int8 codes (checked on the bundle's self-test clip and on background windows before anything
is written).  The new bundle carries ``background.npz``, embeddings of the backgrounds' ``train`` part, so a
device can be taught before it has listened (edge/model/embedding.py, docs/bundle.md).

    auricle-train embed BUNDLE --version 4.1.0 -o OUT [--background CSV ...] [--windows 1500] [--key KEY]
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.daemon.config import Config
from edge.daemon.replay import stream_events
from edge.model.bundle import Bundle, Manifest, parse_bundle, read_bundle, write_bundle
from edge.model.classifier import Classifier
from edge.model.embedding import EmbeddingSpec, background_npz
from edge.model.outputs import by_size, spec_of
from edge.model.selftest import parse_selftest

_LOGGER = logging.getLogger(__name__)
FULLY_CONNECTED = 9
"""TFLite's builtin operator code of FULLY_CONNECTED (schema.fbs)."""


class EmbeddingError(ValueError):
    """The model's embedding cannot be found or declared: the one line says why."""


def with_embedding_output(tflite: bytes, size: int) -> bytes:
    """The model with one more output: the ``size``-value tensor that the heads' fully connected layers read."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(tflite, 0))
    graph = model.subgraphs[0]

    def code(op: object) -> int:
        c = model.operatorCodes[op.opcodeIndex]  # type: ignore[attr-defined]
        return int(max(c.builtinCode, c.deprecatedBuiltinCode))

    read = {int(op.inputs[0]) for op in graph.operators if code(op) == FULLY_CONNECTED}
    found = sorted(i for i in read if int(np.prod(graph.tensors[i].shape)) == size)
    if len(found) != 1:
        raise EmbeddingError(f"expected one {size}-value tensor read by the heads, found {len(found)}")
    index = found[0]
    if index in list(graph.outputs):
        raise EmbeddingError("the embedding is already an output")
    graph.outputs = np.append(np.asarray(graph.outputs, dtype=np.int32), np.int32(index))
    for signature in model.signatureDefs or []:
        entry = fb.TensorMapT()
        entry.name, entry.tensorIndex = "embedding", index
        signature.outputs.append(entry)
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def embedding_spec(tflite: bytes, size: int) -> EmbeddingSpec:
    """The manifest section of a model's embedding output (its quantisation from the interpreter)."""
    from edge.model.runtime import interpreter_class

    cls, _ = interpreter_class()
    interp = cls(model_content=tflite)
    found = by_size(interp.get_output_details(), size)
    if len(found) != 1:
        raise EmbeddingError(f"expected one {size}-value output, found {len(found)}")
    return EmbeddingSpec(size=size, output=spec_of(found[0]))


def background_files(csvs: Sequence[Path], split: str = "train") -> list[Path]:
    """The files of one split of background manifests (``path``/``filename`` and ``split`` columns)."""
    paths = []
    for manifest in csvs:
        with manifest.open(newline="") as fh:
            for row in csv.DictReader(fh):
                name = row.get("path") or row.get("filename") or ""
                if row.get("split") == split and name:
                    paths.append(manifest.parent / name)
    return paths


def background_kinds(csvs: Sequence[Path], split: str = "train") -> dict[Path, str]:
    """The ``kind`` column (speech, music, noise ...) of each file of one split; "background" where none."""
    kinds = {}
    for manifest in csvs:
        with manifest.open(newline="") as fh:
            for row in csv.DictReader(fh):
                name = row.get("path") or row.get("filename") or ""
                if row.get("split") == split and name:
                    kinds[manifest.parent / name] = row.get("kind") or "background"
    return kinds


def background_codes(
    clf: Classifier, paths: Sequence[Path], windows: int, seed: int = 0, kinds: Mapping[Path, str] | None = None
) -> npt.NDArray[np.int8]:
    """``windows`` embeddings (int8 codes, as the model outputs them) of hops of ``paths`` through the daemon's
    pipeline, drawn by :func:`draw_background`."""
    spec = clf.manifest.embedding
    assert spec is not None
    rate = clf.manifest.features.sample_rate
    floats = np.stack(
        draw_background(paths, windows, lambda path: _embeddings(clf, read_mono(path, rate)), seed, kinds)
    )
    out = spec.output
    codes = np.rint(floats / out.scale + out.zero_point) if out.dtype == "int8" else floats
    return np.asarray(codes, dtype=np.int8 if out.dtype == "int8" else np.float32)


def draw_background(
    paths: Sequence[Path],
    windows: int,
    hops_of: Callable[[Path], Sequence[npt.NDArray[np.float32]]],
    seed: int = 0,
    kinds: Mapping[Path, str] | None = None,
) -> list[npt.NDArray[np.float32]]:
    """``windows`` hop embeddings (``hops_of(path)``: every hop of a file), seeded.  With ``kinds``, each kind gets
    an equal share of the windows, spread over its files: the corpora hold a thousand short speech files for each
    noise recording, and a set drawn per file is all speech, so a new device's taught heads would never have seen
    a quiet room (bench/teach.py measured it).  The kinds of fewest files come first; what they fall short of (a
    short recording has few hops) goes to the later ones.  Without ``kinds``, the windows are spread over the
    files.  ``auricle-train embed`` draws the bundle's set with it, and bench/teach.py the same set under YAMNet."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(kinds.get(path, "background") if kinds else "all", []).append(path)
    rng = np.random.default_rng(seed)
    rows: list[npt.NDArray[np.float32]] = []
    names = sorted(groups, key=lambda k: (len(groups[k]), k))
    for i, kind in enumerate(names):
        quota = (windows - len(rows)) // (len(names) - i)
        per_file = max(1, -(-quota // len(groups[kind])))
        drawn: list[npt.NDArray[np.float32]] = []
        for path in rng.permutation(np.array(groups[kind], dtype=object)):
            hops = hops_of(path)
            drawn += [hops[j] for j in rng.permutation(len(hops))[:per_file]]
            if len(drawn) >= quota:
                break
        rows += drawn[:quota]
        _LOGGER.info(
            "embed: %d background windows of %s from %d files", min(quota, len(drawn)), kind, len(groups[kind])
        )
    return rows


def read_mono(path: Path, rate: int) -> npt.NDArray[np.float32]:
    """A background file as mono float32 at ``rate``."""
    import soundfile as sf

    from edge.audio.resample import Resampler

    data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1).astype(np.float32)
    return mono if file_rate == rate else Resampler(file_rate, rate).process(mono)


def _embeddings(clf: Classifier, samples: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
    """The embedding of every inferred hop of ``samples`` through the daemon's pipeline."""
    hops: list[npt.NDArray[np.float32]] = []
    stream_events(clf, samples, Config(), on_scores=lambda _t, _s: hops.append(clf.embedding().copy()))
    return hops


def same_outputs(old: Bundle, new: Bundle, probes: npt.NDArray[np.float32]) -> None:
    """Raise unless the two bundles give the same label and AudioSet outputs (int8 codes) on ``probes``."""
    a, b = Classifier(old), Classifier(new)
    for x in probes:
        tensor = x[None, ..., None] if x.ndim == 2 else x
        if not np.array_equal(a.raw(tensor), b.raw(tensor)):
            raise EmbeddingError("the label output changed: refusing to write")
        if not np.array_equal(a.audioset_scores(), b.audioset_scores()):  # type: ignore[arg-type]
            raise EmbeddingError("the AudioSet output changed: refusing to write")


def embed_bundle(
    source: Path,
    target: Path,
    version: str,
    background: Sequence[Path],
    windows: int,
    key: Path | None = None,
    size: int = 1024,
    kinds: Mapping[Path, str] | None = None,
) -> Manifest:
    """Write ``target``: ``source`` as ``version`` with its ``size``-value embedding declared and a background
    set of ``windows`` rows (an equal share per kind of background, given ``kinds``)."""
    from edge.features import compute, to_input, window_at, window_ends
    from edge.model.bundle import load_private_key

    old = read_bundle(source)
    tflite = with_embedding_output(old.model, size)
    manifest = dataclasses.replace(old.manifest, version=version, embedding=embedding_spec(tflite, size))
    target.parent.mkdir(parents=True, exist_ok=True)
    draft = target.with_name(f".{target.name}.draft")
    try:
        write_bundle(draft, manifest, tflite, selftest=old.selftest)
        new = read_bundle(draft)
    finally:
        draft.unlink(missing_ok=True)  # read_bundle keeps what it read; no draft is left beside the target
    m = old.manifest
    probe_audio = np.random.default_rng(1).standard_normal(3 * m.features.sample_rate).astype(np.float32) * 0.1
    if old.selftest is not None:
        probe_audio = np.concatenate([parse_selftest(old.selftest, m, str(source)).samples, probe_audio])
    frames = compute(probe_audio, m.features)
    ends = window_ends(len(frames), m.window_frames, max(1, m.hop_frames))
    probes = np.stack([to_input(window_at(frames, e, m.window_frames, m.features), m.features, m.input) for e in ends])
    same_outputs(old, new, probes)
    codes = background_codes(Classifier(new), background, windows, kinds=kinds)
    private = load_private_key(key) if key else None
    write_bundle(target, manifest, tflite, private_key=private, selftest=old.selftest, background=background_npz(codes))
    return parse_bundle(target.read_bytes(), str(target)).manifest
