"""Home Assistant's number and switch, and retained commands, through a real mosquitto."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from support.mqtt_helpers import LABELS, as_json, config, device_info, started, wait_until

from edge.detect.events import EventDetector, EventParams
from edge.detect.set_command import handle_control
from edge.publish.mqtt import MqttPublisher
from kit.broker import Message, Mosquitto, Subscriber, publish

pytestmark = pytest.mark.integration


class Device:
    """A publisher wired to a real event detector, as the daemon wires them."""

    def __init__(self, broker: Mosquitto, protocol: str = "mqttv5") -> None:
        self.detector = EventDetector(LABELS, {"dog": 0.5, "siren": 0.3}, EventParams())
        self.cfg = config(broker.host, broker.port, protocol=protocol)
        self.base = f"auricle/{self.cfg.device_id}"
        self.broker = broker
        self.publisher: MqttPublisher | None = None

    def start(self) -> MqttPublisher:
        info = device_info(thresholds=self.detector.thresholds(), enabled=self.detector.enabled())
        self.publisher = started(self.cfg, info)
        self.publisher.set_control_handler(lambda payload: handle_control(payload, self.detector))
        return self.publisher

    def send(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        publish(self.broker.host, self.broker.port, f"{self.base}/{topic}", payload, retain=retain)

    def wait_subscribed(self, results: Subscriber) -> None:
        """Return once the daemon answers on ``set`` (CONNACK comes before the SUBACK)."""

        def answered() -> bool:
            self.send("set", '{"id": "ping"}')
            return any(b'"id":"ping"' in m.payload for m in results.messages())

        wait_until(answered, 5, "the daemon answers on set")
        results.clear()

    def in_force(self) -> tuple[dict[str, float], tuple[str, ...]]:
        return self.detector.thresholds(), self.detector.enabled()


@pytest.fixture
def device(mosquitto: Mosquitto) -> Iterator[Device]:
    made = Device(mosquitto)
    yield made
    for topic in ("set", "threshold/dog/set", "listen/siren/set"):  # leave no retained command behind
        made.send(topic, b"", retain=True)
    if made.publisher is not None:
        made.publisher.close()


def _on(topic: str, payload: bytes) -> Callable[[Message], bool]:
    return lambda m: m.topic == topic and m.payload == payload


def _result(sub: Subscriber, request_id: str) -> dict[str, object]:
    found = sub.wait_for(lambda m: m.topic.endswith("/set/result") and f'"id":"{request_id}"'.encode() in m.payload)
    return dict(as_json(found.payload))


def test_number_and_switch_drive_the_detector(device: Device, subscriber_factory) -> None:
    sub = subscriber_factory(f"{device.base}/#")
    device.start()
    base = device.base
    sub.wait_for(_on(f"{base}/threshold/dog", b"0.5"), what="threshold/dog at connect")
    sub.wait_for(_on(f"{base}/listen/siren", b"ON"), what="listen/siren at connect")

    device.send("threshold/dog/set", "0.72")  # what Home Assistant's number sends
    sub.wait_for(_on(f"{base}/threshold/dog", b"0.72"), what="threshold/dog follows")
    assert device.detector.thresholds()["dog"] == pytest.approx(0.72)
    assert _result(sub, "threshold/dog")["ok"] is True

    device.send("listen/siren/set", "OFF")  # what Home Assistant's switch sends
    sub.wait_for(_on(f"{base}/listen/siren", b"OFF"), what="listen/siren follows")
    assert device.detector.enabled() == ("dog", "Church bells")
    sub.clear()
    device.send("listen/siren/set", "ON")
    sub.wait_for(_on(f"{base}/listen/siren", b"ON"), what="listen/siren back ON")
    assert device.detector.enabled() == LABELS

    sub.clear()
    device.send("threshold/dog/set", "1.5")  # out of range: refused, the value in force is sent again
    refused = _result(sub, "threshold/dog")
    assert refused["ok"] is False and refused["thresholds"]["dog"] == pytest.approx(0.72)  # type: ignore[index]
    sub.wait_for(_on(f"{base}/threshold/dog", b"0.72"), what="threshold/dog re-sent after a refusal")
    assert device.detector.thresholds()["dog"] == pytest.approx(0.72)

    late = subscriber_factory(f"{base}/+/dog")  # what Home Assistant finds when it (re)subscribes
    wait_until(lambda: len(late.messages()) >= 3, 5, "retained dog topics")
    assert {m.topic.split("/")[-2]: m.payload for m in late.messages() if m.retain} == {
        "state": b"OFF",
        "listen": b"ON",
        "threshold": b"0.72",
    }


def test_a_retained_command_while_connected_is_refused_with_the_values_in_force(
    device: Device, subscriber_factory
) -> None:
    sub = subscriber_factory(f"{device.base}/set/result")
    device.start()
    device.wait_subscribed(sub)  # so the broker forwards it live, not on subscribe
    before = device.in_force()
    device.send("set", '{"id": "kept", "thresholds": {"dog": 0.9}}', retain=True)
    refused = _result(sub, "kept")
    assert refused["ok"] is False and "retained" in str(refused["error"])
    assert (refused["thresholds"], tuple(refused["enabled"])) == before  # type: ignore[arg-type]
    device.send("threshold/dog/set", "0.9", retain=True)
    assert _result(sub, "threshold/dog")["ok"] is False
    device.send("listen/siren/set", "OFF", retain=True)
    assert _result(sub, "listen/siren")["ok"] is False
    assert device.in_force() == before


def test_with_mqtt_311_a_retained_command_while_connected_passes_once(mosquitto: Mosquitto, subscriber_factory) -> None:
    # documented limitation: a 3.1.1 broker forwards a live retained message without its flag
    device = Device(mosquitto, protocol="mqttv311")
    sub = subscriber_factory(f"{device.base}/set/result")
    device.start()
    try:
        device.wait_subscribed(sub)  # else the broker could send it on subscribe, flagged
        device.send("set", '{"id": "live", "thresholds": {"dog": 0.9}}', retain=True)
        assert _result(sub, "live")["ok"] is True
        assert device.publisher is not None
        _cut(device.publisher)  # but never again: on reconnect it arrives flagged
        assert _result(sub, "live")["ok"] is True
        sub.wait_for(lambda m: b'"id":"live"' in m.payload and b'"ok":false' in m.payload, what="refused on reconnect")
    finally:
        device.send("set", b"", retain=True)
        device.publisher.close()  # type: ignore[union-attr]


def test_a_retained_command_is_refused_again_on_every_reconnect(device: Device, subscriber_factory) -> None:
    device.send("set", '{"id": "stale", "disabled": ["dog"]}', retain=True)  # stored before the daemon connects
    device.send("listen/siren/set", "OFF", retain=True)
    sub = subscriber_factory(f"{device.base}/set/result")
    publisher = device.start()
    before = device.in_force()
    assert _result(sub, "stale")["enabled"] == list(LABELS)
    assert _result(sub, "listen/siren")["ok"] is False
    sub.clear()
    _cut(publisher)  # the connection drops; paho reconnects and subscribes again
    refused = _result(sub, "stale")
    assert refused["ok"] is False and refused["thresholds"] == before[0]
    assert _result(sub, "listen/siren")["ok"] is False
    assert device.in_force() == before


def test_clearing_a_retained_command_is_silent(device: Device, subscriber_factory) -> None:
    sub = subscriber_factory(f"{device.base}/set/result")
    device.start()
    device.send("set", '{"id": "kept", "enabled": ["dog"]}', retain=True)
    _result(sub, "kept")
    sub.clear()
    for topic in ("set", "threshold/dog/set", "listen/siren/set"):
        device.send(topic, b"", retain=True)  # mosquitto_pub -r -n: clears, and reaches the daemon empty
    device.send("set", '{"id": "after", "thresholds": {"siren": 0.4}}')
    assert _result(sub, "after")["ok"] is True
    assert [as_json(m.payload)["id"] for m in sub.messages()] == ["after"]  # no answer to the empty messages
    assert device.detector.enabled() == LABELS


def _cut(publisher: MqttPublisher) -> None:
    """Drop the TCP connection under paho (as a network blip would) and wait for the reconnect."""
    connects = publisher._counts["connects"]
    sock = publisher._client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)
    wait_until(lambda: publisher._counts["connects"] > connects and publisher.connected, 15, "reconnected")
