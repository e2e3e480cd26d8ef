"""The database being unreachable: a reason to wait and try again, never to lose a call."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

__all__ = ("UNAVAILABLE", "patiently")

T = TypeVar("T")

# What Django raises when the database refuses or drops the connection, or (SQLite) stays
# locked past its timeout: errors of the moment, not of the data.
UNAVAILABLE = (OperationalError, InterfaceError)


def patiently(operation: Callable[[], T], wait: float | None = None) -> T:
    """Return ``operation()``, trying again while the database is unavailable, for up to ``wait`` s.

    Between tries the connection is closed (the next query opens a new one) and the wait doubles,
    from 0.1 s to 5 s. ``wait`` defaults to ``settings.IMPORTER_DATABASE_WAIT``. Inside a
    transaction nothing is retried: the transaction is lost with its connection.

    Raises:
        OperationalError, InterfaceError: the database was still unavailable after ``wait`` s.
    """
    deadline = time.monotonic() + (settings.IMPORTER_DATABASE_WAIT if wait is None else wait)
    pause = 0.1
    while True:
        try:
            return operation()
        except UNAVAILABLE:
            if connection.in_atomic_block or time.monotonic() + pause > deadline:
                raise
        connection.close()
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
