"""Imported Wikidata entities, the redirects met on the way, and the outcome of every requested id."""

from __future__ import annotations

from django.db import models

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


class ImportRun(models.Model):
    """One ``import_wikidata`` call: how many tasks it sent, and how many have finished."""

    created_at = models.DateTimeField(auto_now_add=True)
    requested = models.PositiveIntegerField(default=0, help_text="Tasks sent.")
    finished = models.PositiveIntegerField(default=0, help_text="Tasks that recorded an outcome.")

    def __str__(self) -> str:
        return f"Run {self.pk}: {self.finished}/{self.requested}"

    def set_requested(self, requested: int) -> None:
        """Keep how many ids were sent for this run."""
        self.requested = requested
        ImportRun.objects.filter(pk=self.pk).update(requested=requested)

    def finished_now(self) -> int:
        """Return how many of its ids have an outcome now, as the workers count them."""
        self.finished = ImportRun.objects.values_list("finished", flat=True).get(pk=self.pk)
        return self.finished

    def status_counts(self) -> dict[str, int]:
        """Return how many of its ids ended in each outcome, in the order of ``ImportOutcome.Status``."""
        counts = dict(self.outcomes.values_list("status").annotate(count=models.Count("pk")))
        return {status: counts[status] for status in ImportOutcome.Status if counts.get(status)}

    def unsuccessful(self) -> models.QuerySet[ImportOutcome]:
        """Return its outcomes that are not a success, oldest id first."""
        return self.outcomes.exclude(status__in=ImportOutcome.SUCCESSFUL).order_by("pk")


class ImportOutcome(models.Model):
    """The latest outcome of importing one requested id."""

    class Status(models.TextChoices):
        IMPORTED = "imported", "imported: stored or updated"
        UNCHANGED = "unchanged", "unchanged: same revision already stored"
        REDIRECTED = "redirected", "redirected: merged into another entity, which was stored"
        MISSING = "missing", "missing: no such entity (never existed, or deleted)"
        INVALID = "invalid", "invalid: not a Wikidata id"
        FAILED = "failed", "failed: gave up after retries"

    # The statuses that count as success for the command's exit status.
    SUCCESSFUL = (Status.IMPORTED, Status.UNCHANGED, Status.REDIRECTED)

    wikidata_id = models.CharField(primary_key=True, max_length=64, help_text="The id as requested.")
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
    run = models.ForeignKey(
        ImportRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="outcomes"
    )
    task_id = models.CharField(max_length=255, blank=True, help_text="The Celery task that recorded it.")
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        indexes = (models.Index(fields=["run", "status"]),)

    def __str__(self) -> str:
        return f"{self.wikidata_id} {self.status}"
