"""Audio sources: microphone, file replay and raw PCM on stdin, all as mono blocks.

Every source yields :class:`Block` objects at the model's sample rate from
``blocks(stop)`` until the stream ends or ``stop`` is set; each wait inside is
bounded so a stop request is seen within a fraction of a second.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from edge.audio.resample import Resampler

_LOGGER = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]
POLL_S = 0.2
"""Longest a source waits before looking at the stop flag again."""
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".au", ".mp3")
"""The audio files the file source reads: PCM WAV through the stdlib, the rest through soundfile (its wheels
bundle libsndfile 1.2, which reads FLAC, Ogg Vorbis and Opus, AIFF, AU and MP3); what classify and
the benchmarks look for in a folder."""


class AudioError(RuntimeError):
    """An audio source cannot be used; the message is one line naming it."""


@dataclass(frozen=True, slots=True)
class Block:
    """Mono samples at the model rate."""

    samples: Floats
    """float32 in [-1, 1]."""
    t_end: float
    """Epoch seconds of the last sample."""


class Source(Protocol):
    """What the pipeline reads from."""

    rate_hz: int
    live: bool
    """True for a real-time device whose block times may disagree with the sample clock (drops, drift)."""

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        """Blocks until the stream ends or ``stop`` is set."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters for health: dropped blocks, reopens."""
        ...


def to_mono(frames: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """``(n, channels)`` or ``(n,)`` samples to mono float64 (channel mean)."""
    arr = np.asarray(frames)
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float64) / float(np.iinfo(arr.dtype).max + 1)
    return arr.astype(np.float64, copy=False) if arr.ndim == 1 else arr.mean(axis=1, dtype=np.float64)


# --- files -------------------------------------------------------------------------


class _Reader(Protocol):
    rate_hz: int

    def read(self, n: int) -> npt.NDArray[np.float64]: ...

    def close(self) -> None: ...


class _WavReader:
    """PCM WAV through the stdlib: 8-bit unsigned, 16/24/32-bit signed."""

    def __init__(self, path: Path) -> None:
        self._wav = wave.open(str(path), "rb")  # noqa: SIM115 - closed by close()
        self.rate_hz = self._wav.getframerate()
        self._channels = self._wav.getnchannels()
        self._width = self._wav.getsampwidth()
        if self._width not in (1, 2, 3, 4):
            self._wav.close()
            raise wave.Error(f"unsupported sample width {self._width} bytes")

    def read(self, n: int) -> npt.NDArray[np.float64]:
        raw = self._wav.readframes(n)
        if self._width == 1:
            ints = np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0
            scale = 128.0
        elif self._width == 3:
            b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            ints = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float64)
            scale = float(1 << 23)
        else:
            ints = np.frombuffer(raw, dtype=f"<i{self._width}").astype(np.float64)
            scale = float(1 << (8 * self._width - 1))
        return to_mono(ints.reshape(-1, self._channels) / scale)

    def close(self) -> None:
        self._wav.close()


class _SoundFileReader:
    """FLAC, OGG and friends through soundfile (an optional dependency)."""

    def __init__(self, path: Path) -> None:
        import soundfile

        self._file = soundfile.SoundFile(str(path))
        self.rate_hz = int(self._file.samplerate)

    def read(self, n: int) -> npt.NDArray[np.float64]:
        return to_mono(self._file.read(n, dtype="float64", always_2d=True))

    def close(self) -> None:
        self._file.close()


def open_audio(path: str | os.PathLike[str]) -> _Reader:
    """Open an audio file for streaming reads; :class:`AudioError` names the file and the reason."""
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"{p}: cannot read audio: {'not a file' if p.exists() else 'no such file'}")
    try:
        if p.suffix.lower() == ".wav":
            try:
                return _WavReader(p)
            except wave.Error:
                pass  # e.g. float WAV: soundfile reads it
        return _SoundFileReader(p)
    except ImportError:
        raise AudioError(f"{p}: cannot read {p.suffix} files without the soundfile package") from None
    except (OSError, RuntimeError, ValueError, EOFError, wave.Error) as exc:
        raise AudioError(f"{p}: cannot read audio: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


class FileSource:
    """Replay an audio file at real-time pace or as fast as possible."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        rate_hz: int,
        *,
        realtime: bool,
        loop: bool = False,
        block_samples: int = 160,
        start_time: float | None = None,
    ) -> None:
        """``start_time``: epoch of the first sample (None = now; 0.0 gives seconds into the file)."""
        self.path = Path(path)
        self.rate_hz = rate_hz
        self.live = False
        self._realtime, self._loop, self._block = realtime, loop, block_samples
        self._start_time = start_time
        open_audio(self.path).close()  # fail at start-up, not in the worker

    def stats(self) -> dict[str, int]:
        return {"dropped_blocks": 0}

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        t0 = time.time() if self._start_time is None else self._start_time
        n_out, started = 0, time.time()
        while not stop.is_set():
            reader = open_audio(self.path)
            resampler = Resampler(reader.rate_hz, self.rate_hz)
            try:
                for samples in _chunks(reader, resampler, self._block):
                    n_out += len(samples)
                    t_end = t0 + (n_out - 1) / self.rate_hz
                    if self._realtime and stop.wait(max(0.0, (t_end - t0) - (time.time() - started))):
                        return
                    if stop.is_set():
                        return
                    yield Block(samples, t_end)
            finally:
                reader.close()
            if not self._loop:
                return


def _chunks(reader: _Reader, resampler: Resampler, block: int) -> Iterator[Floats]:
    try:
        while True:
            raw = reader.read(block)
            if len(raw) == 0:
                return
            out = resampler.process(raw)
            if len(out):
                yield out
    except (OSError, RuntimeError, ValueError, EOFError, wave.Error) as exc:
        raise AudioError(f"cannot read audio: {_reason(exc)}") from None


# --- stdin -------------------------------------------------------------------------


class StdinSource:
    """Raw PCM, signed 16-bit little-endian mono, at ``in_rate_hz``.

    Blocks are stamped on the sample clock from the first block's arrival: a
    pipe may deliver faster or slower than real time, and the times must not care.
    """

    def __init__(self, rate_hz: int, in_rate_hz: int, *, stream: BinaryIO, block_samples: int = 160) -> None:
        self.rate_hz = rate_hz
        self.live = False
        self._fd = stream.fileno()
        self._resampler = Resampler(in_rate_hz, rate_hz)
        self._block_bytes = 2 * block_samples

    def stats(self) -> dict[str, int]:
        return {"dropped_blocks": 0}

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        odd = b""  # a read can end between the two bytes of a sample
        t0: float | None = None
        n_out = 0
        while not stop.is_set():
            if not select.select([self._fd], [], [], POLL_S)[0]:
                continue
            data = os.read(self._fd, self._block_bytes)
            if not data:
                return
            data, odd = odd + data, b""
            if len(data) % 2:
                data, odd = data[:-1], data[-1:]
            pcm = np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0
            samples = self._resampler.process(pcm)
            if len(samples):
                t0 = time.time() if t0 is None else t0
                n_out += len(samples)
                yield Block(samples, t0 + (n_out - 1) / self.rate_hz)
