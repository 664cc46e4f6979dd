"""The MQTT publisher against a real mosquitto: topics, retained state, LWT, reconnect, TLS, contract."""

from __future__ import annotations

import functools
import getpass
import io
import json
import logging
import math
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support.mqtt_helpers import MODEL_VERSION, as_json, config, device_info, started, unique_id, wait_until
from support.shared import ROOT

from edge.detect.events import Event
from edge.detect.set_command import ControlResult
from edge.publish.mqtt import MqttPublisher, make_publisher
from edge.publish.mqttconfig import MqttConfig
from edge.publish.payloads import SCHEMA_VERSION, Payloads
from edge.publish.sinks import FEEDBACK_RETAINED, ConsoleSink
from edge.schema import ConfigError, build
from kit.broker import Mosquitto, Subscriber, publish

pytestmark = pytest.mark.integration
DOCS = ROOT / "docs" / "mqtt.md"


def event(kind: str = "start", label: str = "dog", event_id: str = "e1") -> Event:
    return Event(
        id=event_id,
        label=label,
        kind=kind,  # type: ignore[arg-type]
        start=1000.0,
        end=None if kind == "start" else 1001.5,
        start_offset_s=12.0,
        end_offset_s=None if kind == "start" else 13.5,
        peak=0.91,
        mean=0.8,
        hops=12,
        t_audio=1000.2,
        offset_s=12.2,
    )


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"port": "abc"}, "config.yaml: mqtt.port: expected an integer 1..65535, got 'abc'"),
        ({"qos": 3}, "config.yaml: mqtt.qos: expected an integer 0..2, got 3"),
        ({"prot": 1}, "config.yaml: mqtt.prot: unknown key (did you mean 'port'?)"),
        ({"prefix": "a/#"}, "config.yaml: mqtt: prefix 'a/#': use letters, digits, '_', '-' and '/' between levels"),
        ({"device_id": "a b"}, "config.yaml: mqtt: device_id 'a b': use letters, digits, '_' and '-' only"),
        ({"password": "x"}, "config.yaml: mqtt: password given without username"),
        (
            {"reconnect_min_s": 9, "reconnect_max_s": 2},
            "config.yaml: mqtt: reconnect_min_s must not exceed reconnect_max_s",
        ),
        ({"tls": {"enabled": True, "cert_file": "/x"}}, "config.yaml: mqtt.tls: cert_file and key_file go together"),
        (
            {"tls": {"enabled": True, "ca_file": "/no/such.pem"}},
            "config.yaml: mqtt.tls: ca_file '/no/such.pem' is not a readable file",
        ),
        ({"tls": {"insecure": True}}, "config.yaml: mqtt.tls: files or insecure given but enabled is false"),
        ({"scores": {"top_k": 0}}, "config.yaml: mqtt.scores.top_k: expected an integer 1..100 (labels), got 0"),
    ],
)
def test_config_errors_are_one_line(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build(MqttConfig, data, "config.yaml", "mqtt")
    assert str(err.value) == message


def test_password_comes_from_the_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = build(MqttConfig, {"username": "u", "password": "s3cret-in-file"}, "t")
    monkeypatch.delenv("AURICLE_MQTT_PASSWORD", raising=False)
    assert cfg.resolved_password() == "s3cret-in-file"
    monkeypatch.setenv("AURICLE_MQTT_PASSWORD", "env")
    assert cfg.resolved_password() == "env"
    assert "s3cret" not in repr(cfg)


def test_device_id_defaults_to_the_sanitised_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "Kitchen Pi.local")
    assert MqttConfig().resolved_device_id() == "kitchen_pi_local"
    assert MqttConfig(device_id="mine").resolved_device_id() == "mine"


# --- console sink -----------------------------------------------------------------------


def test_console_sink_prints_the_same_topics_and_payloads() -> None:
    out = io.StringIO()
    sink = ConsoleSink(MqttConfig(device_id="pi"), stream=out)
    assert isinstance(make_publisher(MqttConfig()), ConsoleSink)
    sink.start(device_info())
    sink.publish_event(event())
    sink.publish_state("dog", True)
    sink.publish_level(1000.0, 5.0, -42.123)
    sink.close()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    topics = [line["topic"] for line in lines]
    assert topics[0] == "auricle/pi/status" and lines[0]["payload"] == "online"
    assert "auricle/pi/state/church_bells" in topics
    assert {"topic": "auricle/pi/state/dog", "retain": True, "payload": "ON"} in lines
    sent = next(line["payload"] for line in lines if line["topic"] == "auricle/pi/event")
    assert sent == json.loads(Payloads(MODEL_VERSION).event(event()))
    assert next(line for line in lines if line["topic"] == "auricle/pi/level")["payload"]["dbfs"] == -42.1
    assert lines[-1] == {"topic": "auricle/pi/status", "retain": True, "payload": "offline"}


def test_rate_limits_and_health_extras() -> None:
    out = io.StringIO()
    cfg = build(MqttConfig, {"device_id": "pi", "scores": {"enabled": True, "top_k": 2, "max_rate_hz": 0.5}}, "t")
    sink = ConsoleSink(cfg, stream=out)
    sink.start(device_info())
    for i in range(20):
        sink.publish_scores(1000.0 + i, float(i), [("dog", 0.9), ("siren", 0.05), ("Church bells", 0.01)])
        sink.publish_level(1000.0 + i, float(i), -30.0)
    sink.publish_health({"hops": np.int64(5), "latency_ms_p95": float("nan"), "rtf": np.float32(0.004)})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    scores = [x["payload"] for x in lines if x["topic"].endswith("/scores")]
    assert len(scores) == 1 and scores[0]["top"] == [["dog", 0.9], ["siren", 0.05]]
    assert len([x for x in lines if x["topic"].endswith("/level")]) == 1
    health = next(x["payload"] for x in lines if x["topic"].endswith("/health"))
    assert health["hops"] == 5 and health["latency_ms_p95"] is None
    assert math.isclose(health["rtf"], 0.004, rel_tol=1e-5)
    assert health["schema"] == SCHEMA_VERSION and health["model_version"] == MODEL_VERSION


# --- a real broker ----------------------------------------------------------------------


def test_events_states_and_status_reach_a_subscriber(mosquitto: Mosquitto, subscriber_factory) -> None:
    cfg = config(mosquitto.host, mosquitto.port)
    base = f"auricle/{cfg.device_id}"
    sub = subscriber_factory(f"{base}/#")
    publisher = started(cfg)
    try:
        sub.wait_for(lambda m: m.topic == f"{base}/status" and m.payload == b"online", what="online")
        publisher.publish_event(event())
        publisher.publish_state("dog", True)
        got = as_json(sub.wait_for_topic(f"{base}/event").payload)
        assert got == json.loads(Payloads(MODEL_VERSION).event(event()))
        sub.wait_for(lambda m: m.topic == f"{base}/state/dog" and m.payload == b"ON", what="dog ON")
        cleared = as_json(sub.wait_for_topic(f"{base}/status/reason").payload)
        assert cleared["reason"] is None  # a stale reason from an earlier run never outlives a connect
        publisher.publish_status_reason("microphone lost: device unplugged")
        lost = sub.wait_for(lambda m: m.topic.endswith("/status/reason") and b"unplugged" in m.payload, what="reason")
        assert lost.retain is False and as_json(lost.payload)["reason"] == "microphone lost: device unplugged"
        sound = as_json(sub.wait_for_topic(f"{base}/sound").payload)
        assert sound == json.loads(Payloads(MODEL_VERSION).sound(event()))
        assert sound["event_type"] == "dog" and sound["score"] == 0.91
        late = subscriber_factory(f"{base}/#")  # a subscriber arriving later sees the retained state
        expected = {f"{base}/{t}" for t in ("status", "status/reason", "state/dog", "state/siren")}
        # the broker sends retained messages in no set order: wait for all of them, not just the first
        wait_until(lambda: expected <= {m.topic for m in late.messages() if m.retain}, 5, "retained state")
        retained = {m.topic: m.payload for m in late.messages() if m.retain}
        assert retained[f"{base}/status"] == b"online"
        assert retained[f"{base}/state/dog"] == b"ON"
        assert retained[f"{base}/state/siren"] == b"OFF"
        assert b"unplugged" in retained[f"{base}/status/reason"]
        assert f"{base}/sound" not in retained and f"{base}/event" not in retained
        publisher.publish_status_reason(None)  # recovered
        sub.wait_for(lambda m: m.topic.endswith("/status/reason") and b'"reason":null' in m.payload, what="clear")
    finally:
        publisher.close()
    sub.wait_for(lambda m: m.topic == f"{base}/status" and m.payload == b"offline", what="offline on close")


_CRASHER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from support.mqtt_helpers import config, started
    publisher = started(config({host!r}, {port}, device_id={device!r}))
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_last_will_is_offline_when_the_daemon_is_killed(mosquitto: Mosquitto, subscriber_factory) -> None:
    device = unique_id()
    base = f"auricle/{device}"
    sub = subscriber_factory(f"{base}/status")
    tests = str(ROOT / "tests")
    script = _CRASHER.format(tests=tests, host=mosquitto.host, port=mosquitto.port, device=device)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        sub.wait_for(lambda m: m.payload == b"online", what="online")
        proc.kill()  # SIGKILL: no DISCONNECT, the broker must send the will
        proc.wait(timeout=10)
        offline = sub.wait_for(lambda m: m.payload == b"offline", timeout_s=10, what="last will")
        assert offline.topic == f"{base}/status"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_broker_restart_buffers_events_and_republishes_state(mosquitto: Mosquitto, subscriber_factory) -> None:
    cfg = config(mosquitto.host, mosquitto.port, offline_buffer=3)
    base = f"auricle/{cfg.device_id}"
    publisher = started(cfg)
    try:
        publisher.publish_state("siren", True)
        mosquitto.stop()
        wait_until(lambda: not publisher.connected, 10, "publisher noticed the broker left")
        for i in range(5):  # classification goes on: none of these may block or raise
            publisher.publish_event(event("end", event_id=f"e{i}"))
            publisher.publish_level(1000.0 + i, float(i), -20.0)
        publisher.publish_state("dog", True)
        assert publisher._stats()["mqtt"]["dropped_offline"] == 2
        mosquitto.start()
        sub = subscriber_factory(f"{base}/#")
        wait_until(lambda: publisher.connected, 15, "publisher reconnected")
        ids = [as_json(m.payload)["id"] for m in _wait_events(sub, f"{base}/event", 3)]
        assert ids == ["e2", "e3", "e4"]  # oldest dropped, order kept
        wait_until(lambda: bool(sub.messages(f"{base}/state/dog")), 5, "state republished")
        assert sub.messages(f"{base}/state/dog")[-1].payload == b"ON"
        assert sub.messages(f"{base}/state/siren")[-1].payload == b"ON"
        assert sub.messages(f"{base}/status")[-1].payload == b"online"
        assert publisher._stats()["mqtt"]["reconnects"] >= 1
    finally:
        mosquitto.start()
        publisher.close()


def test_pahos_thread_never_waits_on_the_publishers_lock(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """paho calls ``on_disconnect`` holding a lock that ``publish`` takes: a callback that waited on the
    publisher's lock while the daemon's main loop published under it hung both (a busy CI machine did).
    Here the lock is held throughout a broker restart: paho must see the loss and reconnect regardless,
    and the publisher catch up once the lock is free."""
    caplog.set_level(logging.INFO, logger="edge.publish")
    mosquitto.start()
    publisher = started(config(mosquitto.host, mosquitto.port))
    try:
        with publisher._lock:  # as the main loop holds it while it publishes
            mosquitto.stop()
            wait_until(lambda: not publisher._client.is_connected(), 10, "paho noticed the broker left")
            mosquitto.start()
            wait_until(lambda: publisher._client.is_connected(), 15, "paho reconnected")
            assert publisher.connected, "the inbox waits for the lock: the loss is not handled yet"

        def said() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "edge.publish.mqtttrouble"]

        wait_until(lambda: len(said()) >= 3, 10, "the publisher caught up")
        assert [line.split(" to ")[0] for line in said()] == ["MQTT: connected", "MQTT: connection", "MQTT: connected"]
        assert " lost: " in said()[1], said()
        assert publisher.connected and publisher._stats()["mqtt"]["reconnects"] == 1
    finally:
        mosquitto.start()
        publisher.close()


def _wait_events(sub, topic: str, n: int) -> list:
    wait_until(lambda: len(sub.messages(topic)) >= n, 10, f"{n} events on {topic}")
    return sub.messages(topic)


def test_feedback_is_handed_on_and_refusals_are_answered(
    mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    cfg = config(mosquitto.host, mosquitto.port)
    base = f"auricle/{cfg.device_id}"
    results = subscriber_factory(f"{base}/feedback/result")
    handed: list[bytes] = []

    def handler(payload: bytes) -> str | None:
        handed.append(payload)
        if payload == b"boom":
            raise RuntimeError("a bug")
        return None if payload.startswith(b"{") else "feedback: not JSON: ..."

    publisher = started(cfg)
    publisher.set_feedback_handler(handler)
    try:
        send = functools.partial(publish, mosquitto.host, mosquitto.port, f"{base}/feedback")
        send(b'{"id": "latest", "verdict": "wrong"}')  # handed on: its outcome is the handler's to publish
        wait_until(lambda: len(handed) == 1, 5, "handed on")
        publisher.publish_feedback_result("latest", "wrong", True, "event e1 (dog at 12:00:00) wrong: kept ...")
        for payload in (b"boom", b"nope", b'{"id": "e1", "verdict": "right"}', b'{"id": "e1"' + b" " * 600, b""):
            send(payload)
        send(b'{"id": "e2", "verdict": "wrong"}', retain=True)
        send(b"", retain=True)  # clears it, and is no request
        wait_until(lambda: len(results.messages()) == 5, 5, "five answers")
        answers = [as_json(m.payload) for m in results.messages()]
        assert [(a["id"], a["verdict"], a["ok"], a["message"]) for a in answers] == [
            ("latest", "wrong", True, "event e1 (dog at 12:00:00) wrong: kept ..."),
            (None, None, False, "feedback: internal error, nothing kept"),
            (None, None, False, "feedback: not JSON: ..."),
            (None, None, False, "feedback: payload too large (611 bytes, at most 512)"),
            ("e2", "wrong", False, FEEDBACK_RETAINED),
        ]
        assert all(not m.retain for m in results.messages())
        assert handed == [
            b'{"id": "latest", "verdict": "wrong"}',
            b"boom",
            b"nope",
            b'{"id": "e1", "verdict": "right"}',
        ]
    finally:
        publisher.close()


def test_close_is_bounded_when_the_broker_is_gone(mosquitto: Mosquitto) -> None:
    cfg = config(mosquitto.host, 1)  # nothing listens on port 1
    publisher = MqttPublisher(cfg)
    publisher.start(device_info())
    publisher.publish_event(event())
    publisher.close()
    assert not publisher.connected


# --- contract: docs/mqtt.md examples match what the code publishes -------------------------


def _documented() -> dict[str, dict[str, object]]:
    text = DOCS.read_text()
    blocks = re.findall(r"<!-- payload: (\S+) -->\s*```json\n(.*?)```", text, flags=re.S)
    return {name: json.loads(body) for name, body in blocks}


def _published() -> dict[str, dict[str, object]]:
    payloads = Payloads(MODEL_VERSION)
    result = ControlResult(ok=True, id="r1", thresholds={"dog": 0.6}, enabled=("dog",))
    return {
        "event": json.loads(payloads.event(event())),
        "scores": json.loads(payloads.scores(1000.0, 12.0, [("dog", 0.9)])),
        "level": json.loads(payloads.level(1000.0, 12.0, -40.0)),
        "status_reason": json.loads(payloads.reason("microphone lost: stream stopped")),
        "sound": json.loads(payloads.sound(event())),
        "set_result": json.loads(payloads.set_result(result)),
        "feedback_result": json.loads(payloads.feedback_result("e1", "wrong", True, "event e1 (dog at 12:00:00) ...")),
    }


def test_documented_payload_examples_match_the_code() -> None:
    documented = _documented()
    published = _published()
    assert set(published) <= set(documented), "every payload needs a documented example"
    for name, payload in published.items():
        assert set(documented[name]) == set(payload), name
        assert documented[name]["schema"] == payload["schema"] == SCHEMA_VERSION == 2
    assert {"uptime_s", "hops", "dropped_blocks", "mqtt"} <= set(documented["health"])


# --- TLS --------------------------------------------------------------------------------


def _write_ca_and_server(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        else:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = cert(f"{name} CA", ca_key, f"{name} CA", ca_key, True)
    server_cert = cert("127.0.0.1", server_key, f"{name} CA", ca_key, False)
    paths = folder / f"{name}-ca.pem", folder / f"{name}-server.pem", folder / f"{name}-server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    paths[2].write_bytes(key_pem)
    return paths


@pytest.fixture
def tls_broker(tmp_path: Path):
    """mosquitto with a TLS listener and a plain one (for the test's subscriber)."""
    from kit.broker import find_binary, free_port

    ca, cert, key = _write_ca_and_server(tmp_path, "good")
    tls_port, plain_port = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        # as root mosquitto drops to user 'mosquitto', which cannot read pytest's 0700 tmp dirs
        f"user {getpass.getuser()}\nallow_anonymous true\npersistence false\n"
        f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        f"listener {plain_port} 127.0.0.1\n"
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen([find_binary("mosquitto"), "-c", str(conf)], stdout=log, stderr=log)
    try:
        import socket

        def accepting() -> bool:
            if proc.poll() is not None:
                raise RuntimeError((tmp_path / "mosquitto.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", plain_port), timeout=0.5).close()
                socket.create_connection(("127.0.0.1", tls_port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_until(accepting, 10, "TLS mosquitto listening")
        yield {"ca": ca, "tls_port": tls_port, "plain_port": plain_port, "dir": tmp_path}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_tls_connection_with_a_self_signed_ca(tls_broker) -> None:
    from kit.broker import Subscriber

    ports = tls_broker
    tls = {"enabled": True, "ca_file": str(ports["ca"])}
    cfg = config("127.0.0.1", ports["tls_port"], tls=tls)
    sub = Subscriber("127.0.0.1", ports["plain_port"], f"auricle/{cfg.device_id}/#")
    publisher = started(cfg)
    try:
        publisher.publish_event(event())
        got = as_json(sub.wait_for_topic(f"auricle/{cfg.device_id}/event").payload)
        assert got["id"] == "e1"
    finally:
        publisher.close()
        sub.close()


def test_tls_refuses_a_server_that_the_ca_did_not_sign(tls_broker) -> None:
    other_ca, _, _ = _write_ca_and_server(tls_broker["dir"], "other")
    cfg = config("127.0.0.1", tls_broker["tls_port"], tls={"enabled": True, "ca_file": str(other_ca)})
    publisher = MqttPublisher(cfg)
    publisher.start(device_info())
    try:
        with pytest.raises(AssertionError, match="not reached"):
            wait_until(lambda: publisher.connected, 2.0, "connected")
        publisher.publish_event(event())  # kept for later, never raises
        assert publisher._stats()["mqtt"]["buffered"] == 2  # the start on event, and on sound
    finally:
        publisher.close()


@pytest.mark.parametrize(
    ("tls", "cause"),
    [
        ("other CA", r"TLS: the broker's certificate is not trusted \(self-signed certificate in certificate chain\)"),
        # the broker resets the connection, or just closes it
        ("plain", r"the broker closed the connection before answering \(.+; a TLS listener\?\)"),
    ],
)
def test_tls_trouble_is_said(tls_broker, tls: str, cause: str, caplog: pytest.LogCaptureFixture) -> None:
    if tls == "other CA":
        other_ca, _, _ = _write_ca_and_server(tls_broker["dir"], "other")
        cfg = config("127.0.0.1", tls_broker["tls_port"], tls={"enabled": True, "ca_file": str(other_ca)})
    else:  # a client without TLS at a TLS listener
        cfg = config("127.0.0.1", tls_broker["tls_port"])
    caplog.set_level(logging.WARNING, "edge.publish.mqtttrouble")
    publisher = MqttPublisher(cfg)
    publisher.start(device_info())
    try:
        wait_until(lambda: "cannot connect" in caplog.text, 5, "the cause in the log")
    finally:
        publisher.close()
    assert re.search(rf"MQTT: cannot connect to 127\.0\.0\.1:{tls_broker['tls_port']}: {cause}; retrying", caplog.text)
