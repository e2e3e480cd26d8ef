"""The health URL: is the database reachable, and the broker?"""

from __future__ import annotations

from celery import current_app
from django.db import connection
from django.http import HttpRequest, JsonResponse


def health(request: HttpRequest) -> JsonResponse:
    """Return 200 with ``{"database": "ok", "broker": "ok"}``, or 503 naming what is down."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    healthy = all(state in ("ok", "none: tasks run in process") for state in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        return f"error: {error}"
    return "ok"


def _check_broker() -> str:
    if current_app.conf.task_always_eager:
        return "none: tasks run in process"
    try:
        with current_app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=2)
    except Exception as error:
        return f"error: {error}"
    return "ok"
