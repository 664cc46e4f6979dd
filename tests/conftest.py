"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from kit.broker import Mosquitto, Subscriber
from kit.pulse import PulseAudio

# --- Real mosquitto broker and PulseAudio daemon (kit/) ----------------------------------
# Missing binaries fail rather than skip: CI installs them with deploy/setup.sh.

_T = TypeVar("_T")


def _or_fail(make: Callable[[], _T]) -> _T:
    """Construct, turning a missing system binary into a plain test failure."""
    try:
        return make()
    except FileNotFoundError as err:
        message = str(err)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    """A running broker on a free loopback port; tests may stop() and start() it."""
    with _or_fail(Mosquitto) as broker:
        yield broker


@pytest.fixture
def subscriber_factory(mosquitto: Mosquitto) -> Iterator[Callable[..., Subscriber]]:
    """Make Subscribers on the session broker (restarted if a test left it stopped)."""
    mosquitto.start()
    made: list[Subscriber] = []

    def make(topic_filter: str = "#", **kwargs: Any) -> Subscriber:
        subscriber = Subscriber(mosquitto.host, mosquitto.port, topic_filter, **kwargs)
        made.append(subscriber)
        return subscriber

    yield make
    for subscriber in made:
        subscriber.close()


@pytest.fixture(scope="session")
def pulse() -> Iterator[PulseAudio]:
    """A private PulseAudio daemon; record its null sink in a subprocess with pulse.env."""
    with _or_fail(PulseAudio) as daemon:
        yield daemon


# --- End of kit/ fixtures ---------------------------------------------------------------
