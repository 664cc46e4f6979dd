"""The inbox that carries paho's callbacks over to a thread of ours: order, bounds, a reserve for connection
changes, a bad item that does not end it, and a stop that is bounded."""

from __future__ import annotations

import logging
import threading

import pytest

from edge.publish.mqttinbox import CAPACITY, RESERVED, Inbox


def test_work_runs_in_the_order_handed_over_on_one_thread_of_its_own() -> None:
    inbox = Inbox(name="test-inbox")
    done: list[tuple[str, str]] = []
    inbox.start()
    for i in range(50):
        if i % 10 == 0:
            inbox.change(lambda i=i: done.append((f"change{i}", threading.current_thread().name)))
        else:
            inbox.hand(lambda i=i: done.append((f"message{i}", threading.current_thread().name)), what=f"m{i}")
    inbox.stop()
    assert [what for what, _ in done] == [f"{'change' if i % 10 == 0 else 'message'}{i}" for i in range(50)]
    assert {thread for _, thread in done} == {"test-inbox"}


def test_a_flood_of_messages_is_dropped_and_counted_but_connection_changes_are_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = Inbox()  # not started: nothing is taken out, as when its thread is busy
    ran: list[str] = []
    for i in range(CAPACITY):
        inbox.hand(lambda i=i: ran.append(f"m{i}"), what=f"message {i}")
    assert inbox.dropped == RESERVED
    assert sum("too many messages at once" in r.getMessage() for r in caplog.records) == 1  # once per flood
    for i in range(RESERVED):
        inbox.change(lambda i=i: ran.append(f"c{i}"))
    inbox.change(lambda: ran.append("one too many"))  # beyond the reserve: said, and never blocks
    assert "a connection change was lost" in caplog.records[-1].getMessage()
    inbox.start()
    inbox.stop()
    assert ran == [f"m{i}" for i in range(CAPACITY - RESERVED)] + [f"c{i}" for i in range(RESERVED)]
    assert any("messages were dropped" in r.getMessage() for r in caplog.records)


def test_a_failing_item_is_logged_and_the_next_one_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    inbox = Inbox()
    ran: list[int] = []
    inbox.start()
    inbox.hand(lambda: [][0], what="a bad message")
    inbox.hand(lambda: ran.append(1), what="a good one")
    inbox.stop()
    assert ran == [1]
    assert [r.levelno for r in caplog.records if "error handling" in r.getMessage()] == [logging.ERROR]


def test_stop_is_bounded_when_an_item_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge.publish.mqttinbox.STOP_TIMEOUT_S", 0.2)
    release = threading.Event()
    inbox = Inbox()
    inbox.start()
    inbox.hand(lambda: release.wait(10), what="a slow one")
    stopped = threading.Event()
    stopper = threading.Thread(target=lambda: (inbox.stop(), stopped.set()))
    stopper.start()
    assert stopped.wait(5), "stop() waited on the hung item"
    release.set()
    stopper.join(5)
