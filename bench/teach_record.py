"""What bench/teach.py measures on: every hop of a stream under a base network through the daemon's pipeline,
the windows of example clips as the device takes them, and the negatives a device fits against; all cached.

Two bases, both with the model's window (96 frames), hop (20 frames, 0.2 s) and front end (YAMNet's):

- **YAMNet int8's own network** (``training.model.yamnet``, :class:`YamnetBase`): it never learned the ESC-50
  labels, so it stands for "a sound the model does not know".  It takes the place of the classifier in the
  daemon's ``Pipeline`` and in ``edge.detect.teaching.clip_windows``; it has no label scores, only its
  1024-d embedding (the layer-28 mean, the tensor the shipped model's embedding output is the fine-tuned
  twin of).
- **the shipped model** (a ``Classifier`` whose bundle declares its embedding): its label scores after its
  AudioSet rule and its embedding, for corrections of its own labels.

Embeddings are kept as the int8 codes the networks output (exact: dequantised as the device does).  The
cache (``runs/bench/teach``, gitignored) is keyed by the base and a description of the stream.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import soundfile as sf

from bench import home_stream, streams
from bench.event_scoring import Detection, Span
from bench.streams import Item
from edge import features
from edge.audio.resample import Resampler
from edge.daemon.learning import QUIET_SCORE, SPACING_S
from edge.daemon.replay import sample_blocks
from edge.detect.pipeline import Pipeline
from edge.detect.teaching import clip_windows
from edge.learn.heads import sounding
from edge.model.bundle import Manifest
from edge.model.classifier import Classifier
from edge.model.embedding import background_embeddings
from edge.model.outputs import Dequantiser, OutputSpec
from training.model import yamnet

_LOGGER = logging.getLogger("bench.teach")
CACHE = streams.ROOT / "runs" / "bench" / "teach"
F32 = npt.NDArray[np.float32]
I8 = npt.NDArray[np.int8]


class YamnetBase:
    """YAMNet int8 where the daemon's pipeline and the device's example windows expect the classifier: the same
    window, hop and front end (``manifest``, the shipped model's: YAMNet's 96x64 log-mel, whose dB values are
    YAMNet's ``log(mel + 0.001)`` scaled), no label scores, its embedding."""

    labels: tuple[str, ...] = ()

    def __init__(self, peer: yamnet.Yamnet, manifest: Manifest) -> None:
        if not peer.preserves_tensors:
            raise SystemExit("this TFLite runtime cannot read YAMNet's embedding (preserve_all_tensors)")
        self.peer = peer
        # clip_windows hands a model input: float32 makes it the normalised window, which invoke() undoes
        self.manifest = dataclasses.replace(manifest, input=dataclasses.replace(manifest.input, dtype="float32"))
        scale, zero = peer._embedding["quantization"]  # YAMNet's own int8 embedding tensor
        self.codes = OutputSpec(dtype="int8", scale=float(scale), zero_point=int(zero))
        self._last = np.zeros(1024, np.float32)
        self.tag = "yamnet-" + hashlib.sha256(peer.params.model_path.read_bytes()).hexdigest()[:12]

    def scores(self, window_db: F32) -> F32:
        self._last = self.peer.infer(yamnet.log_mel(window_db, self.manifest.features))[1]
        return np.zeros(0, np.float32)

    def invoke(self, tensor: npt.NDArray[Any]) -> F32:
        p = self.manifest.features
        db = (np.asarray(tensor, np.float32)[0, :, :, 0] + 1) * np.float32((p.db_ceiling - p.db_floor) / 2) + p.db_floor
        return self.scores(db)

    def embedding(self) -> F32:
        return self._last


Base = Classifier | YamnetBase


def tag_of(base: Base) -> str:
    return base.tag if isinstance(base, YamnetBase) else base.manifest.model_sha256[:12]


def codes_of(base: Base) -> OutputSpec:
    """The quantisation of the base's embedding (the device dequantises with it)."""
    if isinstance(base, YamnetBase):
        return base.codes
    spec = base.manifest.embedding
    if spec is None:
        raise SystemExit(f"{base.bundle.path}: the model has no embedding output: it cannot be taught")
    return spec.output


def quantise(rows: F32, spec: OutputSpec) -> I8:
    return np.asarray(np.rint(rows / np.float32(spec.scale)) + spec.zero_point, dtype=np.int8)


@dataclass(frozen=True)
class Hops:
    """Every inferred hop of one stream: its offset (s), embedding codes and the base's label scores."""

    t: npt.NDArray[np.float64]
    codes: I8
    scores: F32
    spec: OutputSpec
    seconds: float
    spans: tuple[Span, ...] = ()

    def embeddings(self) -> F32:
        return Dequantiser(self.spec)(self.codes)

    def part(self, start_s: float, end_s: float) -> Hops:
        """The hops whose offsets fall in ``[start_s, end_s)`` and the spans that start there."""
        keep = (self.t >= start_s) & (self.t < end_s)
        spans = tuple(s for s in self.spans if start_s <= s.start_s < end_s)
        t, codes, scores = self.t[keep], self.codes[keep], self.scores[keep]
        return Hops(t, codes, scores, self.spec, end_s - start_s, spans)


def record(base: Base, samples: F32, spans: Sequence[Span] = ()) -> Hops:
    """Every hop of the daemon's pipeline over ``samples`` (no gate, the model's hop): offsets, embeddings,
    scores; as ``edge.daemon.replay`` feeds it."""
    rows: list[F32] = []
    times: list[float] = []
    scores: list[F32] = []

    def keep(offset: float, s: F32) -> None:
        times.append(offset)
        scores.append(np.array(s, np.float32))
        rows.append(np.array(base.embedding(), np.float32))

    pipeline = Pipeline(cast(Classifier, base), on_scores=keep)
    rate, n = pipeline.rate_hz, 0
    for block in sample_blocks(samples):
        n += len(block)
        pipeline.feed(block, (n - 1) / rate)
    pipeline.finish()
    spec = codes_of(base)
    return Hops(
        np.array(times),
        quantise(np.stack(rows), spec),
        np.stack(scores).astype(np.float32) if scores else np.zeros((0, len(base.labels)), np.float32),
        spec,
        len(samples) / rate,
        tuple(spans),
    )


def _path(base: Base, kind: str, key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return CACHE / tag_of(base) / f"{kind}-{digest}.npz"


def cached_hops(base: Base, key: str, make: Callable[[], tuple[F32, Sequence[Span]]]) -> Hops:
    """The recording of the stream ``make`` builds, from the cache when ``key`` was recorded under ``base``."""
    path = _path(base, "hops", key)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            spans = tuple(Span(n, lab, float(a), float(b)) for n, lab, a, b in json.loads(str(z["spans"])))
            spec = OutputSpec(dtype="int8", scale=float(z["scale"]), zero_point=int(z["zero"]))
            return Hops(z["t"], z["codes"], z["scores"], spec, float(z["seconds"]), spans)
    samples, placed = make()
    _LOGGER.info("recording %s under %s (%.1f min)", key, tag_of(base), len(samples) / 16000 / 60)
    hops = record(base, samples, placed)
    path.parent.mkdir(parents=True, exist_ok=True)
    span_json = json.dumps([dataclasses.astuple(s) for s in hops.spans])
    np.savez(
        path, t=hops.t, codes=hops.codes, scores=hops.scores, seconds=hops.seconds, spans=span_json,
        scale=hops.spec.scale, zero=hops.spec.zero_point,
    )  # fmt: skip
    return hops


def cached_detections(
    base: Base,
    key: str,
    make: Callable[[], tuple[F32, Sequence[Span]]],
    peer: yamnet.Yamnet,
    mapping: dict[str, list[int]],
    threshold: float,
) -> tuple[list[Detection], list[Span], float]:
    """YAMNet's event starts as Frigate runs it (bench/streams.py) on the stream ``make`` builds, its spans and
    seconds; cached by ``key``, the mapping and the threshold."""
    path = _path(base, "frigate", f"{key}|{sorted(mapping.items())}|{threshold}").with_suffix(".json")
    if path.is_file():
        data = json.loads(path.read_text())
    else:
        samples, spans = make()
        found = streams.yamnet_detections(peer, samples, mapping, threshold)
        data = {"found": [dataclasses.astuple(d) for d in found], "spans": [dataclasses.astuple(s) for s in spans]}
        data["seconds"] = len(samples) / base.manifest.features.sample_rate
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    return [Detection(*d) for d in data["found"]], [Span(*s) for s in data["spans"]], float(data["seconds"])


# --- examples and negatives --------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """One example clip's windows as the device takes them (edge.detect.teaching.clip_windows)."""

    name: str
    label: str
    codes: I8
    levels: F32

    def sounding(self, spec: OutputSpec) -> F32:
        rows: F32 = Dequantiser(spec)(self.codes[sounding(self.levels)])
        return rows


def clips(base: Base, items: Sequence[tuple[str, str, Path]], key: str) -> dict[str, Clip]:
    """The windows of each (name, label, path) clip under ``base``, cached as one file per ``key``."""
    path = _path(base, "clips", key + "|" + ",".join(name for name, _, _ in items))
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            names, labels = json.loads(str(z["names"])), json.loads(str(z["labels"]))
            return {
                n: Clip(n, lab, z[f"c{i}"], z[f"l{i}"]) for i, (n, lab) in enumerate(zip(names, labels, strict=True))
            }
    rate, spec, arrays = base.manifest.features.sample_rate, codes_of(base), dict[str, Any]()
    out = {}
    for i, (name, label, file) in enumerate(items):
        w = clip_windows(cast(Classifier, base), streams.read_mono(file, rate))
        out[name] = Clip(name, label, quantise(w.rows, spec), w.levels)
        arrays |= {f"c{i}": out[name].codes, f"l{i}": w.levels}
    path.parent.mkdir(parents=True, exist_ok=True)
    names, labels = json.dumps([n for n, _, _ in items]), json.dumps([lab for _, lab, _ in items])
    np.savez(path, names=names, labels=labels, **arrays)
    return out


def _read(path: Path, rate: int) -> F32:
    data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1).astype(np.float32)
    return mono if file_rate == rate else Resampler(file_rate, rate).process(mono)


def _window(base: Base, frames: F32, end: int) -> tuple[F32, F32]:
    """The embedding and the label scores of the one window ending at frame count ``end``."""
    m, p = base.manifest, base.manifest.features
    window = features.window_at(frames, end, m.window_frames, p)
    s = base.scores(window)
    return np.array(base.embedding(), np.float32), s


def _hop_ends(n_frames: int, m: Manifest) -> list[int]:
    return features.window_ends(n_frames, m.window_frames, m.hop_frames)


def bundle_set(
    base: Base, paths: Sequence[Path], windows: int, seed: int = 0, kinds: Mapping[Path, str] | None = None
) -> F32:
    """The shipped bundle's background set, drawn again under ``base``: ``auricle-train embed``'s draw
    (training/model/embedding.py draw_background: an equal share per kind of audio, given ``kinds``).  Under the
    shipped model it is the bundle's own set."""
    from training.model.embedding import draw_background

    if isinstance(base, Classifier) and base.bundle.background and base.manifest.embedding:
        return background_embeddings(base.bundle.background, base.manifest.embedding, str(base.bundle.path))
    key = f"{windows}|{seed}|{sorted(set(kinds.values())) if kinds else ''}|" + "|".join(map(str, paths))
    path = _path(base, "bundleset", key)
    if path.is_file():
        with np.load(path) as z:
            return Dequantiser(codes_of(base))(z["codes"])
    m, rate = base.manifest, base.manifest.features.sample_rate

    def hops_of(file: Path) -> list[F32]:
        frames = features.compute(_read(file, rate), m.features)
        return [_window(base, frames, end)[0] for end in _hop_ends(len(frames), m)]

    codes = quantise(np.stack(draw_background(paths, windows, hops_of, seed, kinds)), codes_of(base))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, codes=codes)
    return Dequantiser(codes_of(base))(codes)


def reservoir(
    base: Base,
    material: Callable[[], tuple[list[Item], list[Item]]],
    rows: int,
    key: str,
    seed: int = 0,
    chunk_min: float = 30.0,
) -> F32:
    """What a device's reservoir holds after it listened to a home (edge/daemon/learning.py): an ordinary hop
    (every label score below QUIET_SCORE) at most once per SPACING_S, until ``rows`` were offered (the daemon
    keeps a uniform sample of RESERVOIR_ROWS; fewer offered are all kept).  The home is bench/home_stream.py's bed
    (speech runs, pauses, music and noise now and then, pink room noise at -62 dBFS throughout) built from
    ``material()``'s speech and other audio, ``chunk_min`` minutes at a time (seeded); only the offered hops are
    computed."""
    path = _path(base, "reservoir", f"{key}|{rows}|{seed}|{chunk_min}")
    if path.is_file():
        with np.load(path) as z:
            return Dequantiser(codes_of(base))(z["codes"])
    m, rate = base.manifest, base.manifest.features.sample_rate
    speech, other = material()
    kept: list[F32] = []
    for chunk in range(1000):
        n = round(chunk_min * 60 * rate)
        bed, _, _ = home_stream.build_bed(speech, other, n, rate, np.random.default_rng([seed, chunk]))
        frames, due = features.compute(bed, m.features), 0.0
        for end in _hop_ends(len(frames), m):
            t = m.features.frames_end(end) / rate
            if t < due:
                continue
            row, scores = _window(base, frames, end)
            if scores.max(initial=0.0) < QUIET_SCORE:
                kept.append(row)
                due = t + SPACING_S
        if len(kept) >= rows:
            break
    codes = quantise(np.stack(kept[:rows]), codes_of(base))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, codes=codes)
    _LOGGER.info(
        "reservoir: %d rows from %.1f h of a home of training-side audio", len(codes), (chunk + 1) * chunk_min / 60
    )
    return Dequantiser(codes_of(base))(codes)
