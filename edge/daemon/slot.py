"""The daemon's model slot: which model runs, switching it between hops, probation, ``model/state``.

The updater thread (edge/update/updater.py) checks and stores bundles and then calls
:meth:`ModelSlot.activate`, which hands the model to the audio worker and
waits; the worker calls :meth:`ModelSlot.between_blocks` before every block,
starts the switch there (edge/detect/pipeline.py ``swap``: no hop lost) and, while a
new model is on probation (edge/update/active.py), rolls it back on its own when it
fails.  Everything the worker owns (pipeline, detector, probation) is only
touched on the worker thread; the one hand-over is the pending switch, under a
lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge.daemon.config import Config
from edge.daemon.controls import SavedControls
from edge.daemon.startup import load_configured, starting_model
from edge.detect.events import EventDetector
from edge.detect.pipeline import ClipRecorder, Pipeline, Swap
from edge.detect.set_command import ControlResult, handle_control
from edge.features import FeatureParams
from edge.model.bundle import BundleError
from edge.model.classifier import Classifier
from edge.publish.discovery import device_info
from edge.publish.payloads import DeviceInfo, Publisher
from edge.schema import ConfigError
from edge.update.active import Probation, state_document
from edge.update.checks import Loaded
from edge.update.modelstore import ModelStore
from edge.update.request import parse_command
from edge.update.updater import Updater

_LOGGER = logging.getLogger(__name__)


@dataclass
class _Switch:
    """A model the updater asked the worker to switch to."""

    model: Loaded
    probation: bool
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class ModelSlot:
    """The model of one running daemon (and the updater's host, see edge.update.updater.Host)."""

    def __init__(self, config: Config, sw_version: str) -> None:
        """Settle the state directory and choose the model to start with; BundleError when there is none."""
        self.config = config
        self._sw_version = sw_version
        self.policy = config.model
        self.policy.keys()  # a bad key file stops the start, not the first install
        self.store = ModelStore(config.model.state_dir)
        self.saved = SavedControls(config.model.state_dir, config.events, config.mqtt.announce)
        """Listening and thresholds changed at runtime, kept across restarts (edge/daemon/controls.py)."""
        self.updater = Updater(self.store, self.policy, self)
        self.updater.recover()
        startup = starting_model(config, self.store)
        self.model, self.problem = startup.model, startup.problem
        features = self.model.bundle.manifest.features if self.model else FeatureParams()
        self.rate = features.sample_rate
        """The source's sample rate: fixed for the life of the process."""
        self.detector: EventDetector | None = None
        self.pipeline: Pipeline | None = None
        self.probation: Probation | None = None
        self.swaps = 0
        self._lock = threading.Lock()
        self._pending: _Switch | None = None
        self._publisher: Publisher | None = None
        self._recorder: ClipRecorder | None = None
        self._live = False
        self._on_problem: Callable[[str | None], None] | None = None

    def attach(
        self,
        publisher: Publisher,
        recorder: ClipRecorder | None,
        live: bool,
        on_problem: Callable[[str | None], None] | None = None,
    ) -> None:
        """Where results go; builds the pipeline when there is a model.

        ``on_problem`` hears, with every state change, what is wrong with the models (None: nothing)."""
        self._publisher, self._recorder, self._live = publisher, recorder, live
        self._on_problem = on_problem
        if self.model is not None:
            self.detector = self._restored_detector(self.model.classifier)
            self.pipeline = self._new_pipeline(self.model, self.detector)

    def load_configured(self) -> Loaded:
        """The configured (or shipped) bundle, loaded (Updater host interface)."""
        return load_configured(self.config)

    def _fallback_origin(self) -> Literal["configured", "shipped"]:
        return "configured" if self.config.model.path else "shipped"

    def _make_detector(self, classifier: Classifier) -> EventDetector:
        return EventDetector.for_model(classifier.manifest, self.config.events, self.config.mqtt.announce)

    def _restored_detector(self, classifier: Classifier) -> EventDetector:
        """The detector a model runs with: the config's, then what was changed at runtime and saved."""
        detector = self._make_detector(classifier)
        self.saved.restore(detector)
        return detector

    def _new_pipeline(self, model: Loaded, detector: EventDetector) -> Pipeline:
        cfg = self.config
        return Pipeline(
            model.classifier,
            hop_frames=cfg.model.hop_frames,
            gate_dbfs=cfg.audio.gate_dbfs,
            detector=detector,
            sink=self._pub(),
            recorder=self._recorder,
            on_scores=self._on_scores,
            scores_top_k=cfg.mqtt.scores.top_k if cfg.mqtt.scores.enabled else 0,
            live=self._live,
        )

    def running(self) -> Loaded | None:
        """The model classifying now (Updater host interface)."""
        return self.model

    def check_fits(self, classifier: Classifier) -> None:
        """Refuse a model this running daemon cannot switch to (Updater host interface)."""
        rate = classifier.manifest.features.sample_rate
        if rate != self.rate:
            raise BundleError(f"{rate} Hz model, but the audio source runs at {self.rate} Hz (needs a restart)")
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
            self.model,
            self.store,
            self.updater.last,
            self.problem,
            self.probation,
            self._fallback_origin(),
            self.config.mqtt.groups,
        )
        self._pub().publish_model_state(doc)
        if self._on_problem is not None:
            self._on_problem(self.problem_text())

    def problem_text(self) -> str | None:
        """What is wrong with the models, for the Problem sensor: no model at all, or a fallback."""
        if self.problem is None:
            return None
        return self.problem if self.model is None else f"model fallback: {self.problem}"

    def on_command(self, command: str, payload: bytes, retained: bool) -> None:
        """A ``model/install`` or ``model/rollback`` message (paho's thread): parse and queue, never block."""
        request = parse_command(command, payload, retained=retained, max_bytes=self.policy.max_bytes)
        if request is not None:
            self.updater.submit(request)

    def between_blocks(self) -> None:
        """Worker thread: start a requested switch; end or fail a probation."""
        with self._lock:
            switch, self._pending = self._pending, None
        if switch is not None:
            self._start_switch(switch)
        probation = self.probation
        if probation is None:
            return
        if probation.failure is not None:
            self._roll_back(probation)
        elif probation.expired():
            self.probation = None
            _LOGGER.info("models: probation over; keeping %s", self.name())
            if self.model is not None:
                self.updater.probation_passed(self.model.sha256)
            self.state_changed()

    def _start_switch(self, switch: _Switch) -> None:
        model = switch.model
        detector = self._restored_detector(model.classifier)

        def on_switch() -> None:
            old = self.model
            self.model, self.detector, self.problem = model, detector, None
            seconds = self.config.model.probation_s
            self.probation = None
            if switch.probation and old is not None and seconds > 0:
                self.probation = Probation(old, seconds, self.policy.latency_budget_ms)
            elif switch.probation:  # nothing to fall back to: trust it now (clears the pointer's trial mark)
                self.updater.probation_passed(model.sha256)
            self.swaps += 1
            self._pub().set_model(self.device_info())
            _LOGGER.info("models: switched to %s", self.name())
            switch.done.set()

        if self.pipeline is None:
            self.pipeline = self._new_pipeline(model, detector)
            on_switch()
            return
        try:
            self.pipeline.swap(Swap(model.classifier, detector, self.config.model.hop_frames, on_switch))
        except ValueError as exc:
            switch.error = str(exc)
            switch.done.set()

    def _roll_back(self, probation: Probation) -> None:
        self.probation = None
        failed, fallback = self.name(), probation.fallback
        reason = f"probation: {probation.failure} from {failed}"
        _LOGGER.error("models: %s; rolling back", reason)
        detector = self._restored_detector(fallback.classifier)

        def on_switch() -> None:
            self.model, self.detector = fallback, detector
            self.swaps += 1
            self._pub().set_model(self.device_info())

        assert self.pipeline is not None  # a probation follows a switch
        self.pipeline.swap(Swap(fallback.classifier, detector, self.config.model.hop_frames, on_switch))
        self.updater.rolled_back(fallback, reason)

    def _on_scores(self, _offset_s: float, scores: npt.NDArray[np.float32]) -> None:
        probation = self.probation
        if probation is not None and self.pipeline is not None:
            probation.observe(scores, self.pipeline.last_latency_s)

    def name(self) -> str:
        """'name version' of the running model, or 'no model'."""
        m = self.model.bundle.manifest if self.model else None
        return f"{m.name} {m.version}" if m else "no model"

    def _pub(self) -> Publisher:
        assert self._publisher is not None, "attach() first"
        return self._publisher

    def control(self, payload: bytes) -> ControlResult:
        """A ``set`` command for the running model's event detector."""
        # the publisher updates discovery and states itself when the result is ok
        detector, model = self.detector, self.model
        if detector is None or model is None:
            return ControlResult(ok=False, error="set: no model is running")
        result = handle_control(payload, detector)
        if result.ok:
            self.saved.save(detector, model.classifier.manifest)
        return result

    def device_info(self) -> DeviceInfo:
        """What the publisher announces (discovery, health)."""
        if self.model is None or self.detector is None:
            return device_info(None, self._sw_version)
        return device_info(
            self.model.bundle.manifest,
            self._sw_version,
            enabled=self.detector.enabled(),
            thresholds=self.detector.thresholds(),
            configured=self.config.mqtt.announce,
        )
