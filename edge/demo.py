"""A short demo clip the project makes itself (no dataset audio ships).

It holds sounds a general model knows, separated by quiet: a wailing siren
sweep, electronic alarm beeps and a struck bell-like tone with decaying
partials.  Written once to the user's cache directory (atomically) and
replayed in a loop by ``auricle run`` when there is no microphone.
"""

from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

DEMO_VERSION = 1
RATE_HZ = 16000
_F64 = npt.NDArray[np.float64]


def _silence(seconds: float) -> _F64:
    return np.zeros(round(seconds * RATE_HZ))


def siren(seconds: float = 4.0) -> _F64:
    """A two-tone wail: 650..1450 Hz, one sweep per second."""
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    freq = 1050.0 + 400.0 * np.sin(2 * np.pi * 1.0 * t)
    phase = 2 * np.pi * np.cumsum(freq) / RATE_HZ
    return 0.4 * (np.sin(phase) + 0.3 * np.sin(2 * phase))


def alarm_beeps(seconds: float = 3.0, beep_hz: float = 2500.0) -> _F64:
    """Four beeps a second at ``beep_hz``, like an alarm clock."""
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    gate = (np.mod(t, 0.25) < 0.12).astype(np.float64)
    return 0.35 * gate * np.sign(np.sin(2 * np.pi * beep_hz * t)) * 0.6


def bell(seconds: float = 3.0, base_hz: float = 440.0) -> _F64:
    """Inharmonic decaying partials, struck twice."""
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    out = np.zeros_like(t)
    for k, (ratio, decay) in enumerate(((1.0, 1.2), (2.76, 2.0), (5.4, 3.0), (8.93, 4.5))):
        for strike in (0.0, 1.5):
            tt = np.clip(t - strike, 0.0, None)
            out += (t >= strike) * 0.3 / (k + 1) * np.exp(-decay * tt) * np.sin(2 * np.pi * base_hz * ratio * tt)
    return out


def demo_samples() -> _F64:
    """The whole demo signal (about 17 s) with a little background noise."""
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
