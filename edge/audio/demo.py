"""A short demo clip the project makes itself (no dataset audio ships).

It holds sounds a general model knows, separated by quiet: a two-tone siren,
alarm-clock beeps and a church bell (the shipped model names them siren,
clock_alarm and church_bells).  Written once to the user's cache directory
(atomically) and replayed in a loop by ``auricle run`` when there is no
microphone.
"""

from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

DEMO_VERSION = 2
RATE_HZ = 16000
_F64 = npt.NDArray[np.float64]


def _silence(seconds: float) -> _F64:
    return np.zeros(round(seconds * RATE_HZ))


def siren(seconds: float = 4.0) -> _F64:
    """A European two-tone ("hi-lo") siren: 440 / 587 Hz, half a second each, square-ish (odd harmonics)."""
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    freq = np.where(np.mod(t, 1.0) < 0.5, 440.0, 587.0)
    phase = 2 * np.pi * np.cumsum(freq) / RATE_HZ
    out = np.zeros_like(t)
    for k in (1, 3, 5, 7):
        out += np.sin(k * phase) / k
    return 0.3 * out


def alarm_beeps(seconds: float = 3.0, beep_hz: float = 3500.0) -> _F64:
    """An alarm clock: a group of four 70 ms square-wave beeps at ``beep_hz`` every second."""
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    gate = ((np.mod(t, 1.0) < 0.5) & (np.mod(t, 0.125) < 0.07)).astype(np.float64)
    return 0.35 * gate * np.sign(np.sin(2 * np.pi * beep_hz * t))


# church-bell partials: (ratio to the prime, amplitude, decay per second) - hum, prime, tierce, quint, nominal...
_BELL = ((0.5, 0.6, 0.4), (1.0, 1.0, 0.8), (1.2, 0.7, 1.0), (1.5, 0.4, 1.3), (2.0, 0.8, 1.6), (2.5, 0.3, 2.2),
         (3.0, 0.25, 2.8), (4.0, 0.2, 3.5))  # fmt: skip


def bell(seconds: float = 4.0, base_hz: float = 600.0) -> _F64:
    """A church bell struck three times: its typical partials, each decaying at its own rate."""
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    out = np.zeros_like(t)
    for ratio, amp, decay in _BELL:
        for strike in (0.0, 1.3, 2.6):
            tt = np.clip(t - strike, 0.0, None)
            out += (t >= strike) * amp * np.exp(-decay * tt) * np.sin(2 * np.pi * base_hz * ratio * tt)
    return 0.15 * out


def demo_samples() -> _F64:
    """The whole demo signal (about 18 s) with a little background noise."""
    parts = [_silence(1.0), siren(), _silence(1.5), alarm_beeps(), _silence(1.5), bell(), _silence(2.0)]
    x = np.concatenate(parts)
    x += 0.002 * np.random.default_rng(DEMO_VERSION).standard_normal(len(x))
    return np.clip(x, -1.0, 1.0)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/auricle`` (or ``~/.cache/auricle``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "auricle"


def write_wav(path: Path, samples: _F64, rate_hz: int = RATE_HZ) -> None:
    """16-bit mono WAV, written to a temporary name then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    pcm = np.clip(np.rint(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(tmp, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(pcm.tobytes())
    os.replace(tmp, path)


def demo_clip() -> Path:
    """Path of the demo WAV, generated on first use."""
    for directory in (cache_dir(), Path(tempfile.gettempdir()) / "auricle"):
        path = directory / f"demo-v{DEMO_VERSION}.wav"
        if path.is_file():
            return path
        try:
            write_wav(path, demo_samples())
        except OSError:
            continue  # read-only home: fall back to the temp dir
        return path
    raise OSError("cannot write the demo clip to the cache or the temp directory")
