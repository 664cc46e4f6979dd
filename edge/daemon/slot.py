"""The daemon's model slot: which model runs, switching it between hops, probation and rollback.

The updater thread (edge/update/updater.py) checks and stores bundles and then calls
:meth:`ModelSlot.activate`, which hands the model to the audio worker and
waits; the worker calls :meth:`ModelSlot.between_blocks` before every block,
starts the switch there (edge/detect/pipeline.py ``swap``: no hop lost) and, while a
new model is on probation (edge/detect/probation.py, watched by the pipeline), rolls it
back on its own when it fails.  Everything the worker owns (pipeline, detector, probation)
is only touched on the worker thread; the one hand-over is the pending switch, under a
lock.

What the slot does not do: it tells its listeners that the model switched or that its state changed,
and the service (edge/daemon/service.py) publishes the device and ``model/state``; ``set`` commands are
the runtime controls' (edge/daemon/controls.py), model commands the updater's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge.daemon.config import Config
from edge.daemon.controls import Controls
from edge.daemon.learning import Learning, LearningSink
from edge.daemon.startup import default_model_path, load_configured, starting_model
from edge.detect import teaching
from edge.detect.clips import ClipRecorder
from edge.detect.events import EventDetector
from edge.detect.pipeline import Pipeline, Sink, Swap
from edge.detect.probation import Probation
from edge.features import FeatureParams
from edge.model.bundle import BundleError
from edge.model.classifier import Classifier
from edge.model.embedding import NoEmbedding
from edge.schema import ConfigError
from edge.update.active import state_document
from edge.update.checks import Loaded
from edge.update.modelstore import ModelStore
from edge.update.updater import Updater

_LOGGER = logging.getLogger(__name__)


@dataclass
class _Switch:
    """A model the updater asked the worker to switch to."""

    model: Loaded
    probation: bool
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


def _nothing() -> None:
    pass


class ModelSlot:
    """The model of one running daemon (and the updater's host, see edge.update.updater.Host)."""

    def __init__(self, config: Config) -> None:
        """Settle the state directory and choose the model to start with; BundleError when there is none."""
        self.config = config
        self.policy = config.model
        self.policy.keys()  # a bad key file stops the start, not the first install
        self.store = ModelStore(config.model.state_dir)
        self.controls = Controls(config.model.state_dir, config.events, config.mqtt.announce)
        """Listening and thresholds changed at runtime, kept across restarts (edge/daemon/controls.py)."""
        self.learning = Learning(config.model.state_dir)
        """The device's own learning: personal heads, its background reservoir, recent events for verdicts."""
        self.updater = Updater(self.store, self.policy, self)
        self.updater.recover()
        startup = starting_model(config, self.store)
        self.model, self.problem = self._taught(startup.model), startup.problem
        features = self.model.bundle.manifest.features if self.model else FeatureParams()
        self.rate = features.sample_rate
        """The source's sample rate: fixed for the life of the process."""
        self.detector: EventDetector | None = None
        self.pipeline: Pipeline | None = None
        self._fallback: Loaded | None = None
        """The model a failed probation goes back to."""
        self.swaps = 0
        self._lock = threading.Lock()
        self._pending: _Switch | None = None
        self._sink: Sink | None = None
        self._recorder: ClipRecorder | None = None
        self._live = False
        self._on_switch: Callable[[], None] = _nothing
        self._on_state: Callable[[], None] = _nothing

    def attach(
        self,
        sink: Sink,
        recorder: ClipRecorder | None,
        live: bool,
        *,
        on_switch: Callable[[], None] = _nothing,
        on_state: Callable[[], None] = _nothing,
    ) -> None:
        """Where results go; builds the pipeline when there is a model.

        ``on_switch`` hears (on the worker thread) that another model classifies now, ``on_state`` that
        :meth:`state` changed."""
        self._sink, self._recorder, self._live = LearningSink(sink, self.learning), recorder, live
        self._on_switch, self._on_state = on_switch, on_state
        self.learning.use(self.model)
        if self.model is not None:
            self.detector = self.controls.detector_for(self.model.classifier.manifest)
            self.pipeline = self._new_pipeline(self.model, self.detector)

    @property
    def probation(self) -> Probation | None:
        """The running model's probation, while it lasts."""
        return self.pipeline.probation if self.pipeline is not None else None

    def load_configured(self) -> Loaded:
        """The configured (or shipped) bundle, loaded (Updater host interface)."""
        return load_configured(self.config)

    def _new_pipeline(self, model: Loaded, detector: EventDetector) -> Pipeline:
        cfg = self.config
        return Pipeline(
            model.classifier,
            hop_frames=cfg.model.hop_frames,
            gate_dbfs=cfg.audio.gate_dbfs,
            detector=detector,
            sink=self._sink,
            recorder=self._recorder,
            scores_top_k=cfg.mqtt.scores.top_k if cfg.mqtt.scores.enabled else 0,
            live=self._live,
            on_scores=self._hop,
        )

    def _hop(self, offset: float, scores: npt.NDArray[np.float32]) -> None:
        """Worker thread, every inferred hop: the learning side keeps what it needs."""
        pipeline, detector = self.pipeline, self.detector
        if pipeline is not None:
            quiet = detector is None or not detector.active()
            self.learning.hop(offset, scores, pipeline.classifier, quiet)

    def _taught(self, model: Loaded | None, *, fit: bool = True) -> Loaded | None:
        """``model`` with the personal heads fitted for it (refit first when the examples changed, unless ``fit``
        is False: the worker never fits); the model as it is when nothing was taught, or when the heads cannot be
        had (said in the log)."""
        if model is None:
            return None
        base = model.classifier.taught(())
        try:
            fitted = teaching.current(self.learning.store, base, model.sha256, fit=fit)
            classifier = teaching.with_heads(base, fitted)
        except NoEmbedding as exc:
            _LOGGER.warning("teaching: the taught labels are not used: %s", exc)
            classifier = base
        except (OSError, ValueError) as exc:
            _LOGGER.error("teaching: the personal heads cannot be loaded: %s", exc)
            classifier = base
        self.learning.loaded()
        return dataclasses.replace(model, classifier=classifier)

    def teach(self, model: Loaded) -> tuple[Loaded, str]:
        """Refit the personal heads for a model about to be installed (Updater host interface): the model with
        them, and one line on what was refit and what could not be."""
        store = self.learning.store
        if not store.examples():
            return model, ""
        taught = self._taught(model)
        assert taught is not None
        self._prune_taught(model)
        fitted = store.fitted(model.sha256)
        if fitted is None or taught.classifier.personal is None:
            return taught, f"personal heads NOT refit ({len(store.labels())} taught label(s) unused): see the log"
        kind = {"label": "", "correction": " (correction)"}
        heads = ", ".join(f"{h.label}{kind[h.kind]} {teaching.threshold_text(h.threshold)}" for h in fitted.heads)
        left = [x for x in fitted.lines if x.startswith("not fitted") or "left out" in x]
        return taught, f"personal heads refit: {heads}" + (f"; {'; '.join(left)}" if left else "")

    def _prune_taught(self, incoming: Loaded) -> None:
        """Heads, reservoirs and caches are kept for the models still on the device (installed, running, coming
        in, configured); the others' go.  Examples are never pruned: they are the truth every refit starts from."""
        from edge.model import bundle as bundles

        keep = {incoming.sha256} | ({self.model.sha256} if self.model else set())
        for path in self.store.versions.glob("*.auricle"):
            with contextlib.suppress(OSError):
                keep.add(bundles.sha256(path.read_bytes()))
        with contextlib.suppress(OSError):
            keep.add(bundles.sha256(Path(self.config.model.path or default_model_path()).read_bytes()))
        with self.learning.store.lock():
            self.learning.store.prune(keep)

    def reload_heads(self) -> None:
        """Worker thread: the store changed (a teach, a verdict): the running model takes the new heads between
        hops; its labels may change, so the detector and discovery follow."""
        if self.model is None or self.pipeline is None:
            return
        model = self._taught(self.model, fit=False)  # the writer fits and saves; the worker only loads
        assert model is not None
        detector = self.controls.detector_for(model.classifier.manifest)

        def on_switch() -> None:
            self.model, self.detector = model, detector
            self.learning.use(model)
            self._on_switch()
            _LOGGER.info("teaching: heads reloaded (%d taught label(s))", len(self.learning.store.labels()))

        self.pipeline.swap(Swap(model.classifier, detector, self.config.model.hop_frames, on_switch))

    def running(self) -> Loaded | None:
        """The model classifying now (Updater host interface)."""
        return self.model

    def check_fits(self, classifier: Classifier) -> None:
        """Refuse a model this running daemon cannot switch to (Updater host interface)."""
        rate = classifier.manifest.features.sample_rate
        if rate != self.rate:
            raise BundleError(f"{rate} Hz model, but the audio source runs at {self.rate} Hz (needs a restart)")
        try:
            EventDetector.for_model(classifier.manifest, self.config.events, self.config.mqtt.announce)
        except ConfigError as exc:
            raise BundleError(f"does not fit this device's config: {exc}") from None

    def activate(self, model: Loaded, *, probation: bool, timeout_s: float) -> str | None:
        """Have the worker switch to ``model`` between hops; wait for it (Updater host interface)."""
        taught = self._taught(model)
        assert taught is not None
        switch = _Switch(taught, probation)
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
        """Something :meth:`state` reports changed (Updater host interface): the listener hears it."""
        self._on_state()

    def state(self) -> dict[str, Any]:
        """The ``model/state`` payload's fields as things stand (docs/ota.md)."""
        probation = self.probation
        origin: Literal["configured", "shipped"] = "configured" if self.config.model.path else "shipped"
        return state_document(
            self.model,
            self.store,
            self.updater.last,
            self.problem,
            probation.until if probation is not None else None,
            origin,
            self.config.mqtt.groups,
        )

    def problem_text(self) -> str | None:
        """What is wrong with the models, for the Problem sensor: no model at all, or a fallback."""
        if self.problem is None:
            return None
        return self.problem if self.model is None else f"model fallback: {self.problem}"

    def between_blocks(self) -> None:
        """Worker thread: start a requested switch; end or fail a probation."""
        with self._lock:
            switch, self._pending = self._pending, None
        if switch is not None:
            self._start_switch(switch)
        elif self.learning.changed():
            self.reload_heads()
        probation = self.probation
        if probation is None:
            return
        if probation.failure is not None:
            self._roll_back(probation)
        elif probation.expired():
            self._end_probation()
            _LOGGER.info("models: probation over; keeping %s", self.name())
            if self.model is not None:
                self.updater.probation_passed(self.model.sha256)
            self.state_changed()

    def _start_switch(self, switch: _Switch) -> None:
        model = switch.model
        detector = self.controls.detector_for(model.classifier.manifest)

        def on_switch() -> None:
            old = self.model
            self.model, self.detector, self.problem = model, detector, None
            self.learning.use(model)
            seconds = self.config.model.probation_s
            self._end_probation()
            if switch.probation and old is not None and seconds > 0:
                assert self.pipeline is not None  # built before the switch
                self.pipeline.probation = Probation(seconds, self.policy.latency_budget_ms)
                self._fallback = old
            elif switch.probation:  # nothing to fall back to: trust it now (clears the pointer's trial mark)
                self.updater.probation_passed(model.sha256)
            self.swaps += 1
            self._on_switch()
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

    def _end_probation(self) -> None:
        if self.pipeline is not None:
            self.pipeline.probation = None
        self._fallback = None

    def _roll_back(self, probation: Probation) -> None:
        fallback = self._fallback
        assert fallback is not None and self.pipeline is not None  # a probation follows a switch
        self._end_probation()
        reason = f"probation: {probation.failure} from {self.name()}"
        _LOGGER.error("models: %s; rolling back", reason)
        detector = self.controls.detector_for(fallback.classifier.manifest)

        def on_switch() -> None:
            self.model, self.detector = fallback, detector
            self.learning.use(fallback)
            self.swaps += 1
            self._on_switch()

        self.pipeline.swap(Swap(fallback.classifier, detector, self.config.model.hop_frames, on_switch))
        self.updater.rolled_back(fallback, reason)

    def name(self) -> str:
        """'name version' of the running model, or 'no model'."""
        m = self.model.bundle.manifest if self.model else None
        return f"{m.name} {m.version}" if m else "no model"
