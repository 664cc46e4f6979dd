"""The "That wasn't it" button and the feedback blueprint in a real Home Assistant (tools/ha) on a real broker.

The device side is auricle's own MQTT publisher (discovery, ``sound``, the ``feedback`` command it hands on).
What is checked is what a user's Home Assistant does with it:

- the device page has the *That wasn't it* button, and pressing it (``button.press``, as the UI does) puts
  ``{"id": "latest", "verdict": "wrong"}`` on the device's ``feedback`` topic;
- the *Sound* event entity's attributes carry the event's ``id``;
- the blueprint (deploy/ha/auricle_feedback.yaml, as docs/home-assistant.md shows it) loads as an automation;
  a sound sends a notification whose Right and Wrong actions carry the event id, and the Companion app's
  ``mobile_app_notification_action`` event, fired through the REST API, puts the verdict on ``feedback``.
  The phone is a script standing in for ``notify.mobile_app_<phone>`` that publishes what it was sent.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from support.mqtt_helpers import config, device_info, started, unique_id, wait_until
from support.shared import ROOT, shared_dir

from edge.detect.events import Event
from edge.publish.mqtt import MqttPublisher
from kit.broker import Mosquitto, Subscriber
from kit.homeassistant import HomeAssistant

pytestmark = pytest.mark.integration
BLUEPRINT = ROOT / "deploy" / "ha" / "auricle_feedback.yaml"


@pytest.fixture(scope="module")
def home_assistant(mosquitto: Mosquitto) -> Iterator[HomeAssistant]:
    if not HomeAssistant.installed():
        pytest.skip(f"no Home Assistant here: run {shared_dir() / 'tools' / 'ha' / 'setup.sh'} once")
    mosquitto.start()
    with HomeAssistant(shared_dir() / "tools" / "ha", mosquitto.port) as ha:
        yield ha


def test_the_docs_show_the_blueprint_file_as_it_is() -> None:
    text = (ROOT / "docs" / "home-assistant.md").read_text()
    shown = re.findall(r"```yaml\n(blueprint:.*?)```", text, flags=re.S)
    assert shown == [BLUEPRINT.read_text()]
    assert str(BLUEPRINT.relative_to(ROOT)) in text


def _sound(event_id: str, label: str = "dog") -> Event:
    return Event(
        id=event_id, label=label, kind="start", start=1718000000.0, end=None, start_offset_s=12.0,
        end_offset_s=None, peak=0.93, mean=0.8, hops=3, t_audio=1718000000.2, offset_s=12.2,
    )  # fmt: skip


def _heard(publisher: MqttPublisher, seen: Callable[[str], bool], what: str, tries: int = 20) -> str:
    """Publish sounds until ``seen(id)`` says one arrived: Home Assistant subscribes to a new entity's or
    automation's topic about a second after it appears, and a sound before that is lost (not retained)."""
    for _ in range(tries):
        event_id = uuid.uuid4().hex
        publisher.publish_event(_sound(event_id))
        if seen(event_id):
            return event_id
    raise AssertionError(f"{what}: not seen after {tries} sounds")


def _eventually(check: Callable[[], Any], timeout_s: float) -> bool:
    try:
        wait_until(lambda: bool(check()), timeout_s, "")
    except AssertionError:
        return False
    return True


def test_the_button_and_the_sound_events_id(
    home_assistant: HomeAssistant, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    ha = home_assistant
    device = unique_id()
    cfg = config(mosquitto.host, mosquitto.port, device_id=device)
    base = f"auricle/{device}"
    commands = subscriber_factory(f"{base}/feedback")
    handed: list[bytes] = []

    def hand_on(payload: bytes) -> None:
        handed.append(payload)

    publisher = started(cfg, device_info(feedback=True))
    publisher.set_feedback_handler(hand_on)
    try:
        button = ha.wait_state("button.", device, lambda s: s["state"] != "unavailable", 60)
        assert button["attributes"]["friendly_name"] == f"auricle {device} That wasn't it"
        ha.call("button", "press", {"entity_id": button["entity_id"]})
        pressed = commands.wait_for(lambda m: m.topic == f"{base}/feedback", 10, "the button's command")
        assert json.loads(pressed.payload) == {"id": "latest", "verdict": "wrong"} and not pressed.retain
        wait_until(lambda: handed == [pressed.payload], 5, "the publisher hands it on")

        ha.wait_state("event.", device, lambda s: True, 30)

        def shown(event_id: str) -> bool:
            def has_it() -> bool:
                return any(s["attributes"].get("id") == event_id for s in ha.states(device))

            return _eventually(has_it, 2)

        event_id = _heard(publisher, shown, "the Sound event entity")
        sound = ha.wait_state("event.", device, lambda s: s["attributes"].get("id") == event_id, 5)
        assert sound["attributes"]["event_type"] == "dog" and sound["attributes"]["name"] == "Dog"
    finally:
        publisher.close()


def _load_blueprint(ha: HomeAssistant, prefix: str, phone: str, device: str) -> None:
    """The blueprint as a user imports it, one automation from it, and a script as the phone; reloaded."""
    folder = ha.config_dir / "blueprints" / "automation" / "auricle"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BLUEPRINT, folder / BLUEPRINT.name)
    automation = {
        "id": f"auricle_feedback_{device}",
        "alias": f"auricle feedback {device}",
        "use_blueprint": {
            "path": f"auricle/{BLUEPRINT.name}",
            "input": {"topic_prefix": prefix, "notify_service": f"script.phone_{device}"},
        },
    }
    sent = "{{ {'title': title, 'message': message, 'data': data} | to_json }}"
    script = {"sequence": [{"service": "mqtt.publish", "data": {"topic": phone, "payload": sent}}]}
    (ha.config_dir / "automations.yaml").write_text(yaml.safe_dump([automation]))
    (ha.config_dir / "scripts.yaml").write_text(yaml.safe_dump({f"phone_{device}": script}))
    with (ha.config_dir / "configuration.yaml").open("a") as f:
        f.write("automation: !include automations.yaml\nscript: !include scripts.yaml\n")
    ha.call("script", "reload")
    ha.call("automation", "reload")


def test_the_blueprint_asks_the_phone_and_sends_the_verdict(
    home_assistant: HomeAssistant, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    ha = home_assistant
    device = unique_id()
    prefix, phone = f"auricle/{device}", f"test/{device}/phone"
    _load_blueprint(ha, prefix, phone, device)
    try:
        ha.wait_state(f"automation.auricle_feedback_{device}", "", lambda s: s["state"] == "on", 30)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{ha.log_tail()}") from None
    notes = subscriber_factory(phone)
    answers = subscriber_factory(f"{prefix}/feedback")
    publisher = started(config(mosquitto.host, mosquitto.port, device_id=device), device_info(feedback=True))
    try:

        def notified(event_id: str) -> bool:
            return _eventually(lambda: any(event_id in m.text for m in notes.messages()), 2)

        event_id = _heard(publisher, notified, "the blueprint's notification")
        note = json.loads(next(m for m in notes.messages() if event_id in m.text).payload)
        actions = {a["title"]: a["action"] for a in note["data"]["actions"]}
        assert actions == {"Right": f"AURICLE:{prefix}:right:{event_id}", "Wrong": f"AURICLE:{prefix}:wrong:{event_id}"}
        assert note["title"] == "Dog" and "auricle heard dog (score 0.93)" in note["message"]

        ha.fire("mobile_app_notification_action", {"action": actions["Wrong"]})
        wrong = answers.wait_for(lambda m: True, 15, "the Wrong answer on feedback")
        assert json.loads(wrong.payload) == {"id": event_id, "verdict": "wrong"} and not wrong.retain

        ha.fire("mobile_app_notification_action", {"action": f"AURICLE:auricle/elsewhere:wrong:{event_id}"})
        ha.fire("mobile_app_notification_action", {"action": "SOMETHING_ELSE"})
        ha.fire("mobile_app_notification_action", {"action": actions["Right"]})
        answers.wait_for(lambda m: b"right" in m.payload, 15, "the Right answer on feedback")
        said = [json.loads(m.payload) for m in answers.messages()]
        assert said == [{"id": event_id, "verdict": "wrong"}, {"id": event_id, "verdict": "right"}]
    finally:
        publisher.close()
