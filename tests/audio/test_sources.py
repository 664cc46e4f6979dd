"""Audio sources and the resampler, on generated audio."""

from __future__ import annotations

import os
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from edge.audio.resample import Resampler
from edge.audio.sources import AudioError, Block, FileSource, StdinSource, open_audio

RATE = 16000


def _tone(rate: int, seconds: float, hz: float = 1000.0, amp: float = 0.5) -> np.ndarray[Any, Any]:
    t = np.arange(round(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * hz * t)


def _write_wav(path: Path, x: np.ndarray[Any, Any], rate: int, width: int = 2, channels: int = 1) -> Path:
    frames = np.repeat(x[:, None], channels, axis=1)
    if width == 3:
        ints = np.rint(frames * (2**23 - 1)).astype("<i4")
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints.reshape(-1))
    else:
        raw = np.rint(frames * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(raw)
    return path


def _collect(source: Any) -> tuple[np.ndarray[Any, Any], list[Block]]:
    blocks = list(source.blocks(threading.Event()))
    return np.concatenate([b.samples for b in blocks]), blocks


@pytest.mark.parametrize("in_rate", [48000, 44100, 22050, 8000])
def test_resampler_keeps_a_tone(in_rate: int) -> None:
    x = _tone(in_rate, 1.0)
    y = Resampler(in_rate, RATE).process(x)
    assert abs(len(y) - RATE) <= 1
    steady = y[800:-800]
    assert np.sqrt(np.mean(steady**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(len(steady))))
    assert np.argmax(spectrum) * RATE / len(steady) == pytest.approx(1000.0, abs=3.0)


def test_resampler_removes_what_the_new_rate_cannot_hold() -> None:
    x = _tone(48000, 1.0, hz=12000.0)  # above 8 kHz Nyquist of 16 kHz
    y = Resampler(48000, RATE).process(x)
    assert np.sqrt(np.mean(y[800:] ** 2)) < 0.01


def test_resampler_chunk_invariance() -> None:
    x = np.random.default_rng(0).standard_normal(44100)
    whole = Resampler(44100, RATE).process(x)
    r = Resampler(44100, RATE)
    sizes = np.random.default_rng(1).integers(1, 3000, 100)
    parts, pos = [], 0
    for n in sizes:
        parts.append(r.process(x[pos : pos + n]))
        pos += n
    parts.append(r.process(x[pos:]))
    assert np.array_equal(np.concatenate(parts), whole)


def test_wav_file_source_full_speed(tmp_path: Path) -> None:
    path = _write_wav(tmp_path / "a.wav", _tone(RATE, 1.0), RATE)
    source = FileSource(path, RATE, realtime=False, block_samples=1000, start_time=0.0)
    began = time.monotonic()
    samples, blocks = _collect(source)
    assert time.monotonic() - began < 0.5
    assert len(samples) == RATE
    assert np.max(np.abs(samples - _tone(RATE, 1.0))) < 1e-4
    assert blocks[-1].t_end == pytest.approx((RATE - 1) / RATE)


@pytest.mark.parametrize(("rate", "width", "channels"), [(44100, 2, 2), (48000, 3, 1), (8000, 2, 1)])
def test_wav_formats_are_resampled_and_mixed(tmp_path: Path, rate: int, width: int, channels: int) -> None:
    path = _write_wav(tmp_path / "b.wav", _tone(rate, 0.5), rate, width=width, channels=channels)
    samples, _ = _collect(FileSource(path, RATE, realtime=False))
    assert abs(len(samples) - RATE // 2) <= 1
    assert np.sqrt(np.mean(samples[400:-400] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_flac_through_soundfile(tmp_path: Path) -> None:
    path = tmp_path / "c.flac"
    soundfile.write(str(path), _tone(RATE, 0.5), RATE, subtype="PCM_16")
    samples, _ = _collect(FileSource(path, RATE, realtime=False))
    assert len(samples) == RATE // 2


def test_realtime_pacing_and_stop(tmp_path: Path) -> None:
    path = _write_wav(tmp_path / "d.wav", _tone(RATE, 0.6), RATE)
    began = time.monotonic()
    _collect(FileSource(path, RATE, realtime=True, block_samples=1600))
    assert 0.45 <= time.monotonic() - began < 2.0
    stop = threading.Event()
    looping = FileSource(path, RATE, realtime=True, loop=True).blocks(stop)
    next(looping)
    stop.set()
    began = time.monotonic()
    assert list(looping) == []
    assert time.monotonic() - began < 0.5


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00junk", b"\x00" * 100])
def test_unreadable_files_fail_in_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError) as info:
        FileSource(path, RATE, realtime=False)
    assert str(info.value).startswith(f"{path}: cannot read audio: ")
    assert "\n" not in str(info.value)


def test_directory_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not a file"):
        open_audio(tmp_path)


def test_stdin_source_odd_reads_and_resampling() -> None:
    pcm = np.rint(_tone(8000, 0.5) * 32767).astype("<i2").tobytes()
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        for i in range(0, len(pcm), 777):  # odd sizes split samples between reads
            os.write(write_fd, pcm[i : i + 777])
        os.close(write_fd)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(read_fd, "rb") as stream:
        samples, _ = _collect(StdinSource(RATE, 8000, stream=stream, block_samples=300))
    writer.join(5)
    assert abs(len(samples) - RATE // 2) <= 1
    assert np.sqrt(np.mean(samples[400:-400] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
