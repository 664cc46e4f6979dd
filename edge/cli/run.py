"""``auricle run | devices``: the daemon, its ``--check``, and the audio inputs it can see.

A daemon that cannot start (a bad config, bundle or audio file: exit status 2) says why on stderr
and, when the config's ``mqtt`` section names a broker, on the broker's retained ``status/reason``,
so that Home Assistant's Problem sensor shows it (bounded: a broker out of reach does not delay
the exit by more than a few seconds).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from edge.audio.sources import AudioError
from edge.model.bundle import BundleError
from edge.model.classifier import Classifier
from edge.publish.mqttconfig import MqttConfig
from edge.schema import ConfigError

_LOGGER = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` and ``devices``."""
    p = sub.add_parser("run", help="run the daemon: listen, classify, publish")
    p.add_argument("--config", "-c", metavar="FILE", help="YAML config (default: built-in defaults)")
    p.add_argument("--check", action="store_true", help="validate the config and load the model, then exit")
    p.add_argument(
        "--json", action="store_true", help="without a broker: JSON lines even on a terminal (the default in a pipe)"
    )
    p.set_defaults(handler=_run)

    p = sub.add_parser("devices", help="list audio input devices")
    p.set_defaults(handler=_devices)


def _run(args: argparse.Namespace) -> int:
    from edge.daemon.config import broker_section, load_config
    from edge.daemon.service import run_service

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        if args.check:  # it only says what is wrong
            raise
        return _not_started(exc, broker_section(args.config))
    if args.check:
        return _check(config)
    if not args.verbose:
        logging.getLogger().setLevel(config.log_level)
    try:
        return run_service(config, json_lines=args.json)
    except (AudioError, BundleError, ConfigError) as exc:
        return _not_started(exc, config.mqtt)


def _not_started(error: Exception, mqtt: MqttConfig | None) -> int:
    """Say why on stderr, then on the broker (``mqtt``, when there is one); exit status 2."""
    print(f"auricle: {error}", file=sys.stderr)
    if mqtt is not None and mqtt.host is not None:
        from edge.publish.mqttoneshot import report_not_started

        failure = report_not_started(mqtt, f"not started: {error}")
        _LOGGER.debug("MQTT: reason for not starting %s", "published" if failure is None else f"not sent: {failure}")
    return 2


def _check(config: Any) -> int:
    from edge.daemon.startup import load_bundle, starting_model
    from edge.update.modelstore import ModelStore

    bundle = load_bundle(config)
    runtime = Classifier(bundle, threads=config.model.threads, kernels=config.model.kernels).runtime_text
    keys = config.model.keys()  # a bad update key is a config error here, not at the first install
    start = starting_model(config, ModelStore(config.model.state_dir))
    m = bundle.manifest
    hop = config.model.hop_frames or m.hop_frames
    target = f"MQTT {config.mqtt.host}:{config.mqtt.port}" if config.mqtt.host else "console"
    print(
        f"config OK: model {m.name} {m.version} ({len(m.labels)} labels, hop {hop} frames), "
        f"audio {config.audio.source}, output {target}"
    )
    if keys:
        accepted = f"bundles signed by one of {len(keys)} key(s)" + (
            " or unsigned" if config.model.allow_unsigned else ""
        )
    elif config.model.allow_unsigned:
        accepted = "unsigned bundles accepted (model.allow_unsigned)"
    else:
        accepted = "refused, no key configured (model.public_key, model.update_keys)"
    print(f"updates: {accepted}; {_installed(config.model.state_dir)}")
    print(f"starts with: {_describe(start.model)}" + (f" ({start.problem})" if start.problem else ""))
    print(f"runtime: {runtime}, {config.model.threads} thread{'s' if config.model.threads > 1 else ''}")
    if config.mqtt.host:
        print(_broker(config.mqtt), flush=True)
    return 0


def _broker(mqtt: MqttConfig) -> str:
    """Whether the broker takes a connection now: a warning only, since a broker may come later."""
    from edge.publish.mqttoneshot import probe

    where = f"{mqtt.host}:{mqtt.port}"
    failure = probe(mqtt)
    return f"broker: connected to {where}" if failure is None else f"broker: cannot connect to {where}: {failure}"


def _describe(model: Any) -> str:
    if model is None:
        return "no model"
    m = model.bundle.manifest
    return f"{m.name} {m.version}, {model.origin}"


def _installed(state_dir: str) -> str:
    """What the state directory holds, read only: the daemon runs its active model over model.path."""
    from edge.update.modelstore import ModelStore, StoreError

    store = ModelStore(state_dir)
    if not store.in_use():
        return f"nothing installed in {state_dir}"
    try:
        pointer = store.pointer()
    except StoreError as exc:
        return f"unreadable state ({exc}): the daemon falls back to the previous or configured model"
    if pointer.active is None:
        return f"nothing active in {state_dir}"
    where = store.path_of(pointer.active)
    state = "" if where.is_file() else f", but {where} is missing"
    return f"installed {pointer.active.label()} in {state_dir} runs instead of the model above{state}"


def _devices(_args: argparse.Namespace) -> int:
    from edge.audio.mic import input_devices

    try:
        devices = input_devices()
    except (OSError, ImportError) as exc:
        print(f"auricle: no audio input available: {exc}", file=sys.stderr)
        return 1
    if not devices:
        print("no input devices found (no microphone, or no access to the sound server)")
        return 1
    print(f"{'index':>5}  {'channels':>8}  {'rate Hz':>8}  name")
    for d in devices:
        print(f"{d['index']:>5}  {d['channels']:>8}  {d['default_rate_hz']:>8.0f}  {d['name']}")
    return 0
