"""The Problem sensor's reason: every part's problem joined, published only when it changes."""

from __future__ import annotations

import pytest

from edge.daemon.problems import Problems


def test_reasons_of_parts_are_joined_and_published_on_change() -> None:
    sent: list[str | None] = []
    problems = Problems(sent.append)
    audio, model = problems.reporter("audio"), problems.reporter("model")
    model("no usable model: x")
    audio("microphone lost: unplugged")
    audio("microphone lost: unplugged")  # the same again: nothing new to say
    audio(None)
    model(None)
    model(None)
    assert sent == [
        "no usable model: x",
        "microphone lost: unplugged; no usable model: x",  # audio first, whatever the order of arrival
        "no usable model: x",
        None,
    ]


def test_an_unknown_part_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown part 'disk'"):
        Problems(lambda _r: None).reporter("disk")
