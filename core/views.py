"""The health URL: are the database, the broker and the Redis the workers use reachable?

Fixed words for the client; the details go to the log.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse

from .redis_urls import safe_url

__all__ = ("BROKER_TIMEOUT", "CHECK_TIMEOUT", "DOWN", "IN_PROCESS", "OK", "health")

logger = logging.getLogger(__name__)

OK = "ok"
DOWN = "down"
FULL = "full"  # a Redis that answers, but refuses every write
# Within this share of its maxmemory, a Redis that evicts nothing is full: on Heroku's 25 MB,
# 500 KB, some 350 queued messages.
FULL_MARGIN = 0.02
IN_PROCESS = "none: tasks run in process"
# Seconds to connect to the broker and hear from it: the whole answer must take under a second,
# or an uptime check holds a web worker for as long as the broker is away.
BROKER_TIMEOUT = 0.5
# Seconds the answer waits for any check: the database's has no timeout of its own below 2 s.
CHECK_TIMEOUT = 0.8


# ATOMIC_REQUESTS would open a transaction, and so a database connection, before the view runs:
# with the database down, that fails first, and the client gets Django's 500 page instead of JSON.
@transaction.non_atomic_requests
def health(request: HttpRequest) -> JsonResponse:
    """Return 200 with ``{"database": "ok", "broker": "ok"}``, or 503 naming what is ``"down"``.

    The broker is ``"none: tasks run in process"`` when none is configured (that is healthy).
    ``"redis"`` is there when the settings name a Redis besides the broker (``REDIS_URL``, the
    request budget's ``WIKIDATA_LIMITER_URL``, ...): it is ``"ok"`` when each answers through the
    client the importers use, with the project's TLS policy, not only through the broker's, and
    ``"full"`` (a 503) when one is at its ``maxmemory`` and refuses writes.
    Why something is down goes to the log, never to the client: the errors name hosts and ports.
    """
    # The checks run side by side, so that together they take no longer than the slowest, and
    # each is given CHECK_TIMEOUT: a server that takes the connection and never answers (a hung
    # PostgreSQL) is "down" then, while its thread waits out the connection's own timeout
    # (DATABASE_CONNECT_TIMEOUT) without holding the answer back.
    pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="health")
    try:
        futures = {"database": pool.submit(_check_database), "broker": pool.submit(_check_broker)}
        if redis_urls := _redis_urls():
            futures["redis"] = pool.submit(_check_redis, redis_urls)
        deadline = time.monotonic() + CHECK_TIMEOUT
        checks = {name: _result(name, future, deadline) for name, future in futures.items()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    healthy = not {DOWN, FULL} & set(checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)


def _result(name: str, future: Future[str], deadline: float) -> str:
    try:
        return future.result(timeout=max(deadline - time.monotonic(), 0))
    except FutureTimeout:
        logger.warning("Health check: the %s did not answer within %g s", name, CHECK_TIMEOUT)
        return DOWN


def _check_database() -> str:
    # On a thread of the pool: a connection of its own, closed when done.
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        logger.warning("Health check: the database is down: %r", error)
        return DOWN
    finally:
        connection.close()
    return OK


def _check_broker() -> str:
    if current_app.conf.task_always_eager:
        return IN_PROCESS
    configured: Any = current_app.connection_for_write()  # kombu's stubs lack clone(), transport_options
    # A connection of its own with short timeouts (Redis reads its socket timeouts from the
    # transport options; the others use connect_timeout), tried once: kombu's default retries
    # wait 2 s before the second try.
    probe = configured.clone(
        connect_timeout=BROKER_TIMEOUT,
        transport_options={
            **configured.transport_options,
            "socket_connect_timeout": BROKER_TIMEOUT,
            "socket_timeout": BROKER_TIMEOUT,
        },
    )
    try:
        with probe:
            probe.ensure_connection(max_retries=0)
    except Exception as error:
        logger.warning("Health check: the broker is down: %r", error)
        return DOWN
    finally:
        configured.release()
    return OK


def _redis_urls() -> list[str]:
    """The Redis URLs workers use (with a broker configured): the broker's, and every ``*_URL`` setting's."""
    if current_app.conf.task_always_eager:
        return []
    urls = {str(current_app.conf.broker_url or "")}
    urls.update(getattr(settings, name) for name in dir(settings) if name.endswith("_URL"))
    urls.discard(settings.CELERY_BROKER_URL)  # what the app's broker_url was made from, or overrides
    urls.add(str(current_app.conf.broker_url or ""))
    return sorted(url for url in urls if isinstance(url, str) and url.startswith(("redis://", "rediss://")))


def _check_redis(urls: list[str]) -> str:
    for url in urls:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=BROKER_TIMEOUT, socket_timeout=BROKER_TIMEOUT
        )
        try:
            client.ping()
            if _refuses_writes(client):
                logger.warning("Health check: the Redis at %s is full: it refuses writes", safe_url(url))
                return FULL
        except Exception as error:
            logger.warning("Health check: the Redis at %s is down: %r", safe_url(url), error)
            return DOWN
        finally:
            client.close()
    return OK


def _refuses_writes(client: redis.Redis) -> bool:
    """Whether Redis is at its ``maxmemory`` with ``noeviction``: it refuses writes, while PING answers.

    Then nothing can be enqueued, no budget slot taken, and a worker cannot start (kombu's
    restore of unacknowledged messages, at start, takes a lock with a SET). Full means within
    ``FULL_MARGIN`` of the limit: Redis refuses a write when the memory it holds, the command's
    own bytes counted, would pass it, so a tiny probe may pass where a message is refused. A
    server that does not tell (INFO refused, as some hosted ones do) is taken at its word.
    """
    try:
        memory: dict[str, Any] = client.info("memory")  # type: ignore[assignment]  # sync client
    except redis.ResponseError:
        return False
    limit = int(memory.get("maxmemory") or 0)
    if not limit or memory.get("maxmemory_policy") != "noeviction":
        return False
    return int(memory.get("used_memory") or 0) >= limit * (1 - FULL_MARGIN)
