"""The Wikidata importer: one Celery task per entity id."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from core.exceptions import TaskFailed
from core.importer import BaseImporter, as_task

from . import storage
from .entity_ids import InvalidEntityId, normalize
from .fetch import EntityInvalid, EntityMissing, FetchFailed, fetch_entity
from .models import ImportOutcome

logger = logging.getLogger(__name__)
Status = ImportOutcome.Status


class WikidataImporter(BaseImporter):
    """Imports Wikidata entities (items, properties, lexemes) by id into ``WikidataEntity``."""

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
            else:
                sender(wikidata_id=wikidata_id, run_id=run_id)
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
