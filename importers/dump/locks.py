"""One command at a time reads a dump: a second ``import_wikidata_dump`` of the same dump is refused.

Two commands cutting one import at once would each write their chunk files for the same chunks,
each pointing the chunk at its own file, and leave the other's behind. On PostgreSQL the lock is
an advisory lock of the command's database session, so it holds across machines and goes with
the session when the command dies; on SQLite (one machine), a ``flock`` on the dump file itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator

from django.db import connection

from .sources import is_url

__all__ = ("DumpBusy", "lock_key", "reading_alone")


class DumpBusy(Exception):
    """Another command is reading this dump now."""


def lock_key(location: str) -> int:
    """The advisory lock's key of a dump: a signed 64-bit number from its path or URL."""
    digest = hashlib.sha256(f"import_wikidata_dump {location}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def reading_alone(location: str) -> Iterator[None]:
    """Hold the dump's lock while the block runs.

    Raises:
        DumpBusy: another command holds it.
    """
    if connection.vendor == "postgresql":
        key = lock_key(location)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            row = cursor.fetchone()
        if not (row and row[0]):
            raise DumpBusy(location)
        try:
            yield
        finally:
            with contextlib.suppress(Exception), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    if is_url(location):
        yield  # SQLite serves one machine; a URL is for many: nothing to hold here
        return
    with open(location, "rb") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DumpBusy(location) from None
        yield
