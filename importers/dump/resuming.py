"""A dump import begun, or resumed: the unfinished import of the same dump with the same filters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.db import DatabaseError

from ..console import database_problem
from ..models import ChunkStatus, DumpImport
from .sources import RemoteUnusable, signature_of


def start(
    path: str, filters: dict[str, Any], chunk_dir: Path | None, say: Callable[[str], None]
) -> tuple[DumpImport, int | None]:
    """Resume the unfinished import of this dump file with these filters, or begin a new one.

    Returns the import, and the number of the chunk to cut anew: the last one of a resumed
    import whose read failed (it may have been cut short), else None. ``say`` tells of a resume.

    Raises:
        CommandError: the dump cannot be reached, ``WIKIDATA_DUMP_CHUNK_BYTES`` is too small, or
            the database cannot be used; says why.
    """
    try:
        size, mtime_ns = signature_of(path)
    except RemoteUnusable as error:
        raise CommandError(str(error)) from None
    chunk_bytes = settings.WIKIDATA_DUMP_CHUNK_BYTES
    if chunk_bytes < 1024:
        raise CommandError(f"WIKIDATA_DUMP_CHUNK_BYTES is {chunk_bytes}: it must be at least 1024.")
    try:
        previous = (
            DumpImport.objects.filter(path=str(path), size=size, mtime_ns=mtime_ns, chunk_bytes=chunk_bytes)
            .order_by("-pk")
            .first()
        )
        if previous is not None and previous.filters == filters and not finished(previous):
            return previous, resume(previous, chunk_dir, say)
        created = DumpImport.objects.create(
            path=str(path),
            size=size,
            mtime_ns=mtime_ns,
            filters=filters,
            chunk_bytes=chunk_bytes,
            chunk_dir=str(chunk_dir or ""),
        )
        return created, None
    except DatabaseError as error:
        raise CommandError(database_problem(error)) from None


def resume(dump: DumpImport, chunk_dir: Path | None, say: Callable[[str], None]) -> int | None:
    """Make ``dump`` ready to go on; return the number of the chunk to cut anew, or None."""
    done = dump.chunk_set.filter(status=ChunkStatus.DONE).count()
    say(f"Resuming dump import {dump.pk}: {done} chunks done already are skipped.")
    # The last chunk of a read that failed may have been cut short: it is cut anew.
    recut = dump.chunk_set.order_by("-number").values_list("number", flat=True).first()
    if not dump.split_error:
        recut = None
    # The chunk directory given now is where the chunks not done yet are written again.
    dump.split_error, dump.chunk_dir = "", str(chunk_dir or "")
    DumpImport.objects.filter(pk=dump.pk).update(split_error="", chunk_dir=dump.chunk_dir)
    return recut


def finished(dump: DumpImport) -> bool:
    """Whether the dump was read to its end and every chunk of it is done."""
    if dump.chunks is None or dump.split_error:
        return False
    return not dump.chunk_set.exclude(status=ChunkStatus.DONE).exists()
