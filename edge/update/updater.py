"""Over-the-air model updates: the updater thread, which carries out installs and rollbacks.

An install goes through, in order: size and sha256; the ed25519 signature
against the configured key(s) (unsigned only with ``model.allow_unsigned``);
the full bundle validation (edge/model/bundle.py); loading it into an interpreter;
the smoke test (edge/model/selftest.py: stored window and scores, finite outputs,
latency budget); the running source's sample rate and the config's event
labels; and the version policy (older or same-version-different-contents
refused unless forced; the running bundle's sha256 is a no-op that says so).
Then the bundle is stored (edge/update/modelstore.py), the pointer switched and the
worker told to swap between hops.  Every refusal is one line, logged and
published on ``model/state``.

All of that runs on the updater's own thread, fed by a bounded queue, so
neither paho's network thread nor the audio worker ever waits on it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from edge.model import bundle as bundles
from edge.model.bundle import BundleError
from edge.model.classifier import Classifier
from edge.schema import ConfigError
from edge.update.checks import Loaded, Policy, Refused, check_version, verify
from edge.update.fetch import FetchError, fetch
from edge.update.modelstore import PENDING, Entry, ModelStore, Pointer, StoreError, after_failed_trial
from edge.update.request import Request, parse_command

_LOGGER = logging.getLogger(__name__)

QUEUE_REQUESTS = 2
"""Requests waiting beyond the one in progress; more are refused as busy."""
ACTIVATE_EXTRA_S = 10.0
"""How long the worker may take to swap, beyond one window of audio."""


class Host(Protocol):
    """What the updater needs from the daemon (edge.daemon.slot.ModelSlot)."""

    def running(self) -> Loaded | None: ...
    def check_fits(self, classifier: Classifier) -> None: ...
    def activate(self, model: Loaded, *, probation: bool, timeout_s: float) -> str | None: ...
    def load_configured(self) -> Loaded: ...
    def state_changed(self) -> None: ...
    def teach(self, model: Loaded) -> tuple[Loaded, str]: ...


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended."""

    result: Literal["installed", "unchanged", "refused", "rolled_back", "failed"]
    reason: str
    model: dict[str, Any] = field(default_factory=dict)
    """name, version, sha256 of the bundle concerned (when known)."""


class Updater:
    """The updater thread: takes requests from a bounded queue and carries them out one at a time."""

    def __init__(self, store: ModelStore, policy: Policy, host: Host) -> None:
        self.store = store
        self.policy = policy
        self._host = host
        self._queue: queue.Queue[Request] = queue.Queue(maxsize=QUEUE_REQUESTS)
        self._auto: list[tuple[Loaded, str]] = []
        self._passed: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auricle-updater", daemon=True)
        self._lock = threading.Lock()
        self.last: dict[str, Any] | None = None

    def recover(self) -> None:
        """Settle what a crash left behind in the state directory (before the first model loads)."""
        try:
            self.last = self.store.recover()
        except StoreError as exc:
            _LOGGER.warning("models: %s", exc)

    def start(self) -> None:
        """Start taking requests."""
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop after the request in progress (bounded wait)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def receive(self, command: str, payload: bytes, retained: bool) -> None:
        """A ``model/install`` or ``model/rollback`` message (paho's thread): parse and queue, never block."""
        request = parse_command(command, payload, retained=retained, max_bytes=self.policy.max_bytes)
        if request is not None:
            self.submit(request)

    def submit(self, request: Request) -> None:
        """Queue a request from the network (never blocks); a full queue answers busy."""
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            busy = Outcome("refused", "busy: too many requests waiting; send it again later")
            self._finish(request, busy, durable=False)
            return
        self._wake.set()

    def probation_passed(self, sha256: str) -> None:
        """The model with this bundle sha256 served its probation: trust it across restarts (worker thread)."""
        with self._lock:
            self._passed = sha256
        self._wake.set()

    def rolled_back(self, fallback: Loaded, reason: str) -> None:
        """The worker left a model on probation for ``fallback``: record it (called from the worker)."""
        with self._lock:
            self._auto.append((fallback, reason))
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            while not self._stop.is_set():
                with self._lock:
                    auto = self._auto.pop(0) if self._auto else None
                    passed, self._passed = self._passed, None
                if passed is not None:
                    self._guard(lambda sha=passed: self._end_trial(sha))  # type: ignore[misc]
                if auto is not None:
                    self._guard(lambda a=auto: self._record_auto_rollback(*a))  # type: ignore[misc]
                    continue
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._guard(lambda r=request: self.handle(r))  # type: ignore[misc]

    def _guard(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:  # the updater must outlive any bad request
            _LOGGER.exception("models: updater error")

    def handle(self, request: Request) -> None:
        """Carry out one request now, on the calling thread (the updater thread calls this)."""
        if request.problem is not None:
            self._finish(request, Outcome("refused", request.problem), durable=False)
            return
        self._begin(request)
        try:
            outcome = self._install(request) if request.action == "install" else self._rollback(request)
        except (Refused, BundleError, FetchError, ConfigError, StoreError) as exc:
            outcome = Outcome("refused", str(exc))
        except Exception as exc:
            _LOGGER.exception("models: %s %s failed", request.action, request.id)
            outcome = Outcome("failed", f"internal error: {type(exc).__name__}: {exc}"[:300])
        self._finish(request, outcome)

    def _begin(self, request: Request) -> None:
        fields: dict[str, Any] = {"result": PENDING, "reason": "checking"}
        if request.action == "install":  # a rollback names its target once it knows it (see recover())
            sha = request.sha256 or bundles.sha256(request.payload or b"")
            fields["sha256"] = sha
        self._set_last(request, fields, durable=True)

    def _install(self, request: Request) -> Outcome:
        p = self.policy
        raw = request.payload
        if raw is None:
            assert request.url is not None and request.sha256 is not None  # parse_install checked
            raw = fetch(request.url, sha256=request.sha256, max_bytes=p.max_bytes, timeout_s=p.url_timeout_s)
        if len(raw) > p.max_bytes:
            raise Refused(
                f"bundle too large: {len(raw)} bytes, over the {p.max_bytes} byte limit (model.max_bundle_mb)"
            )
        sha = bundles.sha256(raw)
        if request.sha256 is not None and sha != request.sha256:
            raise Refused(f"sha256 mismatch (got {sha[:16]}..., expected {request.sha256[:16]}...)")
        running = self._host.running()
        if running is not None and running.sha256 == sha:
            m = running.bundle.manifest
            return Outcome("unchanged", f"{m.name} {m.version} is already active; nothing to do", running.describe())
        b, classifier, note = verify(raw, f"bundle {sha[:12]}", p, budget_ms=p.latency_budget_ms)
        checked = {"result": PENDING, "reason": "storing", "sha256": sha}  # a restart now can name the version
        self._set_last(request, checked | {"name": b.manifest.name, "version": b.manifest.version}, durable=True)
        self._host.check_fits(classifier)
        check_version(b, running, request.force)
        entry = self.store.put(raw, b.manifest, sha)
        model = Loaded(bundle=b, classifier=classifier, sha256=sha, origin="installed", entry=entry)
        model, taught = self._host.teach(model)  # the personal heads refit before it goes live
        if taught:
            _LOGGER.info("models: %s", taught)
            note = f"{note}; {taught}"
        old = self.store.pointer()
        previous = running.entry if running is not None else old.previous
        trial = p.probation_s > 0
        self.store.switch(Pointer(active=entry, previous=previous, trial=trial, prior=old.previous if trial else None))
        self._activate_or_revert(model, old, probation=p.probation_s > 0)
        pruned = self.store.prune(p.keep_versions)
        if pruned:
            _LOGGER.info("models: removed old versions %s", ", ".join(pruned))
        return Outcome("installed", f"{b.manifest.name} {b.manifest.version} active; {note}", model.describe())

    def _activate_or_revert(self, model: Loaded, old: Pointer, *, probation: bool) -> None:
        m = model.bundle.manifest
        window_s = m.window_samples / m.features.sample_rate
        error = self._host.activate(model, probation=probation, timeout_s=window_s + ACTIVATE_EXTRA_S)
        if error is not None:
            self.store.switch(old)
            raise Refused(f"not activated: {error}")

    def _rollback(self, request: Request) -> Outcome:
        old = self.store.pointer()
        if old.active is None and old.previous is None:
            raise Refused("nothing to roll back to: no model was installed here")
        target = old.previous
        model = self.load_entry(target) if target is not None else self._host.load_configured()
        m = model.bundle.manifest
        pending = {"result": PENDING, "reason": "switching", "sha256": target.sha256 if target else None}
        pending |= {"name": m.name, "version": m.version}
        self._set_last(request, pending, durable=True)
        self.store.switch(Pointer(active=target, previous=old.active))
        self._activate_or_revert(model, old, probation=False)
        return Outcome("rolled_back", f"back on {m.name} {m.version} ({model.origin})", model.describe())

    def load_entry(self, entry: Entry, *, budget_ms: float | None = None) -> Loaded:
        """An installed version, checked again (see :func:`load_installed`)."""
        return load_installed(self.store, self.policy, entry, budget_ms=budget_ms)

    def _end_trial(self, sha256: str) -> None:
        old = self.store.pointer()
        if old.trial and old.active is not None and old.active.sha256 == sha256:
            self.store.switch(Pointer(active=old.active, previous=old.previous))

    def _record_auto_rollback(self, fallback: Loaded, reason: str) -> None:
        self.store.switch(after_failed_trial(self.store.pointer(), fallback.entry))
        last = self.last or {}
        request = Request(action="rollback", id=str(last.get("id", "probation")))
        m = fallback.bundle.manifest
        self._finish(request, Outcome("rolled_back", f"{reason}; back on {m.name} {m.version}", fallback.describe()))

    def _finish(self, request: Request, outcome: Outcome, *, durable: bool = True) -> None:
        """Record and publish the end of an attempt (malformed or busy requests are not written to disk)."""
        log = _LOGGER.info if outcome.result in ("installed", "unchanged", "rolled_back") else _LOGGER.warning
        log("models: %s %s: %s: %s", request.action, request.id, outcome.result, outcome.reason)
        fields = {"result": outcome.result, "reason": outcome.reason, "finished": time.time()} | outcome.model
        self._set_last(request, fields, durable=durable)

    def _set_last(self, request: Request, fields: dict[str, Any], *, durable: bool) -> None:
        last = {"id": request.id, "action": request.action, "received": request.received} | fields
        with self._lock:
            self.last = last
        if durable:
            try:
                self.store.record(last)
            except StoreError as exc:
                _LOGGER.warning("models: cannot record the attempt: %s", exc)
        self._host.state_changed()


def load_installed(store: ModelStore, policy: Policy, entry: Entry, *, budget_ms: float | None = None) -> Loaded:
    """An installed version, checked again (file sha256, signature, validation, smoke test)."""
    path = store.path_of(entry)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if bundles.sha256(raw) != entry.sha256:
        raise BundleError(f"{path}: sha256 changed on disk (corrupt)")
    b, classifier, _ = verify(raw, str(path), policy, budget_ms=budget_ms)
    return Loaded(bundle=b, classifier=classifier, sha256=entry.sha256, origin="installed", entry=entry)
