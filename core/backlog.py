"""A bound on the messages waiting in a queue: a sender of many calls pauses while the workers catch up.

A Redis broker keeps its queues in memory, and a small one is small: Heroku's mini Key-Value
Store holds 25 MB (``noeviction``: a full Redis refuses every write, the request budget's too).
A command sending a million calls would fill it long before the workers drained it. So
``TaskSender.send_many`` sends while fewer than ``IMPORTER_MAX_QUEUED_MESSAGES`` wait in the
queue, and otherwise waits for the workers to take some; asking the broker how many wait costs a
round trip per ``limit - waiting`` calls sent, not one per call.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import current_app
from kombu.exceptions import ChannelError  # type: ignore[attr-defined]  # not in the stubs

from .limits import max_queued_messages

__all__ = ("QueueBound",)

logger = logging.getLogger(__name__)

# How long to wait before asking again how many messages wait, once the queue is full.
POLL_SECONDS = 0.5


class QueueBound:
    """At most ``max_queued_messages()`` messages wait in ``queue`` when each send first calls ``take``.

    ``connection`` is the broker connection the calls go out on; the count is asked for on a
    channel of its own, so that a refused question never spoils the producer's channel.
    """

    def __init__(self, connection: Any, queue: str) -> None:
        self.connection = connection
        self.queue = queue
        self.limit = max_queued_messages()
        self._room = 0
        self._channel: Any = None

    def take(self) -> None:
        """Return once one more message may be sent, waiting while the queue is full."""
        if self._room > 0:
            self._room -= 1
            return
        waiting = self.waiting()
        announced = False
        started = time.monotonic()
        # Refill only once a tenth of the bound is free: not one round trip per message taken.
        while self.limit - waiting < max(1, self.limit // 10):
            if not announced:
                logger.warning(
                    "%d messages wait in queue %r (IMPORTER_MAX_QUEUED_MESSAGES is %d): sending the "
                    "rest as the workers take them; this command stays until everything is sent",
                    waiting,
                    self.queue,
                    self.limit,
                )
                announced = True
            time.sleep(POLL_SECONDS)
            waiting = self.waiting()
        if announced:
            logger.warning(
                "Sending again after %.0f s: %d messages wait", time.monotonic() - started, waiting
            )
        self._room = self.limit - waiting - 1

    def waiting(self) -> int:
        """How many messages wait in the queue now (0 for a queue the broker does not know yet)."""
        amqp: Any = current_app.amqp  # the stubs lack its queues
        queue = amqp.queues[self.queue]
        try:
            if self._channel is None:
                self._channel = self.connection.channel()
            _, count, _ = queue.bind(self._channel).queue_declare(passive=True)
        except (ChannelError, *self.connection.channel_errors):  # no such queue yet (AMQP: a 404)
            self._close_channel()
            return 0
        return int(count)

    def close(self) -> None:
        """Close the channel the counts were asked on."""
        self._close_channel()

    def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            try:
                channel.close()
            except Exception:  # closing a channel the broker already closed
                logger.debug("Closing the queue-count channel failed", exc_info=True)
