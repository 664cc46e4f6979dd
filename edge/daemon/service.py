"""``auricle run``: wire source, pipeline, detector and publisher; run until told to stop.

Threads: the audio callback (mic only) fills a bounded queue; one worker
thread reads the source and runs the pipeline; paho's network thread
publishes; the main thread handles signals, the health timer and the
systemd watchdog (pinged while the worker takes audio, or while the source
reports why it cannot).

Models: the updater thread (edge/update/updater.py) checks and stores new bundles;
the worker switches to them between hops (edge/daemon/slot.py, edge/detect/pipeline.py
``swap``) and watches them on probation (edge/detect/probation.py), rolling back on its own.
The service publishes what the slot tells it: the device and its detector on every switch,
``model/state`` and the Problem sensor on every change; ``set`` commands go to the runtime
controls (edge/daemon/controls.py), ``feedback`` verdicts to the learning side (edge/daemon/learning.py),
which answers on ``feedback/result``.

Failure policy: an exception while processing a block is logged, counted in
health (``errors``) and the pipeline restarts on the next block (fresh front
end and window).  More than :data:`MAX_ERRORS` within :data:`ERROR_WINDOW_S`
means something is persistently wrong: the daemon exits with status 1 so that
systemd (``Restart=on-failure``) starts it afresh.  SIGTERM/SIGINT end it
cleanly (running events ended, ``offline`` published) within
:data:`SHUTDOWN_S`, status 0.  A file source that reaches its end also exits 0.
"""

from __future__ import annotations

import faulthandler
import importlib.metadata
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from edge.audio.mic import MicSource, input_devices
from edge.audio.sources import AudioError, FileSource, Source, StdinSource
from edge.daemon.config import AudioConfig, Config
from edge.daemon.problems import Problems
from edge.daemon.slot import ModelSlot
from edge.detect.clips import ClipRecorder
from edge.detect.pipeline import Pipeline
from edge.detect.set_command import ControlResult
from edge.detect.stats import ProcessMeter
from edge.publish.console import HumanConsole
from edge.publish.discovery import device_info
from edge.publish.mqtt import make_publisher
from edge.publish.payloads import DeviceInfo

_LOGGER = logging.getLogger(__name__)

MAX_ERRORS = 10
ERROR_WINDOW_S = 60.0
SHUTDOWN_S = 5.0


def sw_version() -> str:
    """auricle's installed version."""
    try:
        return importlib.metadata.version("auricle")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def make_source(
    audio: AudioConfig, rate_hz: int, on_status: Callable[[str | None], None], stdin: BinaryIO | None = None
) -> Source:
    """The configured source; ``auto`` is the microphone if any, else the demo clip.

    ``on_status`` hears the microphone's problems (None once audio flows again)."""
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
        from edge.audio.demo import demo_clip

        path = demo_clip()
        _LOGGER.info("no microphone found: replaying the generated demo clip %s", path)
        return FileSource(path, rate_hz, realtime=True, loop=True, block_samples=audio.block_samples)
    return MicSource(rate_hz, audio, on_status=on_status)


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


class Service:
    """One running daemon."""

    def __init__(self, config: Config, *, stdin: BinaryIO | None = None, json_lines: bool = False) -> None:
        """``json_lines``: without a broker, print JSON lines even on a terminal."""
        self.config = config
        self.stop = threading.Event()
        self.failed = False
        self._errors: deque[float] = deque(maxlen=MAX_ERRORS + 1)
        self._meter = ProcessMeter()
        self._last_block = time.monotonic()
        """When the worker last took a block from the source (the watchdog's sign of progress)."""
        self._sw_version = sw_version()
        self.models = ModelSlot(config)
        rate = self.models.rate
        self.publisher = make_publisher(config.mqtt, human=False if json_lines else None)
        self.problems = Problems(self.publisher.publish_status_reason)
        self.source = make_source(config.audio, rate, self.problems.reporter("audio"), stdin)
        recorder = ClipRecorder(config.recording, rate) if config.recording.enabled else None
        self.models.attach(
            self.publisher, recorder, self.source.live, on_switch=self._model_switched, on_state=self._model_state
        )

    def device_info(self) -> DeviceInfo:
        """What the publisher announces: the model running now and its detector (none: no model)."""
        model = self.models.model
        manifest = model.classifier.manifest if model is not None else None  # with the taught labels
        configured = self.config.mqtt.announce
        return device_info(manifest, self._sw_version, detector=self.models.detector, configured=configured)

    def _model_switched(self) -> None:
        """Worker thread: another model classifies; discovery and the retained states follow it."""
        self.publisher.set_model(self.device_info())

    def _model_state(self) -> None:
        """``model/state`` (retained) and the Problem sensor say how the models stand."""
        self.publisher.publish_model_state(self.models.state())
        self.problems.set("model", self.models.problem_text())

    def _control(self, payload: bytes) -> ControlResult:
        """A ``set`` command (paho's thread) for the running model's detector."""
        model = self.models.model
        manifest = model.classifier.manifest if model is not None else None
        return self.models.controls.handle(payload, self.models.detector, manifest)

    def health(self) -> dict[str, Any]:
        """The periodic health message's fields."""
        models = self.models
        data: dict[str, Any] = {"model": models.model.bundle.manifest.name if models.model else None}
        pipeline = models.pipeline
        if pipeline is not None:
            data |= pipeline.stats.snapshot() | {"nonfinite": pipeline.nonfinite}
        data |= {"model_swaps": models.swaps, "probation": models.probation is not None}
        data |= self.source.stats()
        data |= self._meter.read()
        return data

    def run(self) -> int:
        """Run until a signal, the end of a file source, or a persistent failure."""
        models = self.models
        self.publisher.set_control_handler(self._control)
        self.publisher.set_model_handler(models.updater.receive)
        models.learning.report_to(self.publisher.publish_feedback_result)
        self.publisher.set_feedback_handler(models.learning.verdict)
        self.publisher.start(self.device_info())
        self._model_state()
        models.updater.start()
        worker = threading.Thread(target=self._work, name="auricle-worker", daemon=True)
        worker.start()
        notify("READY=1")
        if models.problem:
            _LOGGER.error("models: %s", models.problem)
        said = isinstance(self.publisher, HumanConsole)  # its "listening with ..." line said it on the terminal
        _LOGGER.log(logging.DEBUG if said else logging.INFO, "running: %s", models.name())
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
            if watchdog_every is not None and worker.is_alive() and self._progressing(watchdog_usec / 1e6):
                notify("WATCHDOG=1")
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + health_every
                self.publisher.publish_health(self.health())

    def _progressing(self, within_s: float) -> bool:
        """Whether the worker took a block of audio within ``within_s``, or the source says why it cannot
        (the microphone is lost and being reopened: a restart would not help).  A worker stuck anywhere
        else stops the watchdog pings, and systemd restarts the daemon."""
        return time.monotonic() - self._last_block < within_s or self.problems.has("audio")

    def _shutdown(self, worker: threading.Thread) -> None:
        notify("STOPPING=1")
        self.stop.set()
        worker.join(SHUTDOWN_S)
        if worker.is_alive():
            _LOGGER.error("worker did not stop within %s s", SHUTDOWN_S)
            self.failed = True
        self.models.updater.stop()
        self.models.learning.save()
        try:
            self.publisher.publish_health(self.health())
        finally:
            self.publisher.close()

    def _work(self) -> None:
        try:
            for block in self.source.blocks(self.stop):
                self._last_block = time.monotonic()
                self.models.between_blocks()
                self._feed(block.samples, block.t_end)
        except AudioError as exc:
            _LOGGER.error("%s", exc)
            self.failed = True
        except Exception:
            _LOGGER.exception("audio source failed")
            self.failed = True
        finally:
            try:
                if self.models.pipeline is not None:
                    self.models.pipeline.finish()
            except Exception:
                _LOGGER.exception("finishing the pipeline failed")

    def _feed(self, samples: npt.NDArray[np.float32], t_end: float) -> None:
        pipeline = self.models.pipeline
        if pipeline is None:
            return  # no usable model: keep the source open, wait for an install
        try:
            pipeline.feed(samples, t_end)
        except Exception as exc:
            _LOGGER.exception("processing a block failed; restarting the pipeline")
            if self.models.probation is not None:
                self.models.probation.error(exc)
            self._worker_error(pipeline)

    def _worker_error(self, pipeline: Pipeline) -> None:
        pipeline.stats.errors += 1
        pipeline.reset()
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
    # `systemctl kill -s USR1 auricle`: every thread's stack in the journal, for a daemon that seems stuck
    faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
    return service.run()
