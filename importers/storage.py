"""Writing fetched entities and outcomes: one transaction each, safe when two tasks race."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .documents import Batch, Fetched, summarize
from .models import ImportOutcome, ImportRun, WikidataEntity, WikidataRedirect

Status = ImportOutcome.Status

ENTITY_FIELDS = ["entity_type", "label", "description", "data", "lastrevid", "modified", "fetched_at"]
OUTCOME_FIELDS = ["status", "entity", "error", "attempts", "run", "task_id", "updated_at"]


@dataclass(frozen=True)
class Storage:
    """Writes what one task fetched, and the outcomes it reached, for its run.

    ``run_id`` is the ``ImportRun`` the outcomes count for (``None``: none); ``task_id`` the
    Celery task that records them, so that a task delivered twice counts its ids once.
    """

    run_id: int | None = None
    task_id: str | None = None

    def store(self, asked_id: str, fetched: Fetched) -> Status:
        """Store a fetched document and the outcome for ``asked_id``; return that outcome.

        A document whose revision is already stored is not rewritten (``unchanged``).
        """
        batch = Batch({asked_id: fetched.document}, missing=[], absent=[], attempts=fetched.attempts)
        return self.store_batch(batch)[asked_id]

    def store_batch(self, batch: Batch) -> dict[str, Status]:
        """Store a batch's documents, redirects and outcomes in one transaction; return the outcomes.

        The ids in ``batch.absent`` are left alone (and get no outcome).
        """
        targets = {asked: str(document["id"]) for asked, document in batch.documents.items()}
        now = timezone.now()
        with transaction.atomic():
            stored = dict(
                WikidataEntity.objects.filter(pk__in=targets.values()).values_list("pk", "lastrevid")
            )
            entities: dict[str, WikidataEntity] = {}
            for asked, document in batch.documents.items():
                entity = _entity(targets[asked], document, now)
                if entity.lastrevid is None or stored.get(entity.pk) != entity.lastrevid:
                    entities[entity.pk] = entity
            # Upserts, so that two tasks for one id at once leave exactly one row.
            WikidataEntity.objects.bulk_create(
                entities.values(),
                update_conflicts=True,
                unique_fields=["wikidata_id"],
                update_fields=ENTITY_FIELDS,
            )
            redirects = [WikidataRedirect(wikidata_id=a, target_id=t) for a, t in targets.items() if a != t]
            WikidataRedirect.objects.bulk_create(
                redirects, update_conflicts=True, unique_fields=["wikidata_id"], update_fields=["target"]
            )
            statuses = {
                asked: Status.REDIRECTED
                if asked != target
                else (Status.IMPORTED if target in entities else Status.UNCHANGED)
                for asked, target in targets.items()
            }
            outcomes = [
                self._outcome(asked, status, now, entity_id=targets[asked], attempts=batch.attempts)
                for asked, status in statuses.items()
            ]
            outcomes += [
                self._outcome(asked, Status.MISSING, now, error="no such entity", attempts=batch.attempts)
                for asked in batch.missing
            ]
            self._save_outcomes(outcomes)
        statuses.update(dict.fromkeys(batch.missing, Status.MISSING))
        return statuses

    def record(
        self,
        asked_id: str,
        status: Status,
        *,
        entity_id: str | None = None,
        error: str = "",
        attempts: int = 0,
    ) -> None:
        """Keep the outcome of ``asked_id`` (replacing an earlier one) and count it for the run."""
        outcome = self._outcome(
            asked_id, status, timezone.now(), entity_id=entity_id, error=error, attempts=attempts
        )
        with transaction.atomic():
            self._save_outcomes([outcome])

    def _outcome(
        self,
        asked_id: str,
        status: Status,
        now: Any,
        *,
        entity_id: str | None = None,
        error: str = "",
        attempts: int = 0,
    ) -> ImportOutcome:
        return ImportOutcome(
            wikidata_id=asked_id,
            status=status,
            entity_id=entity_id,
            error=error,
            attempts=attempts,
            run_id=self.run_id,
            task_id=self.task_id or "",
            updated_at=now,
        )

    def _save_outcomes(self, outcomes: list[ImportOutcome]) -> None:
        """Upsert outcomes and count them for the run; call inside a transaction.

        Delivery is at least once: a task may run again (a worker died before acknowledging it).
        An id that the same task already counted for the run is not counted again, so that
        ``import_wikidata --wait`` does not stop before every id has an outcome.
        """
        counted: set[str] = set()
        if self.run_id is not None:
            # Two copies of one task take turns on the run's row (PostgreSQL; SQLite locks it all).
            list(ImportRun.objects.select_for_update().filter(pk=self.run_id).values_list("pk"))
            if self.task_id:
                asked = [outcome.wikidata_id for outcome in outcomes]
                already = ImportOutcome.objects.filter(pk__in=asked, run_id=self.run_id, task_id=self.task_id)
                counted = set(already.values_list("pk", flat=True))
        ImportOutcome.objects.bulk_create(
            outcomes, update_conflicts=True, unique_fields=["wikidata_id"], update_fields=OUTCOME_FIELDS
        )
        new = sum(outcome.wikidata_id not in counted for outcome in outcomes)
        if self.run_id is not None and new:
            ImportRun.objects.filter(pk=self.run_id).update(finished=F("finished") + new)


def _entity(entity_id: str, document: Mapping[str, Any], now: Any) -> WikidataEntity:
    # wbgetentities marks a redirect inside the target's document; that is not part of it.
    data = {key: value for key, value in document.items() if key != "redirects"}
    summary = summarize(data, settings.WIKIDATA_LANGUAGE)
    return WikidataEntity(
        wikidata_id=entity_id,
        entity_type=summary.entity_type,
        label=summary.label,
        description=summary.description,
        data=data,
        lastrevid=summary.lastrevid,
        modified=summary.modified,
        fetched_at=now,
    )
