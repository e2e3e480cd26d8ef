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

from .bounds import max_queued_messages

__all__ = ("QueueBound",)

logger = logging.getLogger(__name__)

# How long to wait before asking again how many messages wait, once the queue is full.
POLL_SECONDS = 0.5


class QueueBound:
    """At most ``max_queued_messages()`` messages wait in ``queue`` when each send first calls ``take``.

    ``producer`` is the one the calls go out on: the count is asked on its channel, so that it
    costs no connection of its own (a small Redis plan allows 20 in all). The first message goes
    out unasked: the broker then knows the queue (RabbitMQ closes a channel that asks about a
    queue it does not know).
    """

    def __init__(self, producer: Any, queue: str) -> None:
        self.producer = producer
        self.queue = queue
        self.limit = max_queued_messages()
        self._room = 1

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
        """How many messages wait in the queue now (0 for a queue the broker does not know)."""
        amqp: Any = current_app.amqp  # the stubs lack its queues
        queue = amqp.queues[self.queue]
        try:
            _, count, _ = queue.bind(self.producer.channel).queue_declare(passive=True)
        except ChannelError:  # Redis: an empty queue is no list at all
            return 0
        return int(count)
