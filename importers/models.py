"""Imported entities and redirects, the runs that asked for them with their outcomes, the dump imports."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models

from .dump.sources import is_gzip
from .fields import DocumentField


class WikidataEntity(models.Model):
    """One entity document, stored whole, as Wikidata sent it."""

    wikidata_id = models.CharField(primary_key=True, max_length=32, help_text="Canonical id, e.g. Q1022.")
    entity_type = models.CharField(max_length=32, help_text="item, property, lexeme, ...")
    label = models.TextField(blank=True, help_text="In WIKIDATA_LANGUAGE, or a fallback; a lexeme's lemma.")
    description = models.TextField(blank=True)
    data = DocumentField(help_text="The whole entity document.")
    lastrevid = models.BigIntegerField(null=True, help_text="Wikidata's revision of this document.")
    modified = models.DateTimeField(null=True, help_text="When Wikidata last changed the entity.")
    fetched_at = models.DateTimeField(help_text="When this document was fetched.")

    class Meta:
        verbose_name = "Wikidata entity"
        verbose_name_plural = "Wikidata entities"

    def __str__(self) -> str:
        return f"{self.wikidata_id} {self.label}".strip()


class WikidataRedirect(models.Model):
    """An id that Wikidata merged into another: asking for it answers with the target."""

    wikidata_id = models.CharField(primary_key=True, max_length=32)
    target = models.ForeignKey(WikidataEntity, on_delete=models.CASCADE, related_name="redirects")

    def __str__(self) -> str:
        return f"{self.wikidata_id} -> {self.target_id}"


class Status(models.TextChoices):
    """How importing one requested id ended."""

    IMPORTED = "imported", "imported: stored or updated"
    UNCHANGED = "unchanged", "unchanged: same revision already stored"
    REDIRECTED = "redirected", "redirected: merged into another entity, which was stored"
    MISSING = "missing", "missing: no such entity (never existed, or deleted)"
    INVALID = "invalid", "invalid: not a Wikidata id"
    FAILED = "failed", "failed: gave up after retries"


# The statuses that count as success for the command's exit status.
SUCCESSFUL = (Status.IMPORTED, Status.UNCHANGED, Status.REDIRECTED)


class RunOrigin(models.TextChoices):
    """What started a run. (``follow_wikidata`` sends its batches without a run: one a batch,
    every 2 s, would bury the others; its outcomes are in ImportOutcome.)"""

    COMMAND = "command", "a command (import_wikidata, refresh_wikidata)"
    ADMIN = "admin", "the admin (refresh or re-import selected)"


class ImportRun(models.Model):
    """One ``import_wikidata`` call: the ids it requested, each with its outcome in this run."""

    created_at = models.DateTimeField(auto_now_add=True)
    origin = models.CharField(
        max_length=16,
        choices=RunOrigin.choices,
        blank=True,
        help_text="What started it; blank for runs recorded before origins were (migration 0005).",
    )
    requested = models.PositiveIntegerField(default=0, help_text="Ids sent, duplicates left out.")

    def __str__(self) -> str:
        return f"Run {self.pk}: {self.requested} ids"

    def request(self, ids: Iterable[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str, str]]]:
        """Add ``(id, origin)`` pairs (a few thousand at most) to the ids this run requests.

        Returns the ids new to the run, in order, and the duplicates as ``(origin, id, first
        origin)``: ids this run already requested, or that came twice in ``ids``.
        """
        pairs = list(ids)
        already = dict(
            self.outcomes.filter(wikidata_id__in={id for id, _ in pairs}).values_list("wikidata_id", "origin")
        )
        new: dict[str, str] = {}
        duplicates = []
        for wikidata_id, origin in pairs:
            first = already.get(wikidata_id, new.get(wikidata_id))
            if first is None:
                new[wikidata_id] = origin
            else:
                duplicates.append((origin, wikidata_id, first))
        RunOutcome.objects.bulk_create(
            RunOutcome(run=self, wikidata_id=wikidata_id, origin=origin)
            for wikidata_id, origin in new.items()
        )
        return list(new), duplicates

    def withdraw_after(self, sent: int) -> list[str]:
        """Remove from the run the ids requested after the first ``sent``; return them, in order.

        For ids that were added but could not be sent (the broker went away).
        """
        unsent = self.outcomes.order_by("pk")[sent:]
        ids = list(unsent.values_list("wikidata_id", flat=True))
        self.outcomes.filter(pk__in=unsent.values_list("pk", flat=True)).delete()
        return ids

    def set_requested(self, requested: int) -> None:
        """Keep how many ids were sent for this run."""
        self.requested = requested
        ImportRun.objects.filter(pk=self.pk).update(requested=requested)

    def finished_now(self) -> int:
        """Return how many of its ids have an outcome now."""
        return self.outcomes.exclude(status="").count()

    def status_counts(self) -> dict[str, int]:
        """Return how many of its ids ended in each outcome, in the order of ``Status``."""
        counts = dict(self.outcomes.values_list("status").annotate(count=models.Count("pk")).order_by())
        return {status: counts[status] for status in Status if counts.get(status)}

    def unsuccessful(self) -> models.QuerySet[RunOutcome]:
        """Return its ids not imported, unchanged or redirected (or without an outcome yet), in order."""
        return self.outcomes.exclude(status__in=SUCCESSFUL).order_by("pk")


class OutcomeFields(models.Model):
    """What an outcome says: the status, the stored entity, the error, the requests made."""

    status = models.CharField(max_length=16, choices=Status.choices)
    entity = models.ForeignKey(
        WikidataEntity,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The stored entity: the target, for a redirect.",
    )
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="HTTP requests made for the last try.")
    task_id = models.CharField(max_length=255, blank=True, help_text="The Celery task that recorded it.")
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        abstract = True


class RunOutcome(OutcomeFields):
    """One id a run requested, and its outcome in that run (no status: none recorded yet)."""

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="outcomes")
    wikidata_id = models.CharField(max_length=64, help_text="The id as requested, normalized.")
    origin = models.CharField(max_length=64, blank=True, help_text="Where it came from, e.g. 'line 7'.")
    status = models.CharField(max_length=16, choices=Status.choices, blank=True)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["run", "wikidata_id"], name="one_outcome_per_run_and_id"),
        )
        indexes = (models.Index(fields=["run", "status"]),)

    def __str__(self) -> str:
        return f"{self.wikidata_id} {self.status or 'no outcome yet'} (run {self.run_id})"


class ImportOutcome(OutcomeFields):
    """The latest outcome of importing one id, whichever run (or direct call) recorded it."""

    Status = Status
    SUCCESSFUL = SUCCESSFUL

    wikidata_id = models.CharField(primary_key=True, max_length=64, help_text="The id as requested.")
    run = models.ForeignKey(ImportRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        indexes = (models.Index(fields=["run", "status"]),)

    def __str__(self) -> str:
        return f"{self.wikidata_id} {self.status}"


class DumpImport(models.Model):
    """One ``import_wikidata_dump`` of a dump file with one set of filters, resumed until every chunk is done.

    The file is known by its path, size and modification time: a dump replaced at the same path
    is another dump, whose chunks would not be the same.
    """

    path = models.TextField(help_text="The dump's absolute path, the same on every worker.")
    size = models.BigIntegerField(help_text="The file's size in bytes (compressed, for a compressed dump).")
    mtime_ns = models.BigIntegerField(help_text="The file's modification time, in nanoseconds.")
    filters = models.JSONField(default=dict, help_text="Entity types, --where conditions and --ids file.")
    chunk_bytes = models.BigIntegerField(help_text="Chunks end at the first line end past this many bytes.")
    chunk_dir = models.TextField(blank=True, help_text="Where chunk files go (compressed dumps).")
    created_at = models.DateTimeField(auto_now_add=True)
    chunks = models.PositiveIntegerField(
        null=True, blank=True, help_text="Known once the dump was read to its end."
    )
    split_error = models.TextField(blank=True, help_text="Why the dump could not be read to its end.")

    class Meta:
        indexes = (models.Index(fields=["path", "size", "mtime_ns"]),)

    def __str__(self) -> str:
        return f"Dump import {self.pk}: {self.path}"


class ChunkStatus(models.TextChoices):
    """Where one chunk of a dump stands."""

    PENDING = "pending", "pending: sent, not finished"
    DONE = "done", "done: every line has an outcome"
    FAILED = "failed", "failed: nothing of it was written"


class DumpChunk(models.Model):
    """A run of whole lines of a dump, imported by one task in one transaction with its counts.

    A chunk of a compressed dump is a file of its own (``file``), written once by the command;
    a chunk of a plain dump is the byte range ``start``..``end`` of the dump itself, and so is a
    slice of a dump gzipped as Wikimedia gzips it (``is_slice``), inflated by its worker.
    """

    dump = models.ForeignKey(DumpImport, on_delete=models.CASCADE, related_name="chunk_set")
    number = models.PositiveIntegerField(help_text="0, 1, 2, ... in the order of the dump.")
    first_line = models.BigIntegerField(help_text="The dump's line number of its first line (from 1).")
    lines = models.PositiveIntegerField()
    bytes = models.BigIntegerField(help_text="Uncompressed bytes.")
    file = models.TextField(help_text="The file the worker reads: a chunk file, or the plain dump.")
    start = models.BigIntegerField(default=0, help_text="Where in ``file`` the chunk starts.")
    status = models.CharField(max_length=16, choices=ChunkStatus.choices, default=ChunkStatus.PENDING)
    entities = models.PositiveIntegerField(default=0, help_text="Entity lines read (bad ones included).")
    matched = models.PositiveIntegerField(default=0, help_text="Entities that passed the filters.")
    written = models.PositiveIntegerField(default=0, help_text="Rows inserted or updated (newer revisions).")
    unchanged = models.PositiveIntegerField(
        default=0, help_text="Matched, but the stored revision was as new."
    )
    bad = models.PositiveIntegerField(default=0, help_text="Lines that are no storable entity.")
    bad_lines = models.JSONField(default=list, help_text="The first bad lines: [line number, reason].")
    error = models.TextField(blank=True, help_text="Why the chunk failed.")
    task_id = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = (models.UniqueConstraint(fields=["dump", "number"], name="one_chunk_per_number"),)
        indexes = (models.Index(fields=["dump", "status"]),)

    def __str__(self) -> str:
        return f"Chunk {self.number} of dump import {self.dump_id}: {self.status}"

    @property
    def is_slice(self) -> bool:
        """Whether it is a slice of a gzipped dump (``importers.dump.slices``): whole gzip members.

        Then ``start`` and ``bytes`` are compressed bytes of the dump itself (a path or a URL),
        and its lines are numbered from 1 within the slice and counted when it is imported.
        """
        return is_gzip(self.file)


class FollowPosition(models.Model):
    """Where ``follow_wikidata`` stands in the recentchange stream: one row, updated in place.

    Written in the same transaction as the batch of changes it covers is sent, so a restart
    resumes after the last change sent, and loses none.
    """

    last_event_id = models.TextField(
        blank=True, help_text="The stream's last event id (a JSON array of topic offsets), as sent."
    )
    updated_at = models.DateTimeField(auto_now=True)
    status = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the follower last saw of itself (mode, lag percentiles, backlog), saved with "
        "the position; follow_wikidata --status shows it.",
    )

    def __str__(self) -> str:
        return f"Stream position {self.last_event_id or '(none)'}"
