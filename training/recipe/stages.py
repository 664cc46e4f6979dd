"""The run's log: one line per stage with its time (``auricle-train run --log FILE``, by default ``run.log`` in the
run folder), while progress bars and Keras' epoch lines stay on the terminal.

A stage says what it did with :func:`timed`; the line goes to this module's logger, so it is on the terminal among
the other log lines too, and :func:`to_file` adds the file for the length of a command.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge.schema import ConfigError

LOGGER = logging.getLogger(__name__)
FILE_ONLY = "file_only"
"""A record with this attribute set goes to the log file alone (a line the command already printed)."""


@dataclass
class Stage:
    """What a stage did, filled in while it runs: the words after its name on its line."""

    name: str
    detail: str = ""


@contextmanager
def timed(name: str, detail: str = "") -> Iterator[Stage]:
    """Log ``name: detail (N s)`` when the block ends; nothing when it raises (the error says why)."""
    stage, t0 = Stage(name, detail), time.monotonic()
    yield stage
    said = f"{stage.detail} " if stage.detail else ""
    LOGGER.info("%s: %s(%.0f s)", stage.name, said, time.monotonic() - t0)


def printed(line: str) -> None:
    """A line the command has printed already, for the log file only."""
    LOGGER.info("%s", line, extra={FILE_ONLY: True})


def not_file_only(entry: logging.LogRecord) -> bool:
    """Filter for the terminal's handlers: leave out what was printed already."""
    return not getattr(entry, FILE_ONLY, False)


@contextmanager
def to_file(path: Path) -> Iterator[None]:
    """Stage lines appended to ``path`` (its folder made) while the block runs."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"the run's log: {path}: {exc.strerror or exc}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    LOGGER.addHandler(handler)
    if LOGGER.getEffectiveLevel() > logging.INFO:
        LOGGER.setLevel(logging.INFO)
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        handler.close()
