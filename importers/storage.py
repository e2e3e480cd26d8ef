"""Writing fetched entities and outcomes: one transaction each, safe when two tasks race.

A document is written only when it is a newer revision than the one stored, so that a stale
answer (a lagged replica, a redirect and its target fetched at once) never replaces a newer one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.database import patiently

from .documents import Batch, Fetched, summarize
from .models import ImportOutcome, RunOutcome, Status, WikidataEntity, WikidataRedirect
from .revisions import is_newer, newer_sql

ENTITY_FIELDS = ["entity_type", "label", "description", "data", "lastrevid", "modified", "fetched_at"]
OUTCOME_FIELDS = ["status", "entity", "error", "attempts", "run", "task_id", "updated_at"]
RUN_OUTCOME_FIELDS = ["status", "entity", "error", "attempts", "task_id", "updated_at"]


@dataclass(frozen=True)
class Storage:
    """Writes what one task fetched, and the outcomes it reached, for its run.

    ``run_id`` is the ``ImportRun`` the outcomes count for (``None``: none); ``task_id`` the
    Celery task that records them, so that a task delivered twice counts its ids once.
    ``rewrite`` writes a document of the stored revision too (a forced re-import), never an older one.
    """

    run_id: int | None = None
    task_id: str | None = None
    rewrite: bool = False

    def store(self, asked_id: str, fetched: Fetched) -> Status:
        """Store a fetched document and the outcome for ``asked_id``; return that outcome.

        A document whose revision, or a newer one, is already stored is not written (``unchanged``).
        """
        batch = Batch({asked_id: fetched.document}, missing=[], absent=[], attempts=fetched.attempts)
        return self.store_batch(batch)[asked_id]

    def store_batch(self, batch: Batch) -> dict[str, Status]:
        """Store a batch's documents, redirects and outcomes in one transaction; return the outcomes.

        Each document is written only if it is newer than the stored revision (else
        ``unchanged``); the ids in ``batch.failed`` are recorded ``failed``, with their reason.
        The ids in ``batch.absent`` are left alone (and get no outcome). While the database is
        unavailable, it tries again for up to ``IMPORTER_DATABASE_WAIT`` seconds.
        """
        return patiently(lambda: self._store_batch(batch))

    def _store_batch(self, batch: Batch) -> dict[str, Status]:
        targets = {asked: str(document["id"]) for asked, document in batch.documents.items()}
        now = timezone.now()
        with transaction.atomic():
            stored = dict(
                WikidataEntity.objects.filter(pk__in=targets.values()).values_list("pk", "lastrevid")
            )
            entities: dict[str, WikidataEntity] = {}
            for asked, document in batch.documents.items():
                entity = _entity(targets[asked], document, now)
                # A redirect and its target in one answer may carry two revisions: the newer wins.
                if entity.pk not in entities or is_newer(
                    entity.lastrevid, entities[entity.pk].lastrevid, False
                ):
                    entities[entity.pk] = entity
            # What was read is only a shortcut: the upsert itself decides, for tasks racing for an id.
            written = upsert_newer(
                [
                    entity
                    for pk, entity in entities.items()
                    if pk not in stored or is_newer(entity.lastrevid, stored[pk], self.rewrite)
                ],
                rewrite=self.rewrite,
            )
            redirected = {asked: target for asked, target in targets.items() if asked != target}
            self._store_redirects(redirected)
            statuses = {
                asked: Status.REDIRECTED
                if asked != target
                else (Status.IMPORTED if target in written else Status.UNCHANGED)
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
            outcomes += [
                self._outcome(asked, Status.FAILED, now, error=error, attempts=batch.attempts)
                for asked, error in batch.failed.items()
            ]
            self._save_outcomes(outcomes)
        statuses.update(dict.fromkeys(batch.missing, Status.MISSING))
        statuses.update(dict.fromkeys(batch.failed, Status.FAILED))
        return statuses

    @staticmethod
    def _store_redirects(redirected: Mapping[str, str]) -> None:
        """Keep each asked id as a redirect to its target; call inside a transaction, targets stored.

        An id stored as an entity until Wikidata merged it into another is one no longer: its row
        goes, and the redirects to it now lead to its target (Wikidata keeps no double redirects).
        """
        if not redirected:
            return
        WikidataRedirect.objects.bulk_create(
            [WikidataRedirect(wikidata_id=asked, target_id=target) for asked, target in redirected.items()],
            update_conflicts=True,
            unique_fields=["wikidata_id"],
            update_fields=["target"],
        )
        merged = set(WikidataEntity.objects.filter(pk__in=list(redirected)).values_list("pk", flat=True))
        for source in merged:
            WikidataRedirect.objects.filter(target_id=source).update(target_id=redirected[source])
        WikidataEntity.objects.filter(pk__in=merged).delete()

    def record(
        self,
        asked_id: str,
        status: Status,
        *,
        entity_id: str | None = None,
        error: str = "",
        attempts: int = 0,
    ) -> None:
        """Keep the outcome of ``asked_id``, as its latest and as its outcome in the run.

        While the database is unavailable, it tries again for up to ``IMPORTER_DATABASE_WAIT`` s.
        """
        outcome = self._outcome(
            asked_id, status, timezone.now(), entity_id=entity_id, error=error, attempts=attempts
        )

        def save() -> None:
            with transaction.atomic():
                self._save_outcomes([outcome])

        patiently(save)

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
        """Keep each outcome as the id's latest, and as its outcome in the run; call inside a transaction.

        Both are upserts: a task delivered twice (at least once delivery) replaces what it
        recorded the first time, and the run's count of ids with an outcome cannot grow twice.
        """
        latest = list({outcome.wikidata_id: outcome for outcome in outcomes}.values())
        ImportOutcome.objects.bulk_create(
            latest, update_conflicts=True, unique_fields=["wikidata_id"], update_fields=OUTCOME_FIELDS
        )
        if self.run_id is None:
            return
        in_run = [
            RunOutcome(
                run_id=self.run_id,
                wikidata_id=outcome.wikidata_id,
                status=outcome.status,
                entity_id=outcome.entity_id,
                error=outcome.error,
                attempts=outcome.attempts,
                task_id=outcome.task_id,
                updated_at=outcome.updated_at,
            )
            for outcome in latest
        ]
        RunOutcome.objects.bulk_create(
            in_run,
            update_conflicts=True,
            unique_fields=["run", "wikidata_id"],
            update_fields=RUN_OUTCOME_FIELDS,
        )


def upsert_newer(entities: list[WikidataEntity], rewrite: bool = False) -> set[str]:
    """Insert each entity, or update its row if the entity is a newer revision; return the ids written.

    Newer is ``importers.revisions.is_newer``, tested in the upsert's WHERE (Django's
    ``bulk_create(update_conflicts=True)`` would update unconditionally). Call inside a
    transaction. PostgreSQL and SQLite (3.35 or newer, for RETURNING) share the syntax.
    """
    if not entities:
        return set()
    meta = WikidataEntity._meta
    by_name = {field.name: field for field in meta.concrete_fields}
    fields = [by_name[name] for name in ["wikidata_id", *ENTITY_FIELDS]]
    quote = connection.ops.quote_name
    table, key, revision = quote(meta.db_table), quote(fields[0].column), quote(by_name["lastrevid"].column)
    rows, params = [], []
    for entity in entities:
        values = [field.get_db_prep_save(getattr(entity, field.attname), connection) for field in fields]
        rows.append(
            f"({', '.join(_placeholder(field, value) for field, value in zip(fields, values, strict=True))})"
        )
        params += values
    columns = [quote(field.column) for field in fields]
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns[1:])
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join(rows)} "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates} "
        f"WHERE {newer_sql(f'excluded.{revision}', f'{table}.{revision}', rewrite)} "
        f"RETURNING {key}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def _placeholder(field: Any, value: Any) -> str:
    # DocumentField sends its document as one parameter (see importers.fields); others use %s.
    placeholder = getattr(field, "get_placeholder", None)
    return str(placeholder(value, None, connection)) if placeholder is not None else "%s"


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
