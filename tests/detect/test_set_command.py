"""Runtime control on ``set``: validation, fuzzing, and the round trip over a real broker."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.mqtt_helpers import LABELS, as_json, config, started

from edge.detect.events import EventDetector, EventParams
from edge.detect.set_command import ControlChange, ControlResult, entity_command, handle_control, parse_control
from edge.schema import ConfigError
from kit.broker import Mosquitto, publish


def detector() -> EventDetector:
    return EventDetector(LABELS, {}, EventParams())


def test_a_good_request_is_parsed() -> None:
    change = parse_control(b'{"id": "r1", "thresholds": {"dog": 0.6}, "enabled": ["dog", "siren"]}', LABELS)
    assert change == ControlChange(id="r1", thresholds={"dog": 0.6}, enabled=("dog", "siren"))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe", "set: payload is not UTF-8 (byte 0)"),
        (b"{not json", "set: payload is not valid JSON: Expecting property name enclosed in double quotes"),
        (b"[1, 2]", "set: <top>: expected a mapping, got [1, 2]"),
        (b'{"treshold": {}}', "set: treshold: unknown key (did you mean 'thresholds'?)"),
        (b'{"thresholds": {"dog": 1.5}}', "set: thresholds.dog: expected a number 0..1 (score), got 1.5"),
        (b'{"thresholds": {"dog": "high"}}', "set: thresholds.dog: expected a number 0..1 (score), got 'high'"),
        (b'{"thresholds": {"dog": NaN}}', "set: payload is not valid JSON: NaN is not allowed"),
        (b'{"enabled": "dog"}', "set: enabled: expected a list of strings, got 'dog'"),
        (b'{"enabled": ["dgo"]}', "set: enabled: unknown label 'dgo' (did you mean 'dog'?)"),
        (b'{"disabled": [1]}', "set: disabled[0]: expected a string, got 1"),
        (b"{}", "set: <top>: nothing to change: give thresholds, enabled, disabled or listen"),
        (b'{"listen": {"dog": "on"}}', "set: listen.dog: expected a boolean, got 'on'"),
        (b'{"listen": {"cat": true}}', "set: listen: unknown label 'cat'"),
        (b'{"id": "' + b"x" * 65 + b'", "enabled": []}', "set: <top>: id: at most 64 characters"),
        (b"[" * 20000, "set: payload of 20000 bytes exceeds 16384"),
        (b"[" * 10000 + b"]" * 10000, "set: payload of 20000 bytes exceeds 16384"),
        (b"[" * 8000 + b"]" * 8000, "set: payload is nested too deeply"),
    ],
)
def test_bad_requests_give_one_line(payload: bytes, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_control(payload, LABELS)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_a_bad_request_changes_nothing() -> None:
    det = detector()
    before = (det.thresholds(), det.enabled())
    result = handle_control(b'{"id": "r9", "thresholds": {"dog": 0.7}, "enabled": ["nope"]}', det)
    assert not result.ok
    assert result.id == "r9"
    assert result.error == "set: enabled: unknown label 'nope'"
    assert (det.thresholds(), det.enabled()) == before
    good = handle_control(b'{"thresholds": {"dog": 0.7}, "disabled": ["siren"]}', det)
    assert good.ok and good.error is None
    assert good.thresholds["dog"] == pytest.approx(0.7)
    assert good.enabled == ("dog", "Church bells")


def test_listen_switches_single_labels() -> None:
    det = detector()
    assert handle_control(b'{"listen": {"siren": false}}', det).enabled == ("dog", "Church bells")
    assert handle_control(b'{"enabled": ["dog"]}', det).enabled == ("dog",)
    assert handle_control(b'{"listen": {"siren": true}}', det).enabled == ("dog", "siren")  # joins the allow list
    # switching the last labels off never empties the allow list (which would mean every label)
    assert handle_control(b'{"listen": {"dog": false, "siren": false}}', det).enabled == ()
    assert handle_control(b'{"listen": {"Church bells": true}}', det).enabled == ("Church bells",)


@pytest.mark.parametrize(
    ("kind", "payload", "value"),
    [
        ("threshold", b"0.6", 0.6),
        ("threshold", b"1", 1),
        ("threshold", b" 0.25\n", 0.25),
        ("threshold", b"NaN", "NaN"),
        ("threshold", b"[0.5]", "[0.5]"),
        ("threshold", b"high", "high"),
        ("listen", b"ON", True),
        ("listen", b"OFF", False),
        ("listen", b"on", "on"),
    ],
)
def test_entity_commands_become_set_requests(kind: str, payload: bytes, value: object) -> None:
    key = "thresholds" if kind == "threshold" else "listen"
    request = json.loads(entity_command(kind, "dog", payload))  # type: ignore[arg-type]
    assert request == {"id": f"{kind}/dog", key: {"dog": value}}


@pytest.mark.parametrize(
    ("kind", "payload", "error"),
    [
        ("threshold", b"1.5", "set: thresholds.dog: expected a number 0..1 (score), got 1.5"),
        ("threshold", b"NaN", "set: thresholds.dog: expected a number 0..1 (score), got 'NaN'"),
        ("threshold", b"\xff", "set: thresholds.dog: expected a number 0..1 (score), got '\ufffd'"),
        ("listen", b"MAYBE", "set: listen.dog: expected a boolean, got 'MAYBE'"),
    ],
)
def test_bad_entity_commands_are_refused_like_set(kind: str, payload: bytes, error: str) -> None:
    det = detector()
    before = (det.thresholds(), det.enabled())
    result = handle_control(entity_command(kind, "dog", payload), det)  # type: ignore[arg-type]
    assert (result.ok, result.error, result.id) == (False, error, f"{kind}/dog")
    assert (det.thresholds(), det.enabled()) == before


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["threshold", "listen"]), st.binary(max_size=100))
def test_fuzz_entity_commands(kind: str, payload: bytes) -> None:
    _check_never_crashes(entity_command(kind, "siren", payload))  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(["id", "thresholds", "enabled", "disabled", "listen", "other"])
label_like = st.sampled_from([*LABELS, "dgo", "", "x" * 100])
requests = st.dictionaries(
    keys,
    json_values
    | st.dictionaries(label_like, st.floats() | st.integers() | st.text(max_size=3), max_size=3)
    | st.lists(label_like | json_values, max_size=4),
    max_size=4,
)


def _check_never_crashes(payload: bytes) -> None:
    det = detector()
    before = (det.thresholds(), det.enabled())
    result = handle_control(payload, det)
    assert isinstance(result, ControlResult)
    if not result.ok:
        assert result.error is not None and "\n" not in result.error
        assert (det.thresholds(), det.enabled()) == before
    assert set(det.thresholds()) == set(LABELS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(payload: bytes) -> None:
    _check_never_crashes(payload)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
@example({"listen": {"\n": None}})  # a label "\n" once gave a two-line error (about 1 run in 6 found it)
@example({"thresholds": {"dog\r\nsiren": "x"}})
def test_fuzz_structured_requests(request: dict[str, object]) -> None:
    _check_never_crashes(json.dumps(request).encode())


@pytest.mark.integration
def test_set_round_trip_over_the_broker(mosquitto: Mosquitto, subscriber_factory) -> None:
    cfg = config(mosquitto.host, mosquitto.port)
    base = f"auricle/{cfg.device_id}"
    det = detector()
    sub = subscriber_factory(f"{base}/set/result")
    # a command retained before the daemon starts must not be applied on (re)connect
    publish(mosquitto.host, mosquitto.port, f"{base}/set", b'{"id": "keep", "enabled": ["siren"]}', retain=True)
    publisher = started(cfg)
    publisher.set_control_handler(lambda payload: handle_control(payload, det))
    try:
        refused = as_json(sub.wait_for(lambda m: b"retained" in m.payload, what="retained refusal").payload)
        assert refused["ok"] is False
        assert det.enabled() == LABELS
        for payload in (b"\x00\xff garbage", b"[" * 9000, b'{"thresholds": {"dog": 2}}'):
            publish(mosquitto.host, mosquitto.port, f"{base}/set", payload)
        publish(mosquitto.host, mosquitto.port, f"{base}/set", b'{"id": "ok1", "thresholds": {"dog": 0.8}}')
        reply = as_json(sub.wait_for(lambda m: b'"ok1"' in m.payload, what="ok reply").payload)
        assert reply["ok"] is True and reply["thresholds"]["dog"] == pytest.approx(0.8)
        errors = [as_json(m.payload) for m in sub.messages() if b'"ok":false' in m.payload]
        assert len(errors) == 4 and all(e["error"].startswith("set: ") for e in errors)  # + the retained one
        assert det.thresholds()["dog"] == pytest.approx(0.8)
        assert publisher.connected
    finally:
        publish(mosquitto.host, mosquitto.port, f"{base}/set", b"", retain=True)  # clear the retained command
        publisher.close()


@pytest.mark.integration
def test_a_handler_that_raises_does_not_kill_the_client(mosquitto: Mosquitto, subscriber_factory) -> None:
    cfg = config(mosquitto.host, mosquitto.port)
    base = f"auricle/{cfg.device_id}"
    sub = subscriber_factory(f"{base}/set/result")
    publisher = started(cfg)

    def broken(_payload: bytes) -> ControlResult:
        raise RuntimeError("boom")

    publisher.set_control_handler(broken)
    try:
        publish(mosquitto.host, mosquitto.port, f"{base}/set", b"{}")
        reply = as_json(sub.wait_for_topic(f"{base}/set/result").payload)
        assert reply == reply | {"ok": False, "error": "set: internal error, nothing changed"}
        publisher.publish_state("dog", True)  # the client still works afterwards
        assert publisher.connected
    finally:
        publisher.close()
