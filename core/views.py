"""The health URL: are the database and the broker reachable? Fixed words for the client, details logged."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse

__all__ = ("BROKER_TIMEOUT", "DOWN", "IN_PROCESS", "OK", "health")

logger = logging.getLogger(__name__)

OK = "ok"
DOWN = "down"
IN_PROCESS = "none: tasks run in process"
# Seconds to connect to the broker and hear from it: the whole answer must take under a second,
# or an uptime check holds a web worker for as long as the broker is away.
BROKER_TIMEOUT = 0.5


# ATOMIC_REQUESTS would open a transaction, and so a database connection, before the view runs:
# with the database down, that fails first, and the client gets Django's 500 page instead of JSON.
@transaction.non_atomic_requests
def health(request: HttpRequest) -> JsonResponse:
    """Return 200 with ``{"database": "ok", "broker": "ok"}``, or 503 naming what is ``"down"``.

    The broker is ``"none: tasks run in process"`` when none is configured (that is healthy).
    Why something is down goes to the log, never to the client: the errors name hosts and ports.
    """
    checks = {"database": _check_database(), "broker": _check_broker()}
    healthy = DOWN not in checks.values()
    return JsonResponse(checks, status=200 if healthy else 503)


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        logger.warning("Health check: the database is down: %r", error)
        return DOWN
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
