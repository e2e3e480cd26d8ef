"""``send_many`` keeps at most ``IMPORTER_MAX_QUEUED_MESSAGES`` waiting in the queue, on a real broker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.example_app.importers import Recorder
from tests.production.conftest import Deployment, RedisServer

LIMIT = 40
CALLS = 300


def test_a_sender_of_many_calls_waits_while_the_queue_is_full_and_sends_the_rest_as_they_are_taken(
    private_redis: RedisServer,
    deploy: Callable[..., Deployment],
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: every call went straight to the queue, and a 25 MB Redis filled up and refused the rest."""
    deploy(private_redis.url)
    settings.IMPORTER_MAX_QUEUED_MESSAGES = LIMIT
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    broker: Any = private_redis.client()  # redis-py's stubs type every answer as maybe awaitable
    observed: list[int] = []
    taken: list[bytes] = []

    def consume() -> None:
        """A worker that starts once the queue is full, then takes every message, one at a time."""
        deadline = time.monotonic() + 60
        while broker.llen(queue) < LIMIT - LIMIT // 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        while len(taken) < CALLS and (message := broker.brpop([queue], timeout=30)):
            observed.append(broker.llen(queue) + 1)
            taken.append(message[1])

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    with caplog.at_level(logging.WARNING, logger="core.backlog"):
        sent = Recorder().echo.as_task.send_many({"value": n} for n in range(CALLS))
    worker.join(timeout=60)

    assert sent == CALLS
    assert len(taken) == CALLS
    # Full when the worker started, and never over the bound after.
    assert LIMIT - LIMIT // 10 <= observed[0] <= LIMIT
    assert max(observed) <= LIMIT
    assert "messages wait in queue" in caplog.text
