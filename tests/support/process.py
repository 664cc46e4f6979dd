"""The life cycle shared by the daemons the fixtures start (mosquitto, PulseAudio)."""

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


class TempDaemon:
    """A daemon living in its own temporary directory ``_dir``; as a context manager it always cleans up."""

    _dir: Path

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, timeout_s: float = 10.0) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the daemon and delete its temporary directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

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
