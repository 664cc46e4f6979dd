"""``auricle run``: wire source, pipeline, detector and publisher; run until told to stop.

Threads: the audio callback (mic only) fills a bounded queue; one worker
thread reads the source and runs the pipeline; paho's network thread
publishes; the main thread handles signals, the health timer and the
systemd watchdog.

Failure policy: an exception while processing a block is logged, counted in
health (``errors``) and the pipeline restarts on the next block (fresh front
end and window).  More than :data:`MAX_ERRORS` within :data:`ERROR_WINDOW_S`
means something is persistently wrong: the daemon exits with status 1 so that
systemd (``Restart=on-failure``) starts it afresh.  SIGTERM/SIGINT end it
cleanly (running events ended, ``offline`` published) within
:data:`SHUTDOWN_S`, status 0.  A file source that reaches its end also exits 0.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from types import FrameType
from typing import Any, BinaryIO

from edge.audio import AudioError, FileSource, Source, StdinSource
from edge.bundle import Bundle, load_public_key, read_bundle
from edge.config import AudioConfig, Config
from edge.control import ControlResult, handle_control
from edge.events import EventDetector
from edge.mic import MicParams, MicSource, input_devices
from edge.model import Classifier
from edge.mqtt import DeviceInfo, Publisher, make_publisher
from edge.pipeline import Pipeline
from edge.recorder import Recorder
from edge.stats import ProcessMeter

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
class _Parts:
    bundle: Bundle
    detector: EventDetector
    publisher: Publisher
    source: Source
    pipeline: Pipeline


class Service:
    """One running daemon."""

    def __init__(self, config: Config, *, stdin: BinaryIO | None = None, json_lines: bool = False) -> None:
        """``json_lines``: without a broker, print JSON lines even on a terminal."""
        self.config = config
        self._json_lines = json_lines
        self.stop = threading.Event()
        self.failed = False
        self._errors: deque[float] = deque(maxlen=MAX_ERRORS + 1)
        self._meter = ProcessMeter()
        self._parts = self._build(stdin)

    def _build(self, stdin: BinaryIO | None) -> _Parts:
        cfg = self.config
        bundle = load_bundle(cfg)
        m = bundle.manifest
        classifier = Classifier(bundle, threads=cfg.model.threads)
        detector = EventDetector(classifier.labels, m.thresholds, cfg.events)
        publisher = make_publisher(cfg.mqtt, human=False if self._json_lines else None)
        source = make_source(cfg.audio, m.features.sample_rate, publisher, stdin)
        recorder = Recorder(cfg.recording, m.features.sample_rate) if cfg.recording.enabled else None
        pipeline = Pipeline(
            classifier,
            hop_frames=cfg.model.inference_hop,
            gate_dbfs=cfg.audio.gate_dbfs,
            detector=detector,
            sink=publisher,
            recorder=recorder,
            scores_top_k=cfg.mqtt.scores.top_k if cfg.mqtt.scores.enabled else 0,
            live=source.live,
        )
        return _Parts(bundle, detector, publisher, source, pipeline)

    def _control(self, payload: bytes) -> ControlResult:
        # the publisher updates discovery and states itself when the result is ok
        return handle_control(payload, self._parts.detector)

    def device_info(self) -> DeviceInfo:
        """What the publisher announces (discovery, health)."""
        m = self._parts.bundle.manifest
        return DeviceInfo(
            model_name=m.name,
            model_version=m.version,
            labels=m.event_labels,
            sw_version=sw_version(),
            enabled=self._parts.detector.enabled(),
        )

    def health(self) -> dict[str, Any]:
        """The periodic health message's fields."""
        parts = self._parts
        data: dict[str, Any] = {"model": parts.bundle.manifest.name}
        data |= parts.pipeline.stats.snapshot()
        data |= parts.source.stats()
        data |= self._meter.read()
        return data

    def run(self) -> int:
        """Run until a signal, the end of a file source, or a persistent failure."""
        parts = self._parts
        parts.publisher.set_control_handler(self._control)
        parts.publisher.start(self.device_info())
        worker = threading.Thread(target=self._work, name="auricle-worker", daemon=True)
        worker.start()
        notify("READY=1")
        _LOGGER.info("running: %s %s", parts.bundle.manifest.name, parts.bundle.manifest.version)
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
                self._parts.publisher.publish_health(self.health())

    def _shutdown(self, worker: threading.Thread) -> None:
        notify("STOPPING=1")
        self.stop.set()
        worker.join(SHUTDOWN_S)
        if worker.is_alive():
            _LOGGER.error("worker did not stop within %s s", SHUTDOWN_S)
            self.failed = True
        try:
            self._parts.publisher.publish_health(self.health())
        finally:
            self._parts.publisher.close()

    def _work(self) -> None:
        parts = self._parts
        try:
            for block in parts.source.blocks(self.stop):
                try:
                    parts.pipeline.feed(block.samples, block.t_end)
                except Exception:
                    _LOGGER.exception("processing a block failed; restarting the pipeline")
                    self._worker_error()
        except AudioError as exc:
            _LOGGER.error("%s", exc)
            self.failed = True
        except Exception:
            _LOGGER.exception("audio source failed")
            self.failed = True
        finally:
            try:
                parts.pipeline.finish()
            except Exception:
                _LOGGER.exception("finishing the pipeline failed")

    def _worker_error(self) -> None:
        self._parts.pipeline.stats.errors += 1
        self._parts.pipeline.reset()
        now = time.monotonic()
        self._errors.append(now)
        if len(self._errors) > MAX_ERRORS and now - self._errors[0] < ERROR_WINDOW_S:
            _LOGGER.error(
                "%d errors within %s s: exiting so the service manager restarts auricle", MAX_ERRORS, ERROR_WINDOW_S
            )
            self.failed = True
            self.stop.set()


def run_service(config: Config, *, json_lines: bool = False) -> int:
    """Build and run the daemon with SIGTERM/SIGINT handled; return the exit status."""
    service = Service(config, json_lines=json_lines)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _LOGGER.info("signal %d: stopping", signum)
        service.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return service.run()
