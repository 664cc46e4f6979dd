"""``auricle record``: microphone -> 16-bit mono WAV, through MicSource and a real PulseAudio null sink."""

from __future__ import annotations

import subprocess
import sys
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support.daemon import tone_wav

from edge.audio.sources import AudioError, Block
from edge.cli.record import capture, write_wav16
from kit.pulse import PulseAudio

RATE = 16000


class _Blocks:
    """A source of ``count`` 100-ms blocks of a 440 Hz sine, then silence from the device."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.closed = False

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        t = np.arange(RATE // 10) / RATE
        try:
            for k in range(self.count):
                yield Block((0.5 * np.sin(2 * np.pi * 440 * (t + k / 10))).astype(np.float32), float(k))
            stop.wait(30.0)  # a device that delivers nothing more, until the watchdog stops it
        finally:
            self.closed = True


def read_wav(path: Path) -> tuple[np.ndarray, int, int, int]:
    with wave.open(str(path), "rb") as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return pcm.astype(np.float64) / 32767.0, wav.getframerate(), wav.getnchannels(), wav.getsampwidth()


def dominant_hz(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """Peak frequency and the share of power within 5% of it."""
    power = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    hz = np.fft.rfftfreq(len(samples), 1 / rate)
    peak = float(hz[np.argmax(power)])
    near = np.abs(hz - peak) <= 0.05 * peak
    return peak, float(power[near].sum() / power.sum())


def test_capture_stops_at_the_length_and_closes_the_source(tmp_path: Path) -> None:
    source = _Blocks(count=25)
    samples = capture(source, round(2.05 * RATE), timeout_s=5.0)
    assert len(samples) == round(2.05 * RATE) and source.closed
    path = tmp_path / "room.wav"
    write_wav16(path, samples, RATE)
    pcm, rate, channels, width = read_wav(path)
    assert (len(pcm), rate, channels, width) == (len(samples), RATE, 1, 2)
    np.testing.assert_allclose(pcm, samples, atol=1 / 32767)
    assert not path.with_name("room.wav.part").exists()


def test_capture_times_out_when_audio_stops() -> None:
    source = _Blocks(count=3)
    with pytest.raises(AudioError, match=r"^the microphone stopped: no audio for 0.3 s, 15% recorded$"):
        capture(source, 2 * RATE, timeout_s=0.3)
    assert source.closed


@pytest.mark.integration
def test_records_a_tone_played_into_the_microphone(tmp_path: Path, pulse: PulseAudio) -> None:
    clip = tone_wav(tmp_path / "tone.wav", seconds=6.0, tone_s=(0.0, 6.0), hz=1000.0)
    out = tmp_path / "room.wav"
    player = threading.Thread(target=pulse.play, args=(clip,), daemon=True)
    player.start()  # 6 s of tone; the 2 s recording starts within about a second
    done = subprocess.run(
        [sys.executable, "-m", "edge", "record", "2", str(out), "--device", "pulse"],
        capture_output=True,
        text=True,
        timeout=60,
        env=pulse.subprocess_env(),
    )
    player.join(timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {out} (2 s, 16000 Hz, 16-bit mono)"
    samples, rate, channels, width = read_wav(out)
    assert (len(samples), rate, channels, width) == (2 * RATE, RATE, 1, 2)
    peak, share = dominant_hz(samples, rate)
    assert abs(peak - 1000.0) < 5.0 and share > 0.9, (peak, share)
    assert not out.with_name("room.wav.part").exists()


@pytest.mark.integration
def test_no_audio_is_one_line_and_non_zero(tmp_path: Path, pulse: PulseAudio) -> None:
    out = tmp_path / "room.wav"
    done = subprocess.run(
        [sys.executable, "-m", "edge", "record", "2", str(out), "--device", "no-such-mic", "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=pulse.subprocess_env(),
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("auricle: no audio from the microphone in 1 s (") and "'no-such-mic'" in last, last
    assert done.stderr.count("no input device matches") == 2, "logged once, and in the error"
    assert not out.exists() and not out.with_name("room.wav.part").exists()
