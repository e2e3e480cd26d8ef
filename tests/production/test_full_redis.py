"""A worker started on a full Redis (``maxmemory``, ``noeviction``, as Heroku's mini plan) drains it.

A full Redis refuses every write that could take memory, and kombu's Redis transport writes as a
worker starts (its queue bindings) and as it takes each message (the backup copy in ``unacked``):
the worker exited at once (``Unrecoverable error: OutOfMemoryError``), and nothing drained the
queue that filled the Redis. ``core.broker`` lets it start and take messages meanwhile.
"""

from __future__ import annotations

import collections
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from core.exceptions import EnqueueFailed
from tests.example_app.importers import Recorder
from tests.production.conftest import Deployment, RedisServer
from tests.support.waiting import wait_until
from tests.support.workers import ProcfileWorker

pytestmark = pytest.mark.django_db(transaction=True)  # the workers must see what the test commits

# Room left for messages above what the empty Redis uses: a few hundred of them, as a small plan's
# 25 MB holds thousands (a message of one id takes about 1.2 KB).
ROOM = 4 * 1024 * 1024
# Each message carries this much text, about a message of a batch of ids.
PADDING = 1000
# Taken off the maxmemory once the queue is full, so that a small write is refused too.
SLACK = 16 * 1024


def fill_with_messages(server: RedisServer) -> list[str]:
    """Send ``Recorder.echo`` calls until the Redis refuses one; return the values of those sent."""
    client: Any = server.client()  # redis-py's stubs type every answer as maybe awaitable
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + ROOM)
    client.config_set("maxmemory-policy", "noeviction")
    values = (f"{n:06d}-{'x' * PADDING}" for n in itertools.count())
    offered: list[str] = []

    def calls() -> Any:
        for value in values:
            offered.append(value)
            yield {"value": value}

    with pytest.raises(EnqueueFailed) as refused:
        Recorder().echo.as_task.send_many(calls())
    assert "command not allowed when used memory > 'maxmemory'" in str(refused.value), refused.value
    sent = offered[: refused.value.sent]
    assert client.llen(settings.CELERY_TASK_DEFAULT_QUEUE) == len(sent)
    # The refused message left some room, which a smaller write could take: none is left, as when
    # the queue took the last of it. The worker's first messages taken make room again.
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - SLACK)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", "a write")  # full: it refuses writes
    return sent


def echoed(log: Path) -> collections.Counter[str]:
    """The values the worker's ``Recorder.echo`` ran with, as it wrote them (``record``), counted."""
    if not log.exists():
        return collections.Counter()
    lines = log.read_text(encoding="utf-8").splitlines()
    return collections.Counter(
        line.removeprefix("echo ").strip("'") for line in lines if line.startswith("echo ")
    )


def test_a_worker_started_on_a_full_redis_starts_drains_the_queue_and_says_so(
    private_redis: RedisServer, deploy: Callable[..., Deployment], settings: Any, tmp_path: Path
) -> None:
    """Before: the worker exited at start-up with ``Unrecoverable error: OutOfMemoryError``."""
    settings.IMPORTER_MAX_QUEUED_MESSAGES = 1_000_000  # the Redis's memory is the only bound
    site = deploy(private_redis.url)
    sent = fill_with_messages(private_redis)
    recorder_log = tmp_path / "recorder.log"
    worker = ProcfileWorker(
        f"full-{os.getpid()}",
        [settings.CELERY_TASK_DEFAULT_QUEUE, settings.WIKIDATA_QUEUE],
        env={**site.environment(), "CELERY_RESULT_BACKEND": "", "RECORDER_LOG": str(recorder_log)},
        log=tmp_path / "worker" / "worker.log",
    )
    site.workers.append(worker)  # killed when the Deployment ends
    worker.launch()  # no ping: its answer is a write, which a full Redis refuses

    def all_echoed() -> bool:
        assert not worker.exited(), f"the worker exited:\n{worker.log_tail()}"
        return sum(echoed(recorder_log).values()) >= len(sent)

    wait_until(all_echoed, timeout=120, why=worker.log_tail)

    # Every message that filled the Redis ran, once.
    assert echoed(recorder_log) == collections.Counter(sent)
    log = worker.log_text()
    assert "started on a full Redis" in log, log
    # It drained the queue, and acknowledged every message (no copy is left to run again).
    broker: Any = private_redis.client()
    wait_until(
        lambda: broker.hlen("unacked") == 0 and broker.zcard("unacked_index") == 0, why=worker.log_tail
    )
    assert broker.llen(settings.CELERY_TASK_DEFAULT_QUEUE) == 0
    # With room again, it answers a ping as any worker does.
    from config.celery_app import app

    assert wait_until(lambda: app.control.ping(destination=[worker.nodename], timeout=1), why=worker.log_tail)
