"""The Wikidata importer: one Celery task per entity id, or per batch of up to 50 ids."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.result import EagerResult
from django.conf import settings
from kombu.exceptions import OperationalError

from core.exceptions import TaskFailed
from core.importer import BaseImporter, TaskSender, as_task

from . import storage
from .entity_ids import InvalidEntityId, normalize
from .fetch import MAX_BATCH, EntityInvalid, EntityMissing, FetchFailed, fetch_batch, fetch_entity
from .models import ImportOutcome

Status = ImportOutcome.Status


def chunked(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """Yield lists of ``size`` items (the last may be shorter), consuming ``items`` lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class EnqueueFailed(Exception):
    """The broker refused or could not be reached; ``sent`` tasks went out before ``wikidata_id``."""

    def __init__(self, sent: int, wikidata_id: str, error: Exception) -> None:
        super().__init__(f"could not enqueue {wikidata_id} (after {sent} sent): {error}")
        self.sent = sent
        self.wikidata_id = wikidata_id


class WikidataImporter(BaseImporter):
    """Imports Wikidata entities (items, properties, lexemes) by id into ``WikidataEntity``."""

    queue = settings.WIKIDATA_QUEUE

    @as_task
    def import_bulk(
        self,
        wikidata_ids: Iterable[str],
        run_id: int | None = None,
        in_process: bool = False,
        batch_size: int = 1,
    ) -> int:
        """Send one ``import_single`` task per id, or one ``import_batch`` per ``batch_size`` ids.

        Returns how many ids were sent. With ``in_process``, run each task here instead
        (through the same method caller), even when a broker is configured.
        ``wikidata_ids`` may be any iterable when called directly, so a file of ids is
        streamed, never loaded whole.

        Raises:
            ValueError: ``batch_size`` is not between 1 and 50.
            EnqueueFailed: the broker could not be reached; says how many ids went out.
        """
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, not {batch_size}")
        sender: TaskSender[Any] = self.import_single.as_task if batch_size == 1 else self.import_batch.as_task
        sent = 0
        # One producer (one broker connection) for the whole loop, rather than one per message.
        app = sender.app
        sending = not (in_process or app.conf.task_always_eager)
        with app.producer_or_acquire() if sending else nullcontext() as producer:  # type: ignore[union-attr]
            for chunk in chunked(wikidata_ids, batch_size):
                if batch_size == 1:
                    kwargs: dict[str, Any] = {"wikidata_id": chunk[0], "run_id": run_id}
                else:
                    kwargs = {"wikidata_ids": chunk, "run_id": run_id, "in_process": in_process}
                try:
                    if in_process:
                        sender.apply(kwargs=kwargs)
                    else:
                        sender.apply_async(kwargs=kwargs, producer=producer)  # None when eager
                except OperationalError as error:  # the broker is unreachable, after publish retries
                    raise EnqueueFailed(sent, chunk[0], error) from error
                sent += len(chunk)
        return sent

    @as_task
    def import_batch(
        self, wikidata_ids: list[str], run_id: int | None = None, in_process: bool = False
    ) -> dict[str, str]:
        """Fetch up to 50 entities with one request and store them with one upsert.

        Returns the outcome of each id ("sent" for one handed on to a task of its own). Ids
        the response leaves out, and every id when the whole batch fails after retries, fall
        back to one ``import_single`` task each (run here with ``in_process``), so one bad id
        cannot sink the others.
        """
        valid, outcomes = [], {}
        for wikidata_id in wikidata_ids:
            try:
                valid.append(normalize(wikidata_id))
            except InvalidEntityId as error:
                storage.record(wikidata_id[:64], Status.INVALID, run_id, error=str(error))
                outcomes[wikidata_id] = str(Status.INVALID)
        if not valid:
            return outcomes
        try:
            batch = fetch_batch(valid)
        except (FetchFailed, SoftTimeLimitExceeded):
            return outcomes | self._one_by_one(valid, run_id, in_process)
        try:
            stored = storage.store_batch(batch, run_id)
        except Exception as error:
            for asked in [*batch.documents, *batch.missing]:
                storage.record(asked, Status.FAILED, run_id, error=f"could not store: {error!r}")
            raise
        outcomes |= {asked: str(status) for asked, status in stored.items()}
        return outcomes | self._one_by_one(batch.absent, run_id, in_process)

    def _one_by_one(self, wikidata_ids: list[str], run_id: int | None, in_process: bool) -> dict[str, str]:
        """Import each id as a task of its own: sent to the workers, or run here."""
        outcomes = {}
        sender = self.import_single.as_task
        for wikidata_id in wikidata_ids:
            kwargs = {"wikidata_id": wikidata_id, "run_id": run_id}
            result = sender.apply(kwargs=kwargs) if in_process else sender.apply_async(kwargs=kwargs)
            eager = isinstance(result, EagerResult)
            outcomes[wikidata_id] = str(result.result) if eager and result.successful() else "sent"
        return outcomes

    @as_task
    def import_single(self, wikidata_id: str, run_id: int | None = None) -> str:
        """Fetch one entity and store it; record and return the outcome for ``wikidata_id``.

        Raises:
            TaskFailed: the fetch failed for good (after retries); the outcome says why.
        """
        try:
            asked_id = normalize(wikidata_id)
        except InvalidEntityId as error:
            storage.record(wikidata_id[:64], Status.INVALID, run_id, error=str(error))
            return Status.INVALID
        try:
            fetched = fetch_entity(asked_id)
        except SoftTimeLimitExceeded:
            message = "the task ran out of time (CELERY_TASK_SOFT_TIME_LIMIT)"
            storage.record(asked_id, Status.FAILED, run_id, error=message)
            raise TaskFailed(f"{asked_id} failed: {message}") from None
        except EntityMissing as error:
            storage.record(asked_id, Status.MISSING, run_id, error=str(error), attempts=error.attempts)
            return Status.MISSING
        except EntityInvalid as error:
            storage.record(asked_id, Status.INVALID, run_id, error=str(error), attempts=error.attempts)
            return Status.INVALID
        except FetchFailed as error:
            storage.record(asked_id, Status.FAILED, run_id, error=str(error), attempts=error.attempts)
            raise TaskFailed(f"{asked_id} failed: {error}") from None
        try:
            return storage.store(asked_id, fetched, run_id)
        except Exception as error:
            # Nothing was stored (one transaction); say so, unless the database itself is down.
            storage.record(asked_id, Status.FAILED, run_id, error=f"could not store: {error!r}")
            raise
