"""``auricle record SECONDS FILE``: the microphone to a 16-bit mono WAV.

Made for recording the room the device listens in, the most useful background audio there is
for training (``docs/training.md``).  The microphone is chosen as the daemon chooses it
(``audio.device`` of ``--config FILE``, ``--device`` overriding) and read through
:class:`edge.audio.mic.MicSource`, resampled to the model rate.  A watchdog ends the recording with an
error when no audio arrives for ``--timeout`` seconds; the file is written to ``FILE.part`` and
renamed, so ``FILE`` is either complete or absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge.audio.sources import AudioError, Block
from edge.features import FeatureParams

_LOGGER = logging.getLogger(__name__)

_POLL_S = 0.05


class _Blocks(Protocol):
    def blocks(self, stop: threading.Event) -> Iterator[Block]: ...


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``record``."""
    p = sub.add_parser(
        "record",
        help="record the microphone to a WAV file, e.g. your room's background audio for training",
        description="Record SECONDS of the microphone (chosen as the daemon chooses it) to a 16-bit mono WAV "
        "at the model rate. Record the room where the device will listen, with no target sound in it, "
        "and add the file to the training config's background sources: it is the background that "
        "teaches the model best what not to report.",
    )
    p.add_argument("seconds", type=_positive, metavar="SECONDS", help="how long to record")
    p.add_argument("file", type=Path, metavar="FILE", help="WAV file to write (via FILE.part)")
    p.add_argument("--config", "-c", metavar="FILE", help="daemon config: its audio.device and microphone settings")
    p.add_argument("--device", "-d", help="input device, name substring or index (overrides the config)")
    default_rate = FeatureParams().sample_rate
    p.add_argument("--rate", type=int, default=default_rate, help=f"Hz (default: the model rate, {default_rate})")
    p.add_argument("--timeout", type=_positive, default=5.0, metavar="S", help="fail after S s with no audio")
    p.set_defaults(handler=_record)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _record(args: argparse.Namespace) -> int:
    from edge.audio.mic import MicSource
    from edge.daemon.config import load_config

    audio = load_config(args.config).audio
    device = args.device if args.device is not None else audio.device
    params = dataclasses.replace(audio, device=device)
    reasons = _Reasons()
    if not args.verbose:  # each retry's warning from edge.audio.mic would repeat the one reason _Reasons logs
        logging.getLogger("edge.audio.mic").setLevel(logging.ERROR)
    source = MicSource(args.rate, params, on_status=reasons.add)
    try:
        samples = capture(source, round(args.seconds * args.rate), args.timeout)
        write_wav16(args.file, samples, args.rate)
    except AudioError as exc:
        why = f" ({reasons.last})" if reasons.last else ""
        print(f"auricle: {exc}{why}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"auricle: cannot write {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stats = source.stats()
    if stats["dropped_blocks"] or stats["reopens"]:
        _LOGGER.warning("the recording has gaps: %s", stats)
    print(f"wrote {args.file} ({len(samples) / args.rate:g} s, {args.rate} Hz, 16-bit mono)")
    return 0


def capture(source: _Blocks, n_samples: int, timeout_s: float) -> npt.NDArray[np.float32]:
    """The first ``n_samples`` from ``source``; AudioError if no audio arrives for ``timeout_s``."""
    stop = threading.Event()
    chunks: list[npt.NDArray[np.float32]] = []
    got = 0
    blocks = source.blocks(stop)
    with _Watchdog(stop, timeout_s) as watchdog:
        try:
            for block in blocks:
                watchdog.feed()
                chunks.append(np.asarray(block.samples, dtype=np.float32))
                got += len(block.samples)
                if got >= n_samples:
                    break
        finally:
            getattr(blocks, "close", lambda: None)()  # a generator closes its stream now, not at collection
    if got == 0:
        raise AudioError(f"no audio from the microphone in {timeout_s:g} s")
    if got < n_samples:
        raise AudioError(f"the microphone stopped: no audio for {timeout_s:g} s, {got / n_samples:.0%} recorded")
    return np.concatenate(chunks)[:n_samples]


def write_wav16(path: Path, samples: npt.NDArray[np.floating], rate_hz: int) -> None:
    """16-bit mono WAV, written to ``path.part`` and renamed to ``path``."""
    part = path.with_name(path.name + ".part")
    pcm = np.clip(np.rint(samples * 32767.0), -32768, 32767).astype("<i2")
    try:
        with wave.open(str(part), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate_hz)
            wav.writeframes(pcm.tobytes())
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


class _Reasons:
    """Microphone status reasons: the last is kept for the error, each new one is logged once."""

    def __init__(self) -> None:
        self.last = ""

    def add(self, reason: str | None) -> None:
        if reason is None:  # recovered: the last reason stays for a later error
            return
        if reason != self.last:
            _LOGGER.warning("%s", reason)
        self.last = reason


class _Watchdog:
    """Sets ``stop`` once ``timeout_s`` pass without :meth:`feed` (no audio from the source)."""

    def __init__(self, stop: threading.Event, timeout_s: float) -> None:
        self._stop = stop
        self._timeout_s = timeout_s
        self._last = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="record-watchdog", daemon=True)

    def feed(self) -> None:
        self._last = time.monotonic()

    def _watch(self) -> None:
        while not self._done.wait(_POLL_S):
            if time.monotonic() - self._last > self._timeout_s:
                _LOGGER.debug("no audio for %.3g s: stopping", self._timeout_s)
                self._stop.set()
                return

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._stop.set()
        self._thread.join(timeout=1.0)
