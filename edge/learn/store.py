"""What the device learned, on disk: examples, fitted heads and the background reservoir, in the state dir.

Layout under ``<model.state_dir>/taught/`` (docs/teaching.md)::

    examples/<label>/yes-001.wav       a user's example of LABEL (16-bit mono WAV at the model's rate)
    examples/<label>/not-001.wav       "this is not LABEL"
    examples/<label>/not-002.emb.npz   a "wrong" verdict on an event whose audio was not recorded: the event's
                                       embeddings under the model that heard it (``model_sha256``)
    heads-<sha12>.json                 the heads fitted for one model (bundle sha256), and what the fit said
    reservoir-<sha12>.npz              embeddings of ordinary hops the daemon heard with that model
    cache/<sha12>/<label>/<name>.npz   an example's window embeddings under that model (refitting is fast)
    generation                         rewritten on every change: the daemon reloads when it moves

The examples are the truth; heads, reservoir and cache are derived and are refit or rebuilt under a new model
(a reservoir and an embedding-only example cannot be carried to another model's embedding: they are left out
of its fit, and the fit says so).  Every file is written durably (edge/durable.py), and every change that
reads, modifies and writes runs under one lock, so ``auricle teach`` and the daemon can both write.  Nothing
here leaves the device.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import re
import shutil
import time
import wave
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge.durable import fsync_dir, write_durably
from edge.learn.heads import Head

F32 = npt.NDArray[np.float32]
ROOT = "taught"
FORMAT = 1
Verdict = Literal["yes", "not"]
RECENT = 64
"""Events whose embeddings are kept for a verdict ("that wasn't it"): the latest this many."""
LABEL = re.compile(r"^[a-z0-9][a-z0-9_]{0,47}$")
"""A taught label: lowercase letters, digits and underscores (it becomes an MQTT topic level and an entity id)."""


class StoreError(ValueError):
    """A store request that cannot be done: the one line says what and where."""


def check_label(label: str) -> str:
    """``label`` if it can be a taught label; StoreError naming it otherwise."""
    if not LABEL.match(label):
        raise StoreError(
            f"label {label!r}: use 1-48 lowercase letters, digits and underscores, starting with a letter or digit"
        )
    return label


def sha12(sha256: str) -> str:
    return sha256[:12]


@dataclass(frozen=True)
class Example:
    """One stored example."""

    label: str
    verdict: Verdict
    path: Path
    audio: bool
    """True: a WAV file (refit under any model); False: embeddings under one model (``.emb.npz``)."""

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Fitted:
    """The heads fitted for one model, and the fit's lines (what it could not measure, what it left out)."""

    model_sha256: str
    heads: tuple[Head, ...]
    lines: tuple[str, ...]
    fitted: str
    """When (ISO 8601, UTC)."""
    examples: tuple[str, ...] = ()
    """``label/name`` of the examples fitted on: a head is refit when the examples changed since."""


@dataclass(frozen=True)
class Heard:
    """An event the daemon heard, kept for a verdict: its hops' embeddings under the model that heard it."""

    id: str
    label: str
    start: float
    """Epoch seconds."""
    model_sha256: str
    rows: F32
    clip: str | None = None
    """Its recorded clip, when recording is on."""


class TaughtStore:
    """The ``taught`` folder of one state dir."""

    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir) / ROOT

    # -- locking and change notice -------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's lock (another process or thread waits)."""
        self._mkdir(self.root)
        with open(self.root / ".lock", "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def generation(self) -> int:
        """Changes when anything was taught, forgotten or refit (0: never)."""
        try:
            return (self.root / "generation").stat().st_mtime_ns
        except OSError:
            return 0

    def touch(self) -> None:
        """Say that something changed (the daemon reloads its heads)."""
        self._mkdir(self.root)
        write_durably(self.root / "generation", f"{time.time_ns()}\n".encode())

    # -- examples --------------------------------------------------------------------------------------
    def examples(self, label: str | None = None) -> list[Example]:
        """Stored examples (of ``label``), by label then name."""
        base = self.root / "examples"
        folders = [base / label] if label else sorted(p for p in base.glob("*") if p.is_dir())
        found = []
        for folder in folders:
            for path in sorted(folder.glob("*")):
                verdict = path.name.split("-", 1)[0]
                if verdict not in ("yes", "not") or path.name.startswith("."):
                    continue
                if path.suffix == ".wav" or path.name.endswith(".emb.npz"):
                    found.append(Example(folder.name, verdict, path, path.suffix == ".wav"))  # type: ignore[arg-type]
        return found

    def labels(self) -> dict[str, dict[str, int]]:
        """Per taught label, its example counts (``yes``, ``not``)."""
        counts: dict[str, dict[str, int]] = {}
        for ex in self.examples():
            counts.setdefault(ex.label, {"yes": 0, "not": 0})[ex.verdict] += 1
        return counts

    def add_audio(self, label: str, verdict: Verdict, samples: F32, rate_hz: int) -> Example:
        """Keep one example's audio (float samples in -1..1) as a 16-bit WAV."""
        path = self._next(label, verdict, ".wav")
        pcm = (np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0) * 32767).round().astype("<i2")
        write_durably(path, _wav_bytes(pcm, rate_hz))
        return Example(label, verdict, path, True)

    def add_embeddings(self, label: str, verdict: Verdict, rows: F32, model_sha256: str) -> Example:
        """Keep one example as embeddings under one model (an event heard while recording was off)."""
        path = self._next(label, verdict, ".emb.npz")
        write_durably(path, _npz(rows=np.asarray(rows, np.float32), model_sha256=np.array(model_sha256)))
        return Example(label, verdict, path, False)

    def read_audio(self, example: Example) -> tuple[F32, int]:
        """An audio example's samples (float32) and rate."""
        with wave.open(str(example.path), "rb") as w:
            rate, n = w.getframerate(), w.getnframes()
            pcm = np.frombuffer(w.readframes(n), dtype="<i2")
        return (pcm.astype(np.float32) / 32767).astype(np.float32), rate

    def read_embeddings(self, example: Example) -> tuple[F32, str]:
        """An embedding-only example's rows and the model sha256 they are under."""
        with np.load(example.path, allow_pickle=False) as npz:
            return np.asarray(npz["rows"], np.float32), str(npz["model_sha256"])

    def forget(self, label: str) -> int:
        """Remove a label's examples and cached embeddings; how many examples there were."""
        n = len(self.examples(label))
        for folder in [self.root / "examples" / label, *self.root.glob(f"cache/*/{label}")]:
            if folder.is_dir():
                shutil.rmtree(folder)
                fsync_dir(folder.parent)
        return n

    def _next(self, label: str, verdict: Verdict, suffix: str) -> Path:
        folder = self.root / "examples" / check_label(label)
        self._mkdir(folder)
        taken = [int(m.group(1)) for p in folder.glob(f"{verdict}-*") if (m := re.match(rf"{verdict}-(\d+)", p.name))]
        return folder / f"{verdict}-{max(taken, default=0) + 1:03d}{suffix}"

    # -- recent events (for a verdict) -----------------------------------------------------------------
    def keep_event(self, event: Heard) -> None:
        """Keep what an event's hops embedded (the oldest beyond :data:`RECENT` are dropped)."""
        folder = self.root / "recent"
        self._mkdir(folder)
        meta = json.dumps({k: v for k, v in asdict(event).items() if k != "rows"})
        write_durably(folder / f"{event.id}.npz", _npz(rows=event.rows.astype(np.float16), meta=np.array(meta)))
        kept = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime_ns)
        for old in kept[:-RECENT]:
            old.unlink(missing_ok=True)

    def heard(self, event_id: str) -> Heard | None:
        """A recent event by id (``latest``: the newest); None when it is not among them."""
        folder = self.root / "recent"
        if event_id == "latest":
            kept = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime_ns)
            path = kept[-1] if kept else None
        else:
            path = folder / f"{event_id}.npz" if re.fullmatch(r"[0-9a-f]{1,64}", event_id) else None
        try:
            if path is None:
                return None
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                return Heard(rows=np.asarray(npz["rows"], np.float32), **meta)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def used(self, event_id: str) -> None:
        """The verdict on an event was kept: it cannot be given twice."""
        (self.root / "recent" / f"{event_id}.npz").unlink(missing_ok=True)

    # -- cached window embeddings ---------------------------------------------------------------------
    def cached(self, example: Example, model_sha256: str) -> tuple[F32, F32] | None:
        """An audio example's window embeddings and levels under a model, when computed before."""
        path = self._cache_path(example, model_sha256)
        try:
            with np.load(path, allow_pickle=False) as npz:
                return np.asarray(npz["rows"], np.float32), np.asarray(npz["levels"], np.float32)
        except (OSError, ValueError, KeyError):
            return None

    def cache(self, example: Example, model_sha256: str, rows: F32, levels: F32) -> None:
        path = self._cache_path(example, model_sha256)
        self._mkdir(path.parent)
        write_durably(path, _npz(rows=rows.astype(np.float32), levels=levels.astype(np.float32)))

    def _cache_path(self, example: Example, model_sha256: str) -> Path:
        return self.root / "cache" / sha12(model_sha256) / example.label / f"{example.path.stem}.npz"

    # -- heads -----------------------------------------------------------------------------------------
    def fitted(self, model_sha256: str) -> Fitted | None:
        """The heads fitted for a model; None when there are none (or the file is unreadable: refit)."""
        path = self.root / f"heads-{sha12(model_sha256)}.json"
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT or data.get("model_sha256") != model_sha256:
                return None
            heads = tuple(_head(h) for h in data["heads"])
            lines, names = tuple(data.get("lines", ())), tuple(data.get("examples", ()))
            return Fitted(model_sha256, heads, lines, str(data.get("fitted", "")), names)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, fitted: Fitted) -> None:
        """Keep a model's heads (replacing what was fitted for it before)."""
        self._mkdir(self.root)
        heads = [_head_json(h) for h in fitted.heads]
        doc = {"format": FORMAT, "model_sha256": fitted.model_sha256, "fitted": fitted.fitted}
        doc |= {"lines": list(fitted.lines), "examples": list(fitted.examples), "heads": heads}
        write_durably(self.root / f"heads-{sha12(fitted.model_sha256)}.json", json.dumps(doc, indent=1).encode())

    def prune(self, keep: set[str]) -> None:
        """Drop heads, reservoirs and caches of models other than ``keep`` (bundle sha256s)."""
        short = {sha12(s) for s in keep}
        for path in [*self.root.glob("heads-*.json"), *self.root.glob("reservoir-*.npz")]:
            if path.stem.split("-", 1)[1] not in short:
                path.unlink(missing_ok=True)
        for folder in self.root.glob("cache/*"):
            if folder.name not in short:
                shutil.rmtree(folder, ignore_errors=True)

    # -- the background reservoir ---------------------------------------------------------------------
    def reservoir(self, model_sha256: str) -> tuple[F32, int]:
        """The reservoir's rows under a model and how many hops were offered to it (none: empty, 0)."""
        try:
            with np.load(self.root / f"reservoir-{sha12(model_sha256)}.npz", allow_pickle=False) as npz:
                return np.asarray(npz["rows"], np.float32), int(npz["seen"])
        except (OSError, ValueError, KeyError):
            return np.zeros((0, 0), np.float32), 0

    def save_reservoir(self, model_sha256: str, rows: F32, seen: int) -> None:
        self._mkdir(self.root)
        data = _npz(rows=rows.astype(np.float16), seen=np.array(seen))
        write_durably(self.root / f"reservoir-{sha12(model_sha256)}.npz", data)

    @staticmethod
    def _mkdir(folder: Path) -> None:
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            fsync_dir(folder.parent)


def _npz(**arrays: npt.NDArray[np.generic]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _wav_bytes(pcm: npt.NDArray[np.int16], rate_hz: int) -> bytes:
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _head_json(head: Head) -> dict[str, object]:
    data = asdict(head)
    data["weights"] = base64.b64encode(np.asarray(head.weights, dtype="<f4").tobytes()).decode()
    return data


def _head(data: dict[str, object]) -> Head:
    weights = np.frombuffer(base64.b64decode(str(data["weights"])), dtype="<f4")
    fields = {k: v for k, v in data.items() if k != "weights"}
    return Head(weights=tuple(float(v) for v in weights), **fields)  # type: ignore[arg-type]
