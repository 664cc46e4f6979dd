"""A short demo clip the project makes itself (no dataset audio ships).

It holds two sounds, separated by quiet, that the shipped model (esc50 4.0.0) detects as events with
its default settings: a wailing siren (``siren``) and alarm-clock beeps (``clock_alarm``);
tests/daemon/test_replay.py requires exactly these two events.  Written once to the user's cache
directory (atomically) and replayed in a loop by ``auricle run`` when there is no microphone.

Version 2 also had a two-tone siren, which the model's AudioSet head hears as a telephone, and a
synthetic church bell, which it hears as music.  No synthetic bell, knock, drip or cricket tried reached
its AudioSet classes, and a synthetic smoke alarm reaches the ``smoke_alarm`` threshold only in digital
silence, so the demo promises only what it delivers.
"""

from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

DEMO_VERSION = 3
RATE_HZ = 16000
_F64 = npt.NDArray[np.float64]


def _silence(seconds: float) -> _F64:
    return np.zeros(round(seconds * RATE_HZ))


def siren(seconds: float = 5.0, low_hz: float = 650.0, high_hz: float = 1500.0, period_s: float = 4.0) -> _F64:
    """A wailing siren: a tone gliding from ``low_hz`` to ``high_hz`` and back every ``period_s``, with its
    second and third harmonics (a horn driver's)."""
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    freq = low_hz + (high_hz - low_hz) * (0.5 - 0.5 * np.cos(2 * np.pi * t / period_s))
    phase = 2 * np.pi * np.cumsum(freq) / RATE_HZ
    return 0.3 * sum((np.sin(k * phase) / k for k in (1, 2, 3)), np.zeros_like(t))


def alarm_beeps(seconds: float = 3.0, beep_hz: float = 3500.0) -> _F64:
    """An alarm clock: a group of four 70 ms square-wave beeps at ``beep_hz`` every second."""
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    gate = ((np.mod(t, 1.0) < 0.5) & (np.mod(t, 0.125) < 0.07)).astype(np.float64)
    return 0.35 * gate * np.sign(np.sin(2 * np.pi * beep_hz * t))


def _parts() -> list[tuple[str | None, _F64]]:
    """(the label it promises or None for quiet, samples), in order."""
    return [(None, _silence(1.0)), ("siren", siren()), (None, _silence(1.5)), ("clock_alarm", alarm_beeps()),
            (None, _silence(1.5))]  # fmt: skip


def demo_sounds() -> list[tuple[str, float, float]]:
    """What the demo promises: (label, start s, end s) of each sound, in order."""
    found, pos = [], 0
    for label, samples in _parts():
        if label is not None:
            found.append((label, pos / RATE_HZ, (pos + len(samples)) / RATE_HZ))
        pos += len(samples)
    return found


def demo_samples() -> _F64:
    """The whole demo signal (about 12 s) with a little background noise."""
    x: _F64 = np.concatenate([samples for _, samples in _parts()])
    x += 0.002 * np.random.default_rng(DEMO_VERSION).standard_normal(len(x))
    return np.asarray(np.clip(x, -1.0, 1.0), dtype=np.float64)


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
