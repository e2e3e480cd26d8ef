"""A dump import's progress, as its command shows it: counts summed over its chunks, the bars on
stderr, and the waits for the workers (the spool's, and the last one's)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.management.base import CommandError
from django.db.models import Count, Q, Sum
from rich.progress import Progress

from core.database import UNAVAILABLE, patiently

from ..console import POLL, Waiting
from ..models import ChunkStatus, DumpImport
from .importer import WikidataDumpImporter

MIB = 1024 * 1024


@dataclass
class Totals:
    """The counts of a dump import's chunks, summed."""

    chunks: int = 0
    done: int = 0
    failed: int = 0
    entities: int = 0
    matched: int = 0
    written: int = 0
    unchanged: int = 0
    bad: int = 0
    bytes: int = 0


def totals_of(dump: DumpImport) -> Totals:
    """Sum the counts of the dump import's chunks.

    Raises:
        CommandError: the database stayed unavailable (``core.database.patiently``).
    """

    def counted() -> dict[str, Any]:
        return dump.chunk_set.aggregate(
            chunks=Count("pk"),
            done=Count("pk", filter=Q(status=ChunkStatus.DONE)),
            failed=Count("pk", filter=Q(status=ChunkStatus.FAILED)),
            entities=Sum("entities"),
            matched=Sum("matched"),
            written=Sum("written"),
            unchanged=Sum("unchanged"),
            bad=Sum("bad"),
            bytes=Sum("bytes", filter=Q(status=ChunkStatus.DONE)),
        )

    try:
        figures = patiently(counted)
    except UNAVAILABLE as error:
        raise CommandError(f"Lost the database while importing dump {dump.pk}: {error}") from None
    return Totals(**{name: value or 0 for name, value in figures.items()})


class DumpProgress:
    """The bars of a dump import ("reading" the dump, "importing" its chunks), and the waits."""

    def __init__(self, dump: DumpImport, progress: Progress, timeout: float | None) -> None:
        self.dump = dump
        self.progress = progress
        # Celery's own value: the settings users run name no CELERY_TASK_DEFAULT_QUEUE (only the tests' do).
        queue = WikidataDumpImporter.queue or current_app.conf.task_default_queue
        self.waiting = Waiting(progress, queue, timeout)
        self.reading = progress.add_task("reading", total=dump.size, rate="")
        self.importing = progress.add_task("importing", total=None, rate="")
        self.started = time.monotonic()
        self.last_shown = 0.0

    def say(self, text: str) -> None:
        """Print a line above the bars."""
        self.progress.console.print(text, markup=False)

    def read(self, position: int) -> None:
        """Show the dump read up to ``position``, and, every ``POLL`` seconds, the chunks imported."""
        self.progress.update(self.reading, completed=position)
        if time.monotonic() - self.last_shown >= POLL:
            self.last_shown = time.monotonic()
            self.show()

    def show(self) -> Totals:
        """Show the chunks imported, and the rates; return the totals read."""
        totals, dump = totals_of(self.dump), self.dump
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (
            f"{totals.done}/{dump.chunks if dump.chunks is not None else '?'} chunks  "
            f"{totals.entities / elapsed:,.0f} entities/s  {totals.bytes / MIB / elapsed:,.1f} MB/s"
        )
        self.progress.update(
            self.importing, total=dump.chunks, completed=totals.done + totals.failed, rate=rate
        )
        return totals

    def wait_for_spool(self, number: int) -> None:
        """Pause while ``WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS`` chunk files before chunk ``number`` wait
        for a worker.

        Raises:
            CommandError: a waiting chunk failed (no worker will take it), or the deadline passed.
        """
        dump, limit = self.dump, settings.WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS
        spooled = (
            dump.chunk_set.filter(number__lt=number).exclude(status=ChunkStatus.DONE).exclude(file=dump.path)
        )
        while spooled.count() >= limit:
            # A failed chunk keeps its file, for a later run to resume, and no worker will take
            # it: waiting for it would be waiting for ever, saying nothing.
            failed = spooled.filter(status=ChunkStatus.FAILED).order_by("number").first()
            if failed is not None:
                raise CommandError(
                    f"Stopped cutting dump import {dump.pk}: {limit} chunk files wait "
                    f"(WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS) and chunk {failed.number} failed: {failed.error}\n"
                    "Fix that, then run the same command again to resume the import."
                )
            self.check_deadline()
            self.waiting.note(self.show().done)
            self.waiting.pause()

    def wait_for_chunks(self) -> None:
        """Show the progress until every chunk is done or failed.

        Raises:
            CommandError: the deadline passed first, or the database stayed unavailable.
        """
        while True:
            totals = self.show()
            if totals.done + totals.failed >= (self.dump.chunks or 0):
                return
            self.waiting.note(totals.done)
            self.check_deadline()
            self.waiting.pause()

    def check_deadline(self) -> None:
        if self.waiting.expired():
            totals, dump = totals_of(self.dump), self.dump
            left = (dump.chunks if dump.chunks is not None else totals.chunks) - totals.done - totals.failed
            unread = "" if dump.chunks is not None else ", and the dump is not read to its end"
            raise CommandError(
                f"Gave up waiting: {left} chunks of dump import {dump.pk} are not finished{unread} (the "
                "workers go on; run the same command again to resume it)."
            )
