"""``auricle run``: wire source, pipeline, detector and publisher; run until told to stop.

Threads: the audio callback (mic only) fills a bounded queue; one worker
thread reads the source and runs the pipeline; paho's network thread
publishes; the main thread handles signals, the health timer and the
systemd watchdog.

Models: the updater thread (edge/update.py) checks and stores new bundles;
the worker switches to them between hops (edge/pipeline.py ``swap``) and
watches them on probation (edge/active.py), rolling back on its own.

Failure policy: an exception while processing a block is logged, counted in
health (``errors``) and the pipeline restarts on the next block (fresh front
end and window).  More than :data:`MAX_ERRORS` within :data:`ERROR_WINDOW_S`
means something is persistently wrong: the daemon exits with status 1 so that
systemd (``Restart=on-failure``) starts it afresh.  SIGTERM/SIGINT end it
cleanly (running events ended, ``offline`` published) within
:data:`SHUTDOWN_S`, status 0.  A file source that reaches its end also exits 0.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.resources
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO, Literal

import numpy as np
import numpy.typing as npt

from edge import bundle as bundles
from edge.active import Probation, choose_startup, state_document
from edge.audio import AudioError, FileSource, Source, StdinSource
from edge.bundle import Bundle, BundleError, load_public_key, read_bundle
from edge.config import AudioConfig, Config, ModelConfig
from edge.control import ControlResult, handle_control
from edge.events import EventDetector
from edge.features import FeatureParams
from edge.mic import MicParams, MicSource, input_devices
from edge.model import Classifier
from edge.modelstore import ModelStore
from edge.mqtt import DeviceInfo, Publisher, make_publisher
from edge.pipeline import Pipeline, Swap
from edge.recorder import Recorder
from edge.schema import ConfigError
from edge.stats import ProcessMeter
from edge.update import Loaded, Policy, Request, Updater, parse_install, parse_rollback

_LOGGER = logging.getLogger(__name__)

MAX_ERRORS = 10
ERROR_WINDOW_S = 60.0
SHUTDOWN_S = 5.0
DEFAULT_MODEL = "esc50.auricle"


def default_model_path() -> str:
    """The shipped model inside the installed package."""
    return str(importlib.resources.files("edge") / "models" / DEFAULT_MODEL)


def load_bundle(config: Config) -> Bundle:
    """The configured (or shipped) bundle, signature-checked when a key is set."""
    path = config.model.path or default_model_path()
    key = load_public_key(config.model.public_key) if config.model.public_key else None
    return read_bundle(path, public_key=key)


def sw_version() -> str:
    """auricle's installed version."""
    try:
        return importlib.metadata.version("auricle")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def make_source(audio: AudioConfig, rate_hz: int, publisher: Publisher, stdin: BinaryIO | None = None) -> Source:
    """The configured source; ``auto`` is the microphone if any, else the demo clip."""
    if audio.source == "file":
        assert audio.file is not None  # checked by AudioConfig
        return FileSource(
            audio.file, rate_hz, realtime=audio.realtime, loop=audio.loop, block_samples=audio.block_samples
        )
    if audio.source == "stdin":
        return StdinSource(
            rate_hz, audio.stdin_rate_hz, stream=stdin or sys.stdin.buffer, block_samples=audio.block_samples
        )
    if audio.source == "auto" and not _have_microphone():
        from edge.demo import demo_clip

        path = demo_clip()
        _LOGGER.info("no microphone found: replaying the generated demo clip %s", path)
        return FileSource(path, rate_hz, realtime=True, loop=True, block_samples=audio.block_samples)
    params = MicParams(
        device=audio.device,
        block_samples=audio.block_samples,
        queue_blocks=audio.queue_blocks,
        stall_s=audio.stall_s,
        reopen_min_s=audio.reopen_min_s,
        reopen_max_s=audio.reopen_max_s,
    )
    return MicSource(rate_hz, params, on_status=publisher.publish_status_reason)


def _have_microphone() -> bool:
    try:
        return bool(input_devices())
    except (OSError, ImportError) as exc:  # no PortAudio library at all
        _LOGGER.info("no audio input available: %s", exc)
        return False


def notify(message: str) -> None:
    """Tell systemd (``Type=notify``) something, if it is listening; never fails."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.sendto(message.encode(), address)
    except OSError as exc:
        _LOGGER.debug("sd_notify %s failed: %s", message, exc)


@dataclass
class _Switch:
    """A model the updater asked the worker to switch to."""

    model: Loaded
    probation: bool
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class Service:
    """One running daemon."""

    def __init__(self, config: Config, *, stdin: BinaryIO | None = None, json_lines: bool = False) -> None:
        """``json_lines``: without a broker, print JSON lines even on a terminal."""
        self.config = config
        self.stop = threading.Event()
        self.failed = False
        self._errors: deque[float] = deque(maxlen=MAX_ERRORS + 1)
        self._meter = ProcessMeter()
        self._lock = threading.Lock()
        self._pending: _Switch | None = None
        self._probation: Probation | None = None
        self._swaps = 0
        self._policy = update_policy(config.model)
        self._store = ModelStore(config.model.state_dir)
        self._updater = Updater(self._store, self._policy, self)
        self._updater.recover()
        self._model, self._problem = choose_startup(self._store, self._updater.load_entry, self.load_configured)
        self._rate = self._model.bundle.manifest.features.sample_rate if self._model else FeatureParams().sample_rate
        self.publisher = make_publisher(config.mqtt, human=False if json_lines else None)
        self.source = make_source(config.audio, self._rate, self.publisher, stdin)
        cfg = config.recording
        self._recorder = Recorder(cfg, self._rate) if cfg.enabled else None
        self._detector: EventDetector | None = None
        self._pipeline: Pipeline | None = None
        if self._model is not None:
            self._detector = self._make_detector(self._model.classifier)
            self._pipeline = self._new_pipeline(self._model, self._detector)

    # --- models ------------------------------------------------------------------------

    def load_configured(self) -> Loaded:
        """The configured (or shipped) bundle, loaded (Updater host interface)."""
        path = self.config.model.path or default_model_path()
        b = load_bundle(self.config)
        classifier = Classifier(b, threads=self.config.model.threads)
        sha = bundles.sha256(Path(path).read_bytes())
        return Loaded(bundle=b, classifier=classifier, sha256=sha, origin=self._fallback_origin())

    def _fallback_origin(self) -> Literal["configured", "shipped"]:
        return "configured" if self.config.model.path else "shipped"

    def _make_detector(self, classifier: Classifier) -> EventDetector:
        return EventDetector(classifier.labels, classifier.manifest.thresholds, self.config.events)

    def _new_pipeline(self, model: Loaded, detector: EventDetector) -> Pipeline:
        cfg = self.config
        return Pipeline(
            model.classifier,
            hop_frames=cfg.model.inference_hop,
            gate_dbfs=cfg.audio.gate_dbfs,
            detector=detector,
            sink=self.publisher,
            recorder=self._recorder,
            on_scores=self._on_scores,
            scores_top_k=cfg.mqtt.scores.top_k if cfg.mqtt.scores.enabled else 0,
            live=self.source.live,
        )

    def running(self) -> Loaded | None:
        """The model classifying now (Updater host interface)."""
        return self._model

    def check_fits(self, classifier: Classifier) -> None:
        """Refuse a model this running daemon cannot switch to (Updater host interface)."""
        rate = classifier.manifest.features.sample_rate
        if rate != self._rate:
            raise BundleError(f"{rate} Hz model, but the audio source runs at {self._rate} Hz (needs a restart)")
        try:
            self._make_detector(classifier)
        except ConfigError as exc:
            raise BundleError(f"does not fit this device's config: {exc}") from None

    def activate(self, model: Loaded, *, probation: bool, timeout_s: float) -> str | None:
        """Have the worker switch to ``model`` between hops; wait for it (Updater host interface)."""
        switch = _Switch(model, probation)
        with self._lock:
            self._pending = switch
        if switch.done.wait(timeout_s):
            return switch.error
        with self._lock:
            if self._pending is switch:
                self._pending = None
                return f"the audio worker did not switch within {timeout_s:.0f} s (no audio?)"
        switch.done.wait(timeout_s)
        return switch.error if switch.done.is_set() else "the audio worker did not finish the switch"

    def state_changed(self) -> None:
        """Publish ``model/state`` (retained) as things stand."""
        doc = state_document(
            self._model,
            self._store,
            self._updater.last,
            self._problem,
            self._probation,
            self._fallback_origin(),
            self.config.mqtt.groups,
        )
        self.publisher.publish_model_state(doc)

    def _on_model_command(self, command: str, payload: bytes, retained: bool) -> None:
        if command == "install" and not payload:
            return  # an empty message is how a retained command is cleared, not a request
        if command == "install" and len(payload) > self._policy.max_bytes:
            too_large = f"bundle too large: {len(payload)} bytes, over the {self._policy.max_bytes} byte limit"
            request = Request(action="install", id=bundles.sha256(payload), problem=too_large)
        else:
            request = parse_install(payload) if command == "install" else parse_rollback(payload)
        if retained:  # it would be carried out again on every reconnect
            problem = f"{command}: retained commands are ignored; publish without retain (and clear this one)"
            request = dataclasses.replace(request, problem=problem)
        self._updater.submit(request)

    def _between_blocks(self) -> None:
        """Worker thread: start a requested switch; end or fail a probation."""
        with self._lock:
            switch, self._pending = self._pending, None
        if switch is not None:
            self._start_switch(switch)
        probation = self._probation
        if probation is None:
            return
        if probation.failure is not None:
            self._roll_back(probation)
        elif probation.expired():
            self._probation = None
            _LOGGER.info("models: probation over; keeping %s", self._model_name())
            if self._model is not None:
                self._updater.probation_passed(self._model.sha256)
            self.state_changed()

    def _start_switch(self, switch: _Switch) -> None:
        model = switch.model
        detector = self._make_detector(model.classifier)

        def on_switch() -> None:
            old = self._model
            self._model, self._detector, self._problem = model, detector, None
            seconds = self.config.model.probation_s
            keep = switch.probation and old is not None and seconds > 0
            self._probation = Probation(old, seconds, self._policy.latency_budget_ms) if keep and old else None
            self._swaps += 1
            self.publisher.set_model(self.device_info())
            _LOGGER.info("models: switched to %s", self._model_name())
            switch.done.set()

        if self._pipeline is None:
            self._pipeline = self._new_pipeline(model, detector)
            on_switch()
            return
        try:
            self._pipeline.swap(Swap(model.classifier, detector, self.config.model.inference_hop, on_switch))
        except ValueError as exc:
            switch.error = str(exc)
            switch.done.set()

    def _roll_back(self, probation: Probation) -> None:
        self._probation = None
        failed, fallback = self._model_name(), probation.fallback
        reason = f"probation: {probation.failure} from {failed}"
        _LOGGER.error("models: %s; rolling back", reason)
        detector = self._make_detector(fallback.classifier)

        def on_switch() -> None:
            self._model, self._detector = fallback, detector
            self._swaps += 1
            self.publisher.set_model(self.device_info())

        assert self._pipeline is not None  # a probation follows a switch
        self._pipeline.swap(Swap(fallback.classifier, detector, self.config.model.inference_hop, on_switch))
        self._updater.rolled_back(fallback, reason)

    def _on_scores(self, _offset_s: float, scores: npt.NDArray[np.float32]) -> None:
        probation = self._probation
        if probation is not None and self._pipeline is not None:
            probation.observe(scores, self._pipeline.last_latency_s)

    def _model_name(self) -> str:
        m = self._model.bundle.manifest if self._model else None
        return f"{m.name} {m.version}" if m else "no model"

    # --- the daemon ----------------------------------------------------------------------

    def _control(self, payload: bytes) -> ControlResult:
        # the publisher updates discovery and states itself when the result is ok
        if self._detector is None:
            return ControlResult(ok=False, error="set: no model is running")
        return handle_control(payload, self._detector)

    def device_info(self) -> DeviceInfo:
        """What the publisher announces (discovery, health)."""
        if self._model is None or self._detector is None:
            return DeviceInfo(model_name="none", model_version="none", labels=(), sw_version=sw_version())
        m = self._model.bundle.manifest
        return DeviceInfo(
            model_name=m.name,
            model_version=m.version,
            labels=m.event_labels,
            sw_version=sw_version(),
            enabled=self._detector.enabled(),
        )

    def health(self) -> dict[str, Any]:
        """The periodic health message's fields."""
        model = self._model
        data: dict[str, Any] = {"model": model.bundle.manifest.name if model else None}
        pipeline = self._pipeline
        if pipeline is not None:
            data |= pipeline.stats.snapshot() | {"nonfinite": pipeline.nonfinite}
        data |= {"model_swaps": self._swaps, "probation": self._probation is not None}
        data |= self.source.stats()
        data |= self._meter.read()
        return data

    def run(self) -> int:
        """Run until a signal, the end of a file source, or a persistent failure."""
        self.publisher.set_control_handler(self._control)
        self.publisher.set_model_handler(self._on_model_command)
        self.publisher.start(self.device_info())
        self.state_changed()
        self._updater.start()
        worker = threading.Thread(target=self._work, name="auricle-worker", daemon=True)
        worker.start()
        notify("READY=1")
        if self._problem:
            _LOGGER.error("models: %s", self._problem)
        _LOGGER.info("running: %s", self._model_name())
        try:
            self._supervise(worker)
        finally:
            self._shutdown(worker)
        return 1 if self.failed else 0

    def _supervise(self, worker: threading.Thread) -> None:
        health_every = self.config.mqtt.health_interval_s
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        watchdog_every = watchdog_usec / 2e6 if watchdog_usec > 0 else None
        next_health = time.monotonic() + min(health_every, 5.0)  # an early first report
        while worker.is_alive() and not self.stop.is_set():
            self.stop.wait(min(1.0, watchdog_every or 1.0))
            if watchdog_every is not None and worker.is_alive():
                notify("WATCHDOG=1")
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + health_every
                self.publisher.publish_health(self.health())

    def _shutdown(self, worker: threading.Thread) -> None:
        notify("STOPPING=1")
        self.stop.set()
        worker.join(SHUTDOWN_S)
        if worker.is_alive():
            _LOGGER.error("worker did not stop within %s s", SHUTDOWN_S)
            self.failed = True
        self._updater.stop()
        try:
            self.publisher.publish_health(self.health())
        finally:
            self.publisher.close()

    def _work(self) -> None:
        try:
            for block in self.source.blocks(self.stop):
                self._between_blocks()
                self._feed(block.samples, block.t_end)
        except AudioError as exc:
            _LOGGER.error("%s", exc)
            self.failed = True
        except Exception:
            _LOGGER.exception("audio source failed")
            self.failed = True
        finally:
            try:
                if self._pipeline is not None:
                    self._pipeline.finish()
            except Exception:
                _LOGGER.exception("finishing the pipeline failed")

    def _feed(self, samples: npt.NDArray[np.float32], t_end: float) -> None:
        pipeline = self._pipeline
        if pipeline is None:
            return  # no usable model: keep the source open, wait for an install
        try:
            pipeline.feed(samples, t_end)
        except Exception as exc:
            _LOGGER.exception("processing a block failed; restarting the pipeline")
            if self._probation is not None:
                self._probation.error(exc)
            self._worker_error()

    def _worker_error(self) -> None:
        assert self._pipeline is not None
        self._pipeline.stats.errors += 1
        self._pipeline.reset()
        now = time.monotonic()
        self._errors.append(now)
        if len(self._errors) > MAX_ERRORS and now - self._errors[0] < ERROR_WINDOW_S:
            _LOGGER.error(
                "%d errors within %s s: exiting so the service manager restarts auricle", MAX_ERRORS, ERROR_WINDOW_S
            )
            self.failed = True
            self.stop.set()


def update_policy(model: ModelConfig) -> Policy:
    """The install policy from ``model.*`` (keys loaded here: a bad key file is a config error)."""
    paths = ([model.public_key] if model.public_key else []) + list(model.update_keys)
    return Policy(
        keys=tuple(load_public_key(p) for p in paths),
        allow_unsigned=model.allow_unsigned,
        require_selftest=model.require_selftest,
        latency_budget_ms=model.latency_budget_ms,
        threads=model.threads,
        max_bytes=int(model.max_bundle_mb * 1_000_000),
        url_timeout_s=model.url_timeout_s,
        probation_s=model.probation_s,
        keep_versions=model.keep_versions,
    )


def run_service(config: Config, *, json_lines: bool = False) -> int:
    """Build and run the daemon with SIGTERM/SIGINT handled; return the exit status."""
    service = Service(config, json_lines=json_lines)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _LOGGER.info("signal %d: stopping", signum)
        service.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return service.run()
