"""Browse dump imports and their chunks in the Django admin, read-only: the command and workers write them.

As the other pages, a list reads one page of rows whatever the tables hold: a dump import's
counts are summed over its chunks for the rows of that page only.
"""

from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from core.admin import ReadOnlyAdmin

from ..models import ChunkStatus, DumpChunk, DumpImport

# The bad lines a chunk's page shows; the chunk keeps at most 100.
SHOWN_BAD_LINES = 100


def chunks_url(dump_id: int, **filters: str) -> str:
    query = urlencode({"dump__id__exact": str(dump_id), **filters})
    return reverse("admin:importers_dumpchunk_changelist") + "?" + query


@admin.register(DumpImport)
class DumpImportAdmin(ReadOnlyAdmin):
    list_display = ("id", "path", "created_at", "chunks", "done", "chunk_list")
    fields = (
        "path",
        "size",
        "filters",
        "chunk_bytes",
        "chunk_dir",
        "created_at",
        "chunks",
        "split_error",
        "totals",
        "by_status",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[DumpImport]:
        done = (
            DumpChunk.objects.filter(dump=models.OuterRef("pk"), status=ChunkStatus.DONE)
            .order_by()
            .values("dump")
            .annotate(count=models.Count("pk"))
            .values("count")
        )
        queryset: models.QuerySet[DumpImport] = super().get_queryset(request)
        return queryset.annotate(done=models.Subquery(done, output_field=models.IntegerField()))

    @admin.display(description="chunks done")
    def done(self, dump: DumpImport) -> int:
        return getattr(dump, "done", None) or 0

    @admin.display(description="chunks")
    def chunk_list(self, dump: DumpImport) -> str:
        return format_html('<a href="{}">chunks of dump import {}</a>', chunks_url(dump.pk), dump.pk)

    @admin.display(description="totals")
    def totals(self, dump: DumpImport) -> str:
        """What the command printed at its end: counts, bytes, duration and rates, from the chunks."""
        sums = dump.chunk_set.aggregate(
            **{name: models.Sum(name) for name in ("entities", "matched", "written", "unchanged", "bad")},
            read=models.Sum("bytes", filter=models.Q(status=ChunkStatus.DONE)),
            last=models.Max("updated_at", filter=models.Q(status=ChunkStatus.DONE)),
        )
        counts = {name: sums[name] or 0 for name in ("entities", "matched", "written", "unchanged", "bad")}
        megabytes = (sums["read"] or 0) / (1024 * 1024)
        seconds = (sums["last"] - dump.created_at).total_seconds() if sums["last"] else 0.0
        rates = ""
        if seconds > 0:
            per_second = f"{counts['entities'] / seconds:,.0f} entities/s, {megabytes / seconds:,.1f} MB/s"
            rates = f"; {seconds:,.0f} s, {per_second}"
        return (
            f"{counts['entities']:,} entities read, {counts['matched']:,} matched, {counts['written']:,} "
            f"written, {counts['unchanged']:,} unchanged, {counts['bad']:,} bad lines; "
            f"{megabytes:,.1f} MB imported{rates}"
        )

    @admin.display(description="chunks by status")
    def by_status(self, dump: DumpImport) -> str:
        counts = dict(dump.chunk_set.values_list("status").annotate(n=models.Count("pk")).order_by())
        links = [
            (chunks_url(dump.pk, status=status), f"{status}: {counts[status]:,}")
            for status in ChunkStatus
            if counts.get(status)
        ]
        return format_html_join(" · ", '<a href="{}">{}</a>', links)


@admin.register(DumpChunk)
class DumpChunkAdmin(ReadOnlyAdmin):
    list_display = (
        *("number", "dump", "first_line", "lines", "status"),
        *("entities", "matched", "written", "unchanged", "bad", "updated_at"),
    )
    list_filter = ("status",)
    list_select_related = ("dump",)
    fields = (
        *("dump", "number", "first_line", "lines", "bytes", "file", "start", "status"),
        *(
            "entities",
            "matched",
            "written",
            "unchanged",
            "bad",
            "bad_line_list",
            "error",
            "task_id",
            "updated_at",
        ),
    )
    readonly_fields = fields
    ordering = ("-dump", "number")  # the newest import first, each in the dump's order

    @admin.display(description="bad lines")
    def bad_line_list(self, chunk: DumpChunk) -> str:
        rows = [(number, reason) for number, reason in chunk.bad_lines[:SHOWN_BAD_LINES]]
        return format_html_join("\n", "<div>line {}: {}</div>", rows) or "none"
