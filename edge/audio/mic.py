"""The microphone source: sounddevice callback -> bounded queue -> mono blocks.

The callback only copies the block and its arrival time into a bounded queue
(dropping and counting when full); everything else happens in the reading
thread, which also watches the stream from outside: PortAudio does not raise
callback errors, so a device that errors or goes silent (unplugged) is noticed
by a stall timer and reopened with exponential backoff, and the reason is
reported through ``on_status`` (``None`` once audio flows again).

``sounddevice`` is imported lazily: it scans devices once, at import.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.audio.resample import Resampler
from edge.audio.sources import POLL_S, AudioError, Block, to_mono
from edge.schema import setting

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class MicParams:
    """How the microphone is opened and watched (the daemon's ``audio`` section extends it)."""

    device: Any = setting(None, doc="input device: name substring or index; null = system default")
    block_samples: int = setting(
        160, lo=16, hi=65536, unit="samples at the model rate per block; each block waits to fill, so it adds latency"
    )
    queue_blocks: int = setting(256, lo=2, hi=4096, unit="microphone blocks buffered; more are dropped")
    stall_s: float = setting(3.0, lo=0.2, hi=600.0, unit="s without audio before the mic is reopened")
    reopen_min_s: float = setting(0.5, lo=0.05, hi=600.0, unit="s, first reopen delay")
    reopen_max_s: float = setting(30.0, lo=0.05, hi=3600.0, unit="s, longest reopen delay")

    def __post_init__(self) -> None:
        if self.device is not None and (isinstance(self.device, bool) or not isinstance(self.device, (str, int))):
            raise ValueError(f"device: expected a name or an index, got {self.device!r}")
        if self.reopen_min_s > self.reopen_max_s:
            raise ValueError("reopen_min_s must not exceed reopen_max_s")


def input_devices() -> list[dict[str, Any]]:
    """Input devices as ``{index, name, channels, default_rate_hz}``."""
    import sounddevice as sd

    devices = []
    for index, dev in enumerate(sd.query_devices()):
        if dev["max_input_channels"] > 0:
            devices.append(
                {
                    "index": index,
                    "name": dev["name"],
                    "channels": int(dev["max_input_channels"]),
                    "default_rate_hz": float(dev["default_samplerate"]),
                }
            )
    return devices


def resolve_device(device: str | int | None) -> int | None:
    """Device index for an index, an exact name or a unique-enough name substring."""
    if device is None:
        return None
    if isinstance(device, int) or device.isdigit():
        return int(device)
    devices = input_devices()
    exact = [d for d in devices if d["name"] == device]
    found = exact or [d for d in devices if device.lower() in d["name"].lower()]
    if not found:
        names = ", ".join(repr(d["name"]) for d in devices) or "none"
        raise AudioError(f"no input device matches {device!r} (inputs: {names})")
    return int(found[0]["index"])


class _Stream:
    """One open input stream and its callback state."""

    def __init__(self, device: int | None, rate_hz: int, params: MicParams) -> None:
        import sounddevice as sd

        info = sd.query_devices(device, "input")
        self.channels = 1
        self.capture_rate = rate_hz
        try:
            sd.check_input_settings(device=device, samplerate=rate_hz, channels=1, dtype="float32")
        except sd.PortAudioError:  # the hardware cannot do the model rate: resample ourselves
            self.capture_rate = int(info["default_samplerate"])
            self.channels = max(1, min(2, int(info["max_input_channels"])))
        self.queue: queue.Queue[tuple[npt.NDArray[np.float32], float]] = queue.Queue(maxsize=params.queue_blocks)
        self.dropped = 0
        self.flags = 0
        self.stream = sd.InputStream(
            device=device,
            samplerate=self.capture_rate,
            channels=self.channels,
            dtype="float32",
            blocksize=round(params.block_samples * self.capture_rate / rate_hz),
            callback=self._callback,
        )
        self.stream.start()

    def _callback(self, indata: npt.NDArray[np.float32], _frames: int, _time: Any, status: Any) -> None:
        if status:
            self.flags += 1
        try:
            self.queue.put_nowait((indata.copy(), time.time()))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        try:
            self.stream.abort()
            self.stream.close()
        except Exception as exc:  # a dead device may fail in any way while closing
            _LOGGER.debug("closing input stream: %s", exc)


class MicSource:
    """Capture from a sounddevice input, resampled to ``rate_hz``, mixed to mono."""

    def __init__(self, rate_hz: int, params: MicParams, on_status: Callable[[str | None], None] | None = None) -> None:
        self.rate_hz = rate_hz
        self.live = True
        self._params = params
        self._on_status = on_status or (lambda _reason: None)
        self._dropped = 0
        self._reopens = 0
        self._reported = False
        """A problem was reported and audio has not flowed since."""

    def stats(self) -> dict[str, int]:
        return {"dropped_blocks": self._dropped, "reopens": self._reopens}

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        delay = self._params.reopen_min_s
        while not stop.is_set():
            stream = self._open()
            if stream is None:
                stop.wait(delay)
                delay = min(2 * delay, self._params.reopen_max_s)
                continue
            try:
                delivered = yield from self._read(stream, stop)
            finally:
                self._dropped += stream.dropped
                stream.close()
            if delivered:
                delay = self._params.reopen_min_s
            if not stop.is_set():
                self._reopens += 1

    def _open(self) -> _Stream | None:
        try:
            stream = _Stream(resolve_device(self._params.device), self.rate_hz, self._params)
        except AudioError as exc:
            self._report(f"microphone unavailable: {exc}")
            return None
        except Exception as exc:  # PortAudio raises several types for a missing device
            self._report(f"microphone unavailable: {type(exc).__name__}: {exc}")
            return None
        _LOGGER.info("microphone open: %s Hz, %d channel(s)", stream.capture_rate, stream.channels)
        return stream

    def _read(self, stream: _Stream, stop: threading.Event) -> Generator[Block, None, bool]:
        """Blocks from one stream; returns True when any audio arrived."""
        resampler = Resampler(stream.capture_rate, self.rate_hz)
        last, delivered = time.monotonic(), False
        while not stop.is_set():
            try:
                data, t_arrival = stream.queue.get(timeout=POLL_S)
            except queue.Empty:
                if time.monotonic() - last > self._params.stall_s or not stream.stream.active:
                    self._report(f"microphone stalled: no audio for {self._params.stall_s:g} s, reopening")
                    return delivered
                continue
            last, delivered = time.monotonic(), True
            if self._reported:
                self._recovered()
            samples = resampler.process(to_mono(data))
            if len(samples):
                yield Block(samples, t_arrival)
        return delivered

    def _report(self, reason: str) -> None:
        _LOGGER.warning("%s", reason)
        self._reported = True
        self._tell(reason)

    def _recovered(self) -> None:
        _LOGGER.info("microphone recovered: audio flows again")
        self._reported = False
        self._tell(None)

    def _tell(self, reason: str | None) -> None:
        try:
            self._on_status(reason)
        except Exception:
            _LOGGER.exception("publishing the microphone status failed")
