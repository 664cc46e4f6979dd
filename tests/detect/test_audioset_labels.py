"""The AudioSet head's rules on scripted score streams, through the real EventDetector: the veto silences
event labels but never exempt or optional ones, and optional labels off by default raise no event until
a user switches them on (config, ``set``, Home Assistant's switch)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.detect.events import EventDetector, EventParams
from edge.detect.set_command import ControlChange
from edge.model.audioset import AUDIOSET_CLASSES, AudiosetHead, AudiosetLabel, HeadScorer, Veto
from edge.model.outputs import OutputSpec
from edge.schema import ConfigError, build

SPEECH, SMOKE = 0, 393
EVENT_LABELS = ("dog", "coughing")
HEAD = AudiosetHead(
    output=OutputSpec(dtype="int8", scale=1 / 256, zero_point=-128),
    veto=Veto(classes=(SPEECH,), threshold=0.6, exempt=("coughing",)),
    labels=(
        AudiosetLabel(name="smoke_alarm", classes=(SMOKE, 394), threshold=0.5, enabled_by_default=True),
        AudiosetLabel(name="speech", classes=(SPEECH,), threshold=0.5),
    ),
)
LABELS = (*EVENT_LABELS, *HEAD.names)
DT = 0.1


def detector(**params: object) -> EventDetector:
    events = build(EventParams, {"hold_s": 0.2, **params}, "test")
    thresholds = {"dog": 0.5, "coughing": 0.5} | HEAD.thresholds
    return EventDetector(LABELS, thresholds, events, off_by_default=HEAD.off_by_default)


def hop(dog: float = 0.0, coughing: float = 0.0, speech: float = 0.0, smoke: float = 0.0) -> tuple[np.ndarray, ...]:
    """One hop's outputs as the model gives them: event label scores and the 521 AudioSet scores."""
    audioset = np.zeros(AUDIOSET_CLASSES, dtype=np.float32)
    audioset[SPEECH], audioset[SMOKE] = speech, smoke
    return np.array([dog, coughing], dtype=np.float32), audioset


def run(det: EventDetector, hops: list[tuple[np.ndarray, ...]], t0: float = 0.0) -> list[tuple[str, str, float]]:
    """(label, kind, t) of every event, the scores combined per hop as the Classifier does."""
    scorer, found = HeadScorer(HEAD, EVENT_LABELS), []
    for i, (event_scores, audioset) in enumerate(hops):
        t = round(t0 + i * DT, 6)
        found += [(e.label, e.kind, t) for e in det.update(scorer.combine(event_scores, audioset), t)]
    return found


def test_the_veto_silences_a_label_only_on_the_hops_a_veto_class_is_high() -> None:
    scorer = HeadScorer(HEAD, EVENT_LABELS)
    assert scorer.combine(*hop(dog=0.9, coughing=0.8, speech=0.6)).tolist() == pytest.approx([0.0, 0.8, 0.0, 0.6])
    assert scorer.combine(*hop(dog=0.9, coughing=0.8, speech=0.59)).tolist() == pytest.approx([0.9, 0.8, 0.0, 0.59])
    assert scorer.combine(*hop(smoke=0.7)).tolist() == pytest.approx([0.0, 0.0, 0.7, 0.0])  # max of 393, 394
    det = detector()
    talking = [hop(dog=0.9, coughing=0.9, speech=0.9, smoke=0.9)] * 10
    quiet = [hop()] * 5
    found = run(det, talking + quiet + [hop(dog=0.9)] * 10)
    starts = [(label, t) for label, kind, t in found if kind == "start"]
    # under speech: coughing (exempt) and smoke_alarm (optional, on by default) start, dog is vetoed and
    # speech is off by default; dog starts once the speech is over
    assert [label for label, _ in starts] == ["coughing", "smoke_alarm", "dog"]
    assert starts[-1][1] >= 1.5


def test_an_optional_label_switched_on_is_never_vetoed() -> None:
    det = detector()
    assert det.enabled() == ("dog", "coughing", "smoke_alarm")
    talking = [hop(dog=0.9, speech=0.9)] * 10
    assert run(det, talking) == []
    det.apply(ControlChange(listen={"speech": True}))  # Home Assistant's switch
    assert det.enabled() == ("dog", "coughing", "smoke_alarm", "speech")
    found = run(det, talking, t0=1.0)
    assert [(label, kind) for label, kind, _ in found] == [("speech", "start")]


def test_config_enabled_switches_an_optional_label_on_without_narrowing() -> None:
    assert detector(enabled=["speech"]).enabled() == LABELS  # adds speech to every label
    assert detector(enabled=["dog", "speech"]).enabled() == ("dog", "speech")  # an allow list as ever
    assert detector(enabled=["dog"]).enabled() == ("dog",)
    assert detector(disabled=["smoke_alarm"]).enabled() == ("dog", "coughing")
    with pytest.raises(ConfigError, match="events: enabled: unknown label 'speach'"):
        detector(enabled=["speach"])


def test_set_commands_switch_optional_labels_on_and_off() -> None:
    det = detector()
    det.apply(ControlChange(enabled=("speech",)))
    assert det.enabled() == LABELS
    det.apply(ControlChange(listen={"speech": False}))
    assert det.enabled() == ("dog", "coughing", "smoke_alarm")
    det.apply(ControlChange(listen={"speech": True}))
    assert "speech" in det.enabled()
    det.apply(ControlChange(enabled=()))  # the allow list emptied: back to the defaults
    assert det.enabled() == ("dog", "coughing", "smoke_alarm")
    det.apply(ControlChange(listen={"dog": False, "speech": True}))
    assert det.enabled() == ("coughing", "smoke_alarm", "speech")
    det.apply(ControlChange(listen={"dog": True}))  # speech on the allow list does not make it narrow
    assert det.enabled() == LABELS
    det.apply(ControlChange(enabled=("dog",), listen={"coughing": True}))  # a narrowing list grows as ever
    assert det.enabled() == ("dog", "coughing")


def test_without_labels_off_by_default_nothing_changes() -> None:
    plain = EventDetector(LABELS, {}, build(EventParams, {"enabled": ["speech"]}, "test"))
    assert plain.enabled() == ("speech",)
    with pytest.raises(ConfigError, match=r"bundle: audioset\.labels: unknown label 'barking'"):
        EventDetector(LABELS, {}, EventParams(), off_by_default=("barking",))
