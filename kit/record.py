"""Record a fixed duration through sounddevice; run as a subprocess by kit.pulse.Recorder.

Writes READY on stdout once the first block arrives, then <out> (.npy, float32, shape
(frames, channels)) and <out>.json with timing statistics. Exit status 0 on success.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

_LOGGER = logging.getLogger("kit.record")


class _Capture:
    """Copies callback blocks into a preallocated buffer; nothing else in the callback."""

    def __init__(self, frames: int, channels: int) -> None:
        self.buffer = np.zeros((frames, channels), dtype=np.float32)
        self.pos = 0
        self.status_flags = 0
        self.first_callback_s = -1.0
        self.started = threading.Event()
        self.done = threading.Event()

    def callback(self, indata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        if status:
            self.status_flags += 1
        if not self.started.is_set():
            self.first_callback_s = time.monotonic()
            self.started.set()
        n = min(frames, len(self.buffer) - self.pos)
        self.buffer[self.pos : self.pos + n] = indata[:n]
        self.pos += n
        if self.pos >= len(self.buffer):
            self.done.set()


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--device", default="pulse")
    parser.add_argument("--timeout", type=float, default=10.0, help="extra seconds allowed")
    return parser.parse_args()


def main() -> int:
    """Record, signal READY, save; return the exit status."""
    args = _parse()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    import sounddevice as sd  # after the caller set the env: see pulse.py

    capture = _Capture(round(args.seconds * args.rate), args.channels)
    opened = time.monotonic()
    with sd.InputStream(
        device=args.device,
        samplerate=args.rate,
        channels=args.channels,
        dtype="float32",
        callback=capture.callback,
    ):
        if not capture.started.wait(args.timeout):
            _LOGGER.error("no audio block within %s s", args.timeout)
            return 2
        os.write(sys.stdout.fileno(), b"READY\n")
        if not capture.done.wait(args.seconds + args.timeout):
            _LOGGER.error("recorded %d frames only", capture.pos)
            return 3
    np.save(args.out, capture.buffer)
    stats = {
        "frames": capture.pos,
        "status_flags": capture.status_flags,
        "first_callback_s": capture.first_callback_s - opened,
    }
    args.out.with_suffix(".json").write_text(json.dumps(stats))
    _LOGGER.info("recorded %s", stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
