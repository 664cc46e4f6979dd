"""A private PulseAudio daemon with a null sink whose monitor is the default source.

Audio played into `PulseAudio.sink` comes back out of its monitor, so a test can play a
WAV and have the code under test "hear" it through sounddevice -> ALSA `pulse` plugin.

sounddevice (PortAudio) lists devices once, when it is imported. Test modules are imported
at collection, before any fixture runs, so the pytest process itself never sees this
daemon. Run the capturing code in a subprocess with `PulseAudio.subprocess_env()`: the
daemon under test, or `Recorder` (which runs kit/record.py).
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from kit.broker import SETUP_HINT, find_binary
from kit.process import ManagedProcess, TempDaemon

_LOGGER = logging.getLogger(__name__)

_POLL_S = 0.02
_RECORD_SCRIPT = Path(__file__).with_name("record.py")


class PulseAudio(TempDaemon):
    """A per-user PulseAudio daemon in a private XDG_RUNTIME_DIR (no systemd, no D-Bus).

    An idle null sink runs ahead of real time, so a fresh recorder gets nothing for up to
    2 s; a loopback from the monitor into a second null sink keeps it clocked.
    """

    name = "pulseaudio"

    def __init__(self, *, sink: str = "auricle_sink", rate_hz: int = 48000) -> None:
        self.sink = sink
        self.source = f"{sink}.monitor"
        self._rate_hz = rate_hz
        self._binary = find_binary("pulseaudio")
        self._pactl = find_binary("pactl")
        self._paplay = find_binary("paplay")
        self._parec = find_binary("parec")
        self._dir = Path(tempfile.mkdtemp(prefix="auricle-pulse-"))
        self.runtime_dir = self._dir / "run"
        self.runtime_dir.mkdir(mode=0o700)
        self.log_path = self._dir / "pulseaudio.log"
        self.env: dict[str, str] = {
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PULSE_SERVER": f"unix:{self.runtime_dir}/pulse/native",
            "PULSE_SOURCE": self.source,
            "PULSE_SINK": self.sink,
            # Keep clients from creating ~/.config/pulse/cookie.
            "PULSE_COOKIE": str(self._dir / "cookie"),
        }
        """Variables a PulseAudio client process needs; see subprocess_env()."""

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        """Return os.environ plus `env` plus `extra`, for subprocess.Popen(env=...)."""
        return {**os.environ, **self.env, **extra}

    def _argv(self) -> list[str]:
        keepalive = f"{self.sink}_keepalive"
        return [
            self._binary,
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--log-target=stderr",
            "--use-pid-file=no",
            "--load=module-native-protocol-unix auth-anonymous=1 auth-cookie-enabled=0",
            f"--load=module-null-sink sink_name={self.sink} rate={self._rate_hz}",
            f"--load=module-null-sink sink_name={keepalive} rate={self._rate_hz}",
            f"--load=module-loopback source={self.source} sink={keepalive} latency_msec=60"
            " source_dont_move=true sink_dont_move=true",
        ]

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the daemon, wait until `pactl info` answers, make the monitor the default."""
        if self.running:
            return
        if "sounddevice" in sys.modules:
            _LOGGER.warning("sounddevice already imported: this process will not see PulseAudio")
        started = time.monotonic()
        daemon_env = {**os.environ, **self.env, "XDG_CONFIG_HOME": str(self._dir / "config")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self._argv(), stdout=log, stderr=log, env=daemon_env)
        try:
            self._wait_ready(started + timeout_s)
            self.pactl("set-default-sink", self.sink)
            self.pactl("set-default-source", self.source)
            self._warm_up(started + timeout_s)
        except BaseException:
            self.stop()
            raise
        _LOGGER.info(
            "pulseaudio pid %d ready in %.3f s (XDG_RUNTIME_DIR=%s)",
            self.proc.pid,
            time.monotonic() - started,
            self.runtime_dir,
        )

    def _wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {self.proc.returncode}:\n{self.log_tail()}")
            probe = self._run([self._pactl, "info"], timeout_s=2.0, check=False)
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"pulseaudio not answering `pactl info`:\n{self.log_tail()}")
            time.sleep(_POLL_S)

    def _warm_up(self, deadline: float) -> None:
        """Read the monitor until audio flows: a new null sink renders ~2 s ahead at first."""
        reader = subprocess.Popen(
            [self._parec, f"--device={self.source}", "--latency-msec=20"],
            env=self.subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert reader.stdout is not None
        try:
            remaining = max(0.0, deadline - time.monotonic())
            if not select.select([reader.stdout], [], [], remaining)[0]:
                raise TimeoutError(f"no audio from {self.source}:\n{self.log_tail()}")
        finally:
            reader.kill()
            reader.wait(timeout=10)
            reader.stdout.close()

    def _run(self, argv: list[str], *, timeout_s: float, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            env=self.subprocess_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=check,
        )

    def pactl(self, *args: str, timeout_s: float = 5.0) -> str:
        """Run pactl against this daemon and return its stdout."""
        return self._run([self._pactl, *args], timeout_s=timeout_s).stdout

    def play(self, wav_path: Path | str, timeout_s: float = 30.0) -> None:
        """Play a sound file into the null sink and return when it has been played."""
        self._run([self._paplay, f"--device={self.sink}", str(wav_path)], timeout_s=timeout_s)


@dataclass(frozen=True)
class Recording:
    """What Recorder captured."""

    samples: npt.NDArray[np.float32]
    """Shape (frames, channels), full scale +-1."""
    rate_hz: int
    stats: dict[str, Any]
    """From record.py: first_callback_s, status_flags, frames."""


class Recorder(ManagedProcess):
    """Records a fixed duration through sounddevice in a subprocess.

    Entering returns once the input stream delivers audio, so playback started inside the
    `with` block is captured; `result()` waits for the recording to finish.
    """

    name = "recorder"

    def __init__(
        self,
        env: dict[str, str],
        out_path: Path,
        *,
        duration_s: float,
        rate_hz: int = 16000,
        channels: int = 1,
        device: str = "pulse",
    ) -> None:
        self._env = env
        self._out_path = out_path
        self._duration_s = duration_s
        self._rate_hz = rate_hz
        self._argv = [
            sys.executable,
            str(_RECORD_SCRIPT),
            "--out",
            str(out_path),
            "--seconds",
            str(duration_s),
            "--rate",
            str(rate_hz),
            "--channels",
            str(channels),
            "--device",
            device,
        ]
        self.log_path = out_path.with_suffix(".log")

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the recorder and wait until its stream delivers audio."""
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self._argv, env=self._env, stdout=subprocess.PIPE, stderr=log, bufsize=0)
        line = self._read_line(time.monotonic() + timeout_s)
        if line != b"READY":
            self.kill()
            raise RuntimeError(f"recorder did not start (got {line!r}):\n{self.log_tail()}")

    def _read_line(self, deadline: float) -> bytes:
        assert self.proc is not None
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                break
            chunk = os.read(fd, 64)
            if not chunk:
                break
            data += chunk
        return data.strip()

    def result(self, timeout_s: float = 10.0) -> Recording:
        """Wait for the recording (bounded by duration + timeout_s) and load it."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=self._duration_s + timeout_s)
            if rc != 0:
                raise RuntimeError(f"recorder exited with {rc}:\n{self.log_tail()}")
        finally:
            self.kill()
        stats = json.loads(self._out_path.with_suffix(".json").read_text())
        samples = np.load(self._out_path).astype(np.float32, copy=False)
        return Recording(samples, self._rate_hz, stats)

    def kill(self) -> None:
        """Stop the recorder if it still runs, reap it, close its pipe."""
        super().kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def close(self) -> None:
        """Leaving the ``with`` block normally keeps it recording until :meth:`result`; an error kills it."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.kill()


__all__ = ["SETUP_HINT", "PulseAudio", "Recorder", "Recording"]
