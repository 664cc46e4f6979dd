"""Run ``auricle run`` as a subprocess (black box) with a config written by the test."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge.audio.demo import write_wav
from kit.process import ManagedProcess


def tone_wav(path: Path, *, seconds: float = 3.0, tone_s: tuple[float, float] = (1.0, 2.0), hz: float = 1000.0) -> Path:
    """A 16 kHz WAV: quiet noise with a loud ``hz`` tone between ``tone_s`` seconds."""
    rate = 16000
    t = np.arange(round(seconds * rate)) / rate
    noise = 0.001 * np.random.default_rng(1).standard_normal(len(t))
    on = (t >= tone_s[0]) & (t < tone_s[1])
    write_wav(path, np.where(on, 0.3 * np.sin(2 * np.pi * hz * t), noise))
    return path


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write a YAML config and return its path.

    ``model.state_dir`` defaults to ``state/`` beside the file: the daemon keeps runtime changes there
    (controls.json), and a test must never read another's, nor the machine's /var/lib/auricle.
    """
    model = {"state_dir": str(path.parent / "state")} | dict(data.get("model") or {})
    path.write_text(yaml.safe_dump(data | {"model": model}))
    return path


class Daemon(ManagedProcess):
    """``python -m edge run --config FILE`` with stdout/stderr captured to files; killed on leaving ``with``."""

    name = "auricle"

    def __init__(self, config: Path, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.stdout_path = config.with_suffix(".stdout")
        self.log_path = self.stderr_path = config.with_suffix(".stderr")
        self._env = {**(env or os.environ), "PYTHONUNBUFFERED": "1"}

    def start(self) -> Daemon:  # type: ignore[override]
        """Start the process (returns at once; wait on MQTT for 'online')."""
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge", "run", "--config", str(self.config)],
                stdout=out,
                stderr=err,
                env=self._env,
            )
        return self

    def wait(self, timeout_s: float = 30.0) -> int:
        """Wait for the process to exit; return its status."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM and wait (bounded); return the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def dump_stacks(self, timeout_s: float = 3.0) -> str:
        """SIGUSR1: the daemon writes every thread's stack to its log; the log after it (for a failure's message)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.stderr
        before = len(self.stderr)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while "most recent call first" not in self.stderr[before:] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the rest of the threads
        return self.stderr

    def close(self) -> None:
        """SIGKILL: a test that wants a clean shutdown calls :meth:`terminate` itself."""
        self.kill()

    @property
    def stderr(self) -> str:
        """What the daemon logged so far."""
        return self.stderr_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        """What the daemon printed so far (console sink lines)."""
        return self.stdout_path.read_text(errors="replace")


def wait_until(predicate: Any, timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll ``predicate()`` until true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def run_on_terminal(*args: str) -> str:
    """``auricle run ARGS`` with stdout on a pseudo-terminal (as a person at a shell sees it); what it printed
    there, once it exited with 0."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", *args], stdout=child, stderr=subprocess.DEVNULL, close_fds=True
    )
    os.close(child)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            data = os.read(main, 4096)
        except OSError:  # the terminal closed: the daemon exited
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait(30) == 0
    return b"".join(chunks).decode().replace("\r\n", "\n")
