"""The microphone's status reports: a problem, then ``None`` once audio flows again (the Problem sensor clears)."""

from __future__ import annotations

import queue
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge.audio import mic
from edge.audio.mic import MicParams, MicSource
from edge.audio.sources import AudioError


class _FakeStream:
    """Fails to open the first time (unplugged), then delivers one block."""

    opened = 0

    def __init__(self, _device: Any, rate_hz: int, _params: MicParams) -> None:
        _FakeStream.opened += 1
        if _FakeStream.opened == 1:
            raise AudioError("no input device matches 'USB' (inputs: none)")
        self.capture_rate = rate_hz
        self.channels = 1
        self.dropped = 0
        self.stream = SimpleNamespace(active=True)
        self.queue: queue.Queue[tuple[np.ndarray, float]] = queue.Queue()
        self.queue.put((np.zeros((160, 1), dtype=np.float32), 0.0))

    def close(self) -> None:
        pass


def test_a_problem_is_cleared_when_audio_flows_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mic, "_Stream", _FakeStream)
    statuses: list[str | None] = []
    source = MicSource(16000, MicParams(reopen_min_s=0.05), on_status=statuses.append)
    stop = threading.Event()
    first = next(iter(source.blocks(stop)))
    stop.set()
    assert len(first.samples) == 160
    assert statuses == ["microphone unavailable: no input device matches 'USB' (inputs: none)", None]
