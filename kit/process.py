"""The life cycle shared by the processes the fixtures start (mosquitto, PulseAudio, the recorder, the daemon)."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any, Self

_LOGGER = logging.getLogger(__name__)


def terminate(proc: subprocess.Popen[Any] | None, name: str, timeout_s: float) -> None:
    """SIGTERM ``proc``, falling back to SIGKILL; always reap it (a zombie blocks the next start)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _LOGGER.warning("%s pid %d ignored SIGTERM for %s s; killing", name, proc.pid, timeout_s)
        proc.kill()
        proc.wait(timeout=timeout_s)
    _LOGGER.info("%s pid %d stopped (rc %s)", name, proc.pid, proc.returncode)


class Lifecycle:
    """A thing tests start and close: as a context manager it starts, and closes on the way out, even when the
    start fails (ManagedProcess; kit.homeassistant.HomeAssistant, which runs through scripts)."""

    def start(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ManagedProcess(Lifecycle):
    """One child process whose output goes to ``log_path``: the life cycle every fixture shares.

    ``stop()`` sends SIGTERM, falls back to SIGKILL and always reaps; ``kill()`` is SIGKILL and reap;
    as a context manager it starts, and ``close()`` on the way out, even when the start fails.
    """

    name = "process"
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, falling back to SIGKILL; always reaped."""
        proc, self.proc = self.proc, None
        terminate(proc, self.name, timeout_s)

    def kill(self) -> None:
        """SIGKILL (no clean shutdown) and reap; ``proc`` stays readable."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, limit: int = 2000) -> str:
        """The end of the process's log."""
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError as err:
            return f"<no log: {err}>"

    def close(self) -> None:
        """What leaving the ``with`` block does."""
        self.stop()


class TempDaemon(ManagedProcess):
    """A daemon living in its own temporary directory ``_dir``, deleted on close."""

    _dir: Path

    def close(self) -> None:
        """Stop the daemon and delete its temporary directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
