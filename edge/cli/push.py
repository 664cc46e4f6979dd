"""``auricle model push``: send a bundle to devices over MQTT and report what each one did.

The bundle goes to ``<prefix>/<device>/model/install`` for each ``--device``, or
once to ``<prefix>/group/<group>/model/install`` for ``--group``.  Each device
answers on its retained ``model/state`` with the request id (a binary bundle's
id is its sha256).  For a group, the devices expected to answer are the ones
whose retained state lists the group, plus any that answer.  Only answers that
arrive after the publish count (retained copies are old news).  Exit status 0
when every expected device installed the bundle or already had it; 1 when any
refused, failed or did not answer within ``--timeout``; 2 for a bad bundle or
broker.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge.model import bundle as bundles
from edge.model.runtime import same_arithmetic
from edge.publish.mqttconfig import PASSWORD_ENV
from edge.publish.payloads import group_topic

_LOGGER = logging.getLogger(__name__)

OK_RESULTS = ("installed", "unchanged")
FINAL_RESULTS = ("installed", "unchanged", "refused", "rolled_back", "failed", "interrupted")
RETAINED_WAIT_S = 1.0
"""How long to collect retained states (group membership) before publishing."""


def register(msub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``model push`` to the ``model`` command group."""
    p = msub.add_parser("push", help="send a bundle to devices over MQTT and wait for their answers")
    p.add_argument("bundle", help="bundle file (signed with auricle model sign)")
    p.add_argument("--broker", required=True, metavar="HOST[:PORT]", help="MQTT broker (port 1883, 8883 with --tls)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--device", action="append", metavar="ID", help="device id (repeat for several)")
    who.add_argument("--group", metavar="NAME", help="fleet group (mqtt.groups on the devices)")
    p.add_argument("--prefix", default="auricle", help="topic prefix (mqtt.prefix; default auricle)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds to wait for answers")
    p.add_argument("--force", action="store_true", help="install even an older version")
    p.add_argument("--username", help=f"broker user (password from {PASSWORD_ENV})")
    p.add_argument("--tls", action="store_true", help="TLS to the broker (system CAs unless --ca-file)")
    p.add_argument("--ca-file", help="PEM CA bundle for --tls")
    p.add_argument("--cert-file", help="PEM client certificate for --tls")
    p.add_argument("--key-file", help="PEM client key for --tls")
    p.add_argument("--insecure", action="store_true", help="skip the broker's host name check (testing only)")
    p.set_defaults(handler=_push)


@dataclass
class _Answers:
    """What the devices said, filled in by paho's thread."""

    prefix: str
    request_id: str
    group: str | None
    expected: set[str] = field(default_factory=set)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    published: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)

    def on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        device = msg.topic[len(self.prefix) + 1 :].split("/", 1)[0]
        try:
            state = json.loads(msg.payload)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(state, dict):
            return
        with self.cond:
            if self.group is not None and self.group in (state.get("groups") or []):
                self.expected.add(device)
            last = state.get("last")
            if self.published and not msg.retain and isinstance(last, dict) and last.get("id") == self.request_id:
                self.expected.add(device)
                if last.get("result") in FINAL_RESULTS:
                    self.answers[device] = last | {"active": state.get("active"), "runtime": state.get("runtime")}
            self.cond.notify_all()

    def done(self) -> bool:
        return bool(self.expected) and self.expected <= set(self.answers)


def _push(args: argparse.Namespace) -> int:
    raw = Path(args.bundle).read_bytes()
    b = bundles.parse_bundle(raw, args.bundle)  # refuse to send what no device would take
    sha = bundles.sha256(raw)
    if args.force:
        payload = json.dumps({"id": sha, "bundle_b64": base64.b64encode(raw).decode(), "force": True}).encode()
    else:
        payload = raw
    answers = _Answers(args.prefix, sha, args.group, expected=set(args.device or ()))
    client = _connect(args, answers)
    try:
        time.sleep(RETAINED_WAIT_S)  # retained states arrive right after SUBACK: learn the group
        with answers.cond:
            answers.published = True
        for topic in _targets(args):
            info = client.publish(topic, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                print(f"auricle: publish to {topic} failed: {mqtt.error_string(info.rc)}", file=sys.stderr)
                return 2
        print(f"pushed {b.manifest.name} {b.manifest.version} ({len(raw)} bytes, id {sha[:12]}) to {_who(args)}")
        _wait(answers, args.timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return _report(answers, b.manifest.version)


def _targets(args: argparse.Namespace) -> list[str]:
    if args.group:
        return [group_topic(args.prefix, args.group, "install")]
    return [f"{args.prefix}/{d}/model/install" for d in args.device]


def _who(args: argparse.Namespace) -> str:
    return f"group {args.group}" if args.group else ", ".join(args.device)


def _connect(args: argparse.Namespace, answers: _Answers) -> mqtt.Client:
    host, _, port_text = args.broker.partition(":")
    port = int(port_text) if port_text else (8883 if args.tls else 1883)
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    if args.username:
        client.username_pw_set(args.username, os.environ.get(PASSWORD_ENV))
    if args.tls or args.ca_file:
        client.tls_set(ca_certs=args.ca_file, certfile=args.cert_file, keyfile=args.key_file)
        client.tls_insecure_set(bool(args.insecure))
    subscribed = threading.Event()
    topics = [(f"{args.prefix}/{d}/model/state", 1) for d in args.device] if args.device else []
    topics = topics or [(f"{args.prefix}/+/model/state", 1)]
    client.on_connect = lambda c, *_: c.subscribe(topics)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = answers.on_message
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        raise bundles.BundleError(f"broker {host}:{port}: {exc}") from None
    client.loop_start()
    if not subscribed.wait(10.0):
        client.loop_stop()
        raise bundles.BundleError(f"broker {host}:{port}: no answer to the subscription within 10 s")
    return client


def _wait(answers: _Answers, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with answers.cond:
        while not answers.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            answers.cond.wait(remaining)


def _report(answers: _Answers, pushed: str) -> int:
    """The table of answers (``version``: the pushed bundle's; ``running``: what each device runs now)."""
    with answers.cond:
        devices = sorted(answers.expected | set(answers.answers))
        answered = [answers.answers.get(d) for d in devices]
    rows = [_row(d, last, pushed) for d, last in zip(devices, answered, strict=True)]
    if not rows:
        print("auricle: no device answered (is the group right, and are the devices online?)", file=sys.stderr)
        return 1
    widths = [max(len(r[i]) for r in [*rows, _HEADER]) for i in range(len(_HEADER) - 1)]
    for row in [_HEADER, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    stated = [str(a.get("runtime")) for a in answered if a is not None]
    groups = sorted({g for g in map(same_arithmetic, stated) if g is not None})
    if len(groups) > 1:
        print(
            f"note: the devices' events may differ by a hop: they run {len(groups)} kinds of int8 arithmetic "
            f"({'; '.join(groups)}); builtin kernels on one machine type give the same (README, Supported platforms)"
        )
    bad = [r for r in rows if r[1] not in OK_RESULTS]
    return 1 if bad else 0


_HEADER = ("device", "result", "version", "running", "runtime", "reason")


def _row(device: str, last: dict[str, Any] | None, pushed: str) -> tuple[str, str, str, str, str, str]:
    if last is None:
        return (device, "no answer", pushed, "-", "-", "timed out")
    active = last.get("active") or {}
    running = str(active.get("version") or "none")
    runtime = str(last.get("runtime") or "-").removesuffix(" kernels")
    return (device, str(last.get("result")), pushed, running, runtime, str(last.get("reason") or ""))
