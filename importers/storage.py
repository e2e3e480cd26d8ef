"""Writing fetched entities and outcomes: one transaction each, safe when two tasks race."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .documents import summarize
from .fetch import Fetched
from .models import ImportOutcome, ImportRun, WikidataEntity, WikidataRedirect

Status = ImportOutcome.Status

ENTITY_FIELDS = ["entity_type", "label", "description", "data", "lastrevid", "modified", "fetched_at"]


def store(asked_id: str, fetched: Fetched, run_id: int | None) -> Status:
    """Store a fetched document and the outcome for ``asked_id``; return that outcome.

    A document whose revision is already stored is not rewritten (``unchanged``).
    """
    summary = summarize(fetched.document, settings.WIKIDATA_LANGUAGE)
    with transaction.atomic():
        unchanged = (
            summary.lastrevid is not None
            and WikidataEntity.objects.filter(pk=fetched.entity_id, lastrevid=summary.lastrevid).exists()
        )
        if not unchanged:
            entity = WikidataEntity(
                wikidata_id=fetched.entity_id,
                entity_type=summary.entity_type,
                label=summary.label,
                description=summary.description,
                data=fetched.document,
                lastrevid=summary.lastrevid,
                modified=summary.modified,
                fetched_at=timezone.now(),
            )
            # An upsert, so that two tasks for one id at once leave exactly one row.
            WikidataEntity.objects.bulk_create(
                [entity], update_conflicts=True, unique_fields=["wikidata_id"], update_fields=ENTITY_FIELDS
            )
        if asked_id != fetched.entity_id:
            WikidataRedirect.objects.bulk_create(
                [WikidataRedirect(wikidata_id=asked_id, target_id=fetched.entity_id)],
                update_conflicts=True,
                unique_fields=["wikidata_id"],
                update_fields=["target"],
            )
            status = Status.REDIRECTED
        else:
            status = Status.UNCHANGED if unchanged else Status.IMPORTED
        record(asked_id, status, run_id, entity_id=fetched.entity_id, attempts=fetched.attempts)
    return status


def record(
    asked_id: str,
    status: Status,
    run_id: int | None,
    *,
    entity_id: str | None = None,
    error: str = "",
    attempts: int = 0,
) -> None:
    """Keep the outcome of ``asked_id`` (replacing an earlier one) and count it for its run."""
    outcome = ImportOutcome(
        wikidata_id=asked_id,
        status=status,
        entity_id=entity_id,
        error=error,
        attempts=attempts,
        run_id=run_id,
        updated_at=timezone.now(),
    )
    with transaction.atomic():
        ImportOutcome.objects.bulk_create(
            [outcome],
            update_conflicts=True,
            unique_fields=["wikidata_id"],
            update_fields=["status", "entity", "error", "attempts", "run", "updated_at"],
        )
        if run_id is not None:
            ImportRun.objects.filter(pk=run_id).update(finished=F("finished") + 1)
