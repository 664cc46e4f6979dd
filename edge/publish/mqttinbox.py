"""What paho's network thread hands the publisher, carried out in order on a thread of ours.

paho 2.2 calls ``on_disconnect`` while it holds a lock of its own (a connection that breaks while it
resends the queue after CONNACK), and ``publish`` at QoS 1 takes that lock.  A callback that waited on the
publisher's lock while another thread published under it would wait for ever: the daemon's main loop
stopped in ``publish`` and the connection was never said to be lost (seen on a busy machine in
tests/publish/test_broker_trouble.py).  So paho's callbacks only hand their work here and return; this
thread takes the publisher's lock and publishes, and paho's thread never waits on anything of ours.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

CAPACITY = 256
"""Work items waiting at most (the publisher handles each in well under a millisecond)."""
RESERVED = 32
"""Of those, kept for connection changes: a flood of messages is dropped before one of them is."""
STOP_TIMEOUT_S = 2.0
"""How long :meth:`Inbox.stop` waits for the work already handed over."""

Work = Callable[[], None]


class Inbox:
    """One thread that runs, in the order given, the work paho's callbacks hand over."""

    def __init__(self, name: str = "auricle-mqtt") -> None:
        self._queue: queue.Queue[Work | None] = queue.Queue(maxsize=CAPACITY)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.dropped = 0
        """Messages dropped because the inbox was full (counted, said once per flood)."""

    def start(self) -> None:
        self._thread.start()

    def hand(self, work: Work, *, what: str) -> None:
        """A message's handling: dropped (and counted) when the inbox is nearly full; never blocks."""
        if self._queue.qsize() >= CAPACITY - RESERVED:  # paho's thread is the only one that adds
            if not self.dropped:
                _LOGGER.warning("MQTT: too many messages at once; dropping %s and more until handled", what)
            self.dropped += 1
            return
        self._queue.put_nowait(work)

    def change(self, work: Work) -> None:
        """A connection change: always kept (the reserve is for these); never blocks."""
        try:
            self._queue.put_nowait(work)
        except queue.Full:  # only past RESERVED changes in a row, which paho's backoff rules out
            _LOGGER.error("MQTT: the inbox is full; a connection change was lost")

    def stop(self) -> None:
        """Handle what was handed over (bounded by STOP_TIMEOUT_S), then end the thread."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=STOP_TIMEOUT_S)
        except queue.Full:
            _LOGGER.warning("MQTT: stopping with %d items unhandled", self._queue.qsize())
            return
        self._thread.join(STOP_TIMEOUT_S)

    def _run(self) -> None:
        while (work := self._queue.get()) is not None:
            if self.dropped:
                _LOGGER.warning("MQTT: %d messages were dropped (too many at once)", self.dropped)
                self.dropped = 0
            try:
                work()
            except Exception:  # a bad message must not end the thread that serves every other
                _LOGGER.exception("MQTT: error handling what the broker sent")
