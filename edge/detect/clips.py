"""Optional clip recording: one WAV per event, with pre- and post-roll.

The pipeline (edge/detect/pipeline.py) feeds it every block before deciding on it and hands it every
event, which comes back with its clip's path.  The last few seconds of raw samples live in a fixed ring.  When an event
starts, a clip begins ``pre_roll_s`` before the deciding hop and grows with
every block until ``post_roll_s`` after the event's end (or ``max_clip_s``).
The clip is written to ``<name>.wav.part`` and renamed when complete, so the
path carried in both the start and the end message names a file that exists
once the post-roll has been recorded.  Oldest clips beyond the count or size
limit are deleted.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.schema import setting

_LOGGER = logging.getLogger(__name__)
_PREFIX = "auricle-"
_SLACK_S = 5.0
"""Extra ring seconds: the deciding hop may lie a block or so before the ring's end."""


@dataclass(frozen=True, kw_only=True)
class RecordingParams:
    """Config section ``recording``."""

    enabled: bool = setting(False, doc="write a WAV clip per event")
    dir: str = setting("clips", doc="directory of the clips (created if missing)")
    pre_roll_s: float = setting(2.0, lo=0.0, hi=60.0, unit="s before the start")
    post_roll_s: float = setting(2.0, lo=0.0, hi=60.0, unit="s after the end")
    max_clip_s: float = setting(60.0, lo=1.0, hi=3600.0, unit="s, longest clip")
    max_files: int = setting(200, lo=1, hi=1_000_000, unit="clips kept")
    max_mb: float = setting(200.0, lo=1.0, hi=1_000_000.0, unit="MB of clips kept")


class _Clip:
    """One clip being written."""

    def __init__(self, path: Path, rate_hz: int, first: npt.NDArray[np.float32], limit_samples: int) -> None:
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self.wav = wave.open(str(self.part), "wb")  # noqa: SIM115 - closed by finish()
        self.wav.setnchannels(1)
        self.wav.setsampwidth(2)
        self.wav.setframerate(rate_hz)
        self.left = limit_samples
        self.stop_after: int | None = None
        """Samples still to write after the end was seen; None while the event lasts."""
        self.write(first)

    def write(self, samples: npt.NDArray[np.float32]) -> None:
        n = len(samples) if self.stop_after is None else min(len(samples), self.stop_after)
        n = min(n, self.left)
        pcm = np.clip(np.rint(samples[:n] * 32767.0), -32768, 32767).astype("<i2")
        self.wav.writeframes(pcm.tobytes())
        self.left -= n
        if self.stop_after is not None:
            self.stop_after -= n

    @property
    def done(self) -> bool:
        return self.left <= 0 or self.stop_after == 0

    def finish(self) -> None:
        self.wav.close()
        self.part.replace(self.path)


class ClipRecorder:
    """Feed every block, hand every event; events come back with their clip path."""

    def __init__(self, params: RecordingParams, rate_hz: int) -> None:
        self._params = params
        self._rate = rate_hz
        self._dir = Path(params.dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._ring = np.zeros(round((params.pre_roll_s + _SLACK_S) * rate_hz), dtype=np.float32)
        self._seen = 0
        self._clips: dict[str, _Clip] = {}

    def feed(self, samples: npt.NDArray[np.float32]) -> None:
        """Append a block (call before the pipeline decides on it)."""
        n = len(samples)
        if n >= len(self._ring):
            self._ring[:] = samples[-len(self._ring) :]
        else:
            self._ring = np.roll(self._ring, -n)
            self._ring[-n:] = samples
        self._seen += n
        for key, clip in list(self._clips.items()):
            clip.write(samples)
            if clip.done:
                self._close(key)

    def on_event(self, event: Any, sample_index: int) -> Any:
        """Start or end the event's clip; ``sample_index`` counts samples through its hop."""
        try:
            if event.kind == "start":
                return dataclasses.replace(event, clip=str(self._start(event, sample_index)))
            clip = self._clips.get(event.id)
            if clip is None:
                return event
            clip.stop_after = max(0, sample_index + round(self._params.post_roll_s * self._rate) - self._seen)
            if clip.done:
                self._close(event.id)
            return dataclasses.replace(event, clip=str(clip.path))
        except OSError as exc:  # a full disk must not stop classification
            _LOGGER.error("clip recording failed: %s", exc)
            return event

    def _start(self, event: Any, sample_index: int) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(event.start))
        path = self._dir / f"{_PREFIX}{stamp}-{event.label}-{event.id[:8]}.wav"
        back = min(self._seen, len(self._ring), self._seen - sample_index + round(self._params.pre_roll_s * self._rate))
        limit = round(self._params.max_clip_s * self._rate)
        self._clips[event.id] = _Clip(path, self._rate, self._ring[len(self._ring) - back :], limit)
        return path

    def _close(self, key: str) -> None:
        clip = self._clips.pop(key)
        clip.finish()
        _LOGGER.info("clip written: %s", clip.path)
        self._enforce_retention()

    def _enforce_retention(self) -> None:
        clips = sorted(self._dir.glob(f"{_PREFIX}*.wav"), key=lambda p: p.stat().st_mtime)
        sizes = [p.stat().st_size for p in clips]
        limit_bytes = self._params.max_mb * 1e6
        while clips and (len(clips) > self._params.max_files or sum(sizes) > limit_bytes):
            victim = clips.pop(0)
            sizes.pop(0)
            victim.unlink(missing_ok=True)
            _LOGGER.info("clip deleted (retention): %s", victim)

    def close(self) -> None:
        """Finish every open clip (shutdown)."""
        for key in list(self._clips):
            self._close(key)
