"""The Wikidata importer: one Celery task per entity id."""

from __future__ import annotations

from collections.abc import Iterable

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from kombu.exceptions import OperationalError

from core.exceptions import TaskFailed
from core.importer import BaseImporter, as_task

from . import storage
from .entity_ids import InvalidEntityId, normalize
from .fetch import EntityInvalid, EntityMissing, FetchFailed, fetch_entity
from .models import ImportOutcome

Status = ImportOutcome.Status


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
        self, wikidata_ids: Iterable[str], run_id: int | None = None, in_process: bool = False
    ) -> int:
        """Send one ``import_single`` task per id; return how many were sent.

        With ``in_process``, run each here instead (through the same method caller), even
        when a broker is configured. ``wikidata_ids`` may be any iterable when called
        directly, so a file of ids is streamed, never loaded whole.
        """
        sender = self.import_single.as_task
        sent = 0
        for wikidata_id in wikidata_ids:
            if in_process:
                sender.apply(kwargs={"wikidata_id": wikidata_id, "run_id": run_id})
                sent += 1
                continue
            try:
                sender(wikidata_id=wikidata_id, run_id=run_id)
            except OperationalError as error:  # the broker is unreachable, after publish retries
                raise EnqueueFailed(sent, wikidata_id, error) from error
            sent += 1
        return sent

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
        return storage.store(asked_id, fetched, run_id)
