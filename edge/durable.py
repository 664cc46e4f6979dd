"""Files a power cut cannot leave half-written: temporary file, fsync, rename, fsync the folder.

The one way auricle writes state: the model store (edge/update/modelstore.py) and the controls
changed at runtime (edge/daemon/controls.py).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_durably(target: Path, data: bytes, *, tmp: Path | None = None) -> None:
    """Write ``data`` to ``tmp`` (default ``.<name>.tmp`` beside ``target``), fsync it, rename it over
    ``target``, fsync the folder: after a power cut ``target`` is the old file or the new one, whole.
    OSError leaves no ``tmp`` behind."""
    tmp = target.with_name(f".{target.name}.tmp") if tmp is None else tmp
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (a rename, a deletion) survive a power cut."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
