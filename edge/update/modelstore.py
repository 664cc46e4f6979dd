"""Installed models on disk: versions side by side, an atomic ``active`` pointer, the last attempt.

Layout of ``model.state_dir`` (default ``/var/lib/auricle/models``)::

    versions/<name>-<version>-<sha12>.auricle   a bundle, complete and fsynced before anything names it
    active                                      JSON {"active", "previous", "trial", "prior"}: entries or null
    state.json                                  JSON {"last": the last install or rollback attempt}
    staging/                                    bundles being written; emptied at start

Crash safety: every file is written to a temporary name, fsynced, renamed over
the real one with ``os.replace`` and its directory fsynced, so after a power cut
each file is either the old or the new one, whole.  A bundle is in
``versions/`` before the pointer names it, and the pointer switches active and
previous in one rename.  An attempt is recorded as ``pending`` before it can
change anything; :meth:`ModelStore.recover` settles one that a crash cut short
by looking at the pointer (did the switch happen or not?).  An entry of None
stands for the configured (or shipped) bundle.

``trial`` is set while a new model is on probation.  Finding it set at start
means the daemon died during probation (a native crash, the OOM killer, the
watchdog, or a reboot), so the model is not trusted: recover() rolls back.
A model that fails its probation, here or in the running daemon, never stays
``previous`` (a rollback on command would bring it back): :func:`after_failed_trial`
restores the pair from before its install, which ``prior`` keeps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.durable import fsync_dir, write_durably
from edge.model.bundle import Manifest

_LOGGER = logging.getLogger(__name__)

POINTER, STATE, VERSIONS, STAGING = "active", "state.json", "versions", "staging"
PENDING = "pending"
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.auricle$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class StoreError(OSError):
    """The state directory cannot be read or written; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One installed version."""

    file: str
    """File name inside ``versions/``."""
    name: str
    version: str
    sha256: str
    """sha256 of the bundle file."""

    @classmethod
    def from_data(cls, data: Any) -> Entry | None:
        """An entry from the pointer's JSON (None stays None); :class:`StoreError` if malformed."""
        if data is None:
            return None
        fields = ("file", "name", "version", "sha256")
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in fields):
            raise StoreError(f"pointer: malformed entry {data!r:.100}")
        entry = cls(**{k: data[k] for k in fields})
        if not _FILE.match(entry.file) or not _SHA256.match(entry.sha256):
            raise StoreError(f"pointer: bad file name or sha256 in {data!r:.100}")
        return entry

    def label(self) -> str:
        """'name version' for people."""
        return f"{self.name} {self.version}"


@dataclass(frozen=True)
class Pointer:
    """Which installed version runs, and which ran before it."""

    active: Entry | None = None
    previous: Entry | None = None
    trial: bool = False
    """The active model is on probation (see the module doc)."""
    prior: Entry | None = None
    """While on trial: the previous version before this install (previous again if the trial fails)."""


class ModelStore:
    """The state directory.  One writer (the updater thread); reads are safe any time."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.versions = self.root / VERSIONS

    def in_use(self) -> bool:
        """True once a model has been installed here (the pointer exists)."""
        return (self.root / POINTER).exists()

    def path_of(self, entry: Entry) -> Path:
        """Where an entry's bundle lives."""
        return self.versions / entry.file

    def pointer(self) -> Pointer:
        """The active/previous pointer; empty when nothing was installed."""
        data = self._read_json(POINTER)
        if data is None:
            return Pointer()
        if not isinstance(data, dict):
            raise StoreError(f"{self.root / POINTER}: expected a JSON object")
        trial = data.get("trial") is True
        entries = (Entry.from_data(data.get(k)) for k in ("active", "previous", "prior"))
        active, previous, prior = entries
        return Pointer(active, previous, trial, prior if trial else None)

    def put(self, raw: bytes, manifest: Manifest, sha256: str) -> Entry:
        """Store a bundle under ``versions/`` (durably) and return its entry; an identical file is reused."""
        entry = Entry(entry_file(manifest, sha256), manifest.name, manifest.version, sha256)
        target = self.path_of(entry)
        if target.exists() and target.stat().st_size == len(raw):
            return entry
        self._mkdirs()
        staged = self.root / STAGING / f"{entry.file}.{os.getpid()}.part"
        _write_durably(target, raw, staged)
        return entry

    def switch(self, pointer: Pointer) -> None:
        """Make ``pointer`` the active/previous pair, atomically and durably."""
        data: dict[str, Any] = {"active": _data(pointer.active), "previous": _data(pointer.previous)}
        data |= {"trial": pointer.trial, "t": time.time()}
        if pointer.trial:
            data["prior"] = _data(pointer.prior)
        self._write_json(POINTER, data)

    def last(self) -> dict[str, Any] | None:
        """The last attempt as recorded (None before the first)."""
        data = self._read_json(STATE)
        last = data.get("last") if isinstance(data, dict) else None
        return last if isinstance(last, dict) else None

    def record(self, last: dict[str, Any]) -> None:
        """Record the latest attempt (durably)."""
        self._write_json(STATE, {"last": last})

    def recover(self) -> dict[str, Any] | None:
        """At start: drop half-written files, settle an attempt a crash cut short, leave a model that was
        on probation; return the last attempt."""
        for leftover in [*self.root.glob(f"{STAGING}/*"), *self.root.glob(".*.tmp"), *self.versions.glob(".*.tmp")]:
            with contextlib.suppress(OSError):
                leftover.unlink()
        try:
            last = self._settle(self.last())
            pointer = self.pointer()
        except StoreError as exc:
            _LOGGER.warning("models: %s", exc)
            return None
        if not pointer.trial:
            return last
        self.switch(after_failed_trial(pointer, pointer.previous))
        what = pointer.active.label() if pointer.active else "the configured model"
        reason = f"the daemon restarted while {what} was on probation; rolled back"
        _LOGGER.error("models: %s", reason)
        rolled = {"id": (last or {}).get("id", "restart"), "action": "rollback", "result": "rolled_back"}
        rolled |= {"reason": reason, "received": time.time(), "finished": time.time()}
        rolled["sha256"] = pointer.previous.sha256 if pointer.previous else None
        self.record(rolled)
        return rolled

    def _settle(self, last: dict[str, Any] | None) -> dict[str, Any] | None:
        if last is None or last.get("result") != PENDING:
            return last
        active = self.pointer().active
        done = "sha256" in last and (active.sha256 if active else None) == last["sha256"]
        result = ("installed" if last.get("action") == "install" else "rolled_back") if done else "interrupted"
        reason = "completed; the daemon restarted before it said so" if done else "cut short by a restart"
        settled = last | {"result": result, "reason": reason, "finished": time.time()}
        self.record(settled)
        if done:
            _LOGGER.info("models: %s completed; the daemon restarted before it said so", _attempt(last))
        else:
            _LOGGER.warning("models: %s was cut short by a restart: the model from before stays", _attempt(last))
        return settled

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest versions beyond ``keep`` (active, previous and prior always stay); return their names."""
        pointer = self.pointer()
        pinned = {e.file for e in (pointer.active, pointer.previous, pointer.prior) if e is not None}
        others = [p for p in self.versions.glob("*.auricle") if p.name not in pinned]
        others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        doomed = others[max(keep - len(pinned), 0) :]
        for path in doomed:
            with contextlib.suppress(OSError):
                path.unlink()
        if doomed:
            fsync_dir(self.versions)
        return [p.name for p in doomed]

    def _mkdirs(self) -> None:
        try:
            for folder in (self.root, self.versions, self.root / STAGING):
                folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.root}: cannot create the state directory: {exc.strerror or exc}") from None

    def _read_json(self, name: str) -> Any:
        path = self.root / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path}: unreadable: {exc}") from None

    def _write_json(self, name: str, data: Any) -> None:
        self._mkdirs()
        path = self.root / name
        _write_durably(path, (json.dumps(data, indent=1) + "\n").encode())


def _attempt(last: dict[str, Any]) -> str:
    """'the install of tones 0.2.0 (request r1)' for the log; the bundle's sha256 before it was checked."""
    action = str(last.get("action", "attempt"))
    if last.get("version"):
        what = f" of {last.get('name', '')} {last['version']}".replace("  ", " ")
    elif last.get("sha256"):
        what = f" of bundle {str(last['sha256'])[:12]} (not yet checked)"
    else:
        what = ""
    return f"the {action}{what} (request {last.get('id', '?')})"


def after_failed_trial(pointer: Pointer, fallback: Entry | None) -> Pointer:
    """The pointer once the model on trial (``pointer.active``) has failed and ``fallback`` runs again.

    ``previous`` is what it was before that install (``prior``), never the model that failed: a
    rollback on command must not bring it back.
    """
    failed = pointer.active
    previous = pointer.prior if pointer.trial else pointer.previous
    if previous is not None and previous.sha256 in {e.sha256 for e in (failed, fallback) if e is not None}:
        previous = None
    return Pointer(active=fallback, previous=previous)


def entry_file(manifest: Manifest, sha256: str) -> str:
    """``<name>-<version>-<sha12>.auricle`` with anything unsafe in a file name replaced."""
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", f"{manifest.name}-{manifest.version}")[:120].lstrip(".-_") or "model"
    return f"{stem}-{sha256[:12]}.auricle"


def _data(entry: Entry | None) -> dict[str, str] | None:
    return None if entry is None else asdict(entry)


def _write_durably(target: Path, data: bytes, tmp: Path | None = None) -> None:
    """:func:`edge.durable.write_durably`, a failure as a StoreError."""
    try:
        write_durably(target, data, tmp=tmp)
    except OSError as exc:
        raise StoreError(f"{target}: cannot write: {exc.strerror or exc}") from None
