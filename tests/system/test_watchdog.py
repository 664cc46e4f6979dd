"""The systemd watchdog is pinged while audio flows, and stops when the worker stops taking audio.

A real daemon (``python -m edge run``) reads PCM from a pipe; the test is systemd's side of
``sd_notify``: a datagram socket named by ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` of 2 s (pings every
second).  While the pipe carries audio the pings come; when it goes quiet (open, no data: a worker with
nothing to take, as a hung one) they stop within the watchdog period, and systemd would restart the
daemon; when audio comes back, so do they.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.daemon import write_config

RATE = 16000
CHUNK_S = 0.1


def _chunk(seconds: float = CHUNK_S) -> bytes:
    rng = np.random.default_rng(0)
    return (300 * rng.standard_normal(round(seconds * RATE))).astype("<i2").tobytes()


class Notify:
    """systemd's end of sd_notify: every datagram, with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.got: list[tuple[float, str]] = []

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return
            self.got.append((time.monotonic(), data.decode()))

    def pings(self, since: float, until: float) -> int:
        return sum(since <= t <= until and m == "WATCHDOG=1" for t, m in self.got)


def _feed(proc: subprocess.Popen[bytes], notify: Notify, seconds: float) -> None:
    """Audio in real time for ``seconds``, collecting notifications meanwhile."""
    assert proc.stdin is not None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        proc.stdin.write(_chunk())
        proc.stdin.flush()
        notify.drain()
        time.sleep(CHUNK_S)


def _idle(notify: Notify, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        notify.drain()


def _start(
    tmp_path: Path, audio: dict[str, object], *, stdin: int, stdout: int, stderr: int
) -> tuple[subprocess.Popen[bytes], Notify]:
    """The daemon with ``audio`` settings under a 2 s watchdog, once it has said READY=1."""
    notify = Notify(tmp_path / "notify")
    config = write_config(tmp_path / "auricle.yaml", {"audio": audio})
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
    command = [sys.executable, "-m", "edge", "run", "--config", str(config)]
    proc = subprocess.Popen(command, env=env, stdin=stdin, stdout=stdout, stderr=stderr)
    deadline = time.monotonic() + 60
    while not any(m == "READY=1" for _, m in notify.got):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            notify.sock.close()
            pytest.fail("no READY=1 within 60 s")
        notify.drain()
    return proc, notify


@pytest.mark.timeout(90)
def test_pings_follow_the_audio(tmp_path: Path) -> None:
    proc, notify = _start(tmp_path, {"source": "stdin"}, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        began = time.monotonic()
        _feed(proc, notify, 4.0)
        flowing = notify.pings(began + 1.0, time.monotonic())
        assert flowing >= 2, notify.got  # one a second while audio flows

        quiet = time.monotonic()
        _idle(notify, 5.0)
        assert notify.pings(quiet + 3.0, time.monotonic()) == 0, notify.got  # stale after 2 s: no more pings

        back = time.monotonic()
        _feed(proc, notify, 4.0)
        assert notify.pings(back, time.monotonic()) >= 2, notify.got
        assert proc.poll() is None, "the daemon itself keeps running: restarting it is systemd's call"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        notify.sock.close()


@pytest.mark.timeout(90)
def test_a_lost_microphone_keeps_the_pings(tmp_path: Path) -> None:
    """No audio because the microphone is gone: the source says so and reopens it by itself, so a restart
    would not help and the pings go on."""
    proc, notify = _start(tmp_path, {"source": "mic", "device": "no-such-microphone"},
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        began = time.monotonic()
        _idle(notify, 6.0)
        assert notify.pings(began + 3.0, time.monotonic()) >= 2, notify.got
        assert proc.poll() is None
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        notify.sock.close()
    assert b"microphone unavailable" in err, err[-2000:]
