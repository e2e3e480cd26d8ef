"""The admin's pages of dump imports and their chunks: read-only, bounded queries, the bad lines shown."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from importers.models import ChunkStatus, DumpChunk, DumpImport

pytestmark = pytest.mark.django_db


def dump_with_chunks(chunks: int) -> DumpImport:
    dump = DumpImport.objects.create(
        path="/dumps/latest-all.json.gz", size=1, mtime_ns=1, chunk_bytes=1024, chunks=chunks
    )
    DumpChunk.objects.bulk_create(
        DumpChunk(
            dump=dump,
            number=n,
            first_line=1 + 10 * n,
            lines=10,
            bytes=1024,
            file="/x",
            status=ChunkStatus.DONE if n % 3 else ChunkStatus.FAILED,
            entities=10,
            matched=10,
            written=9,
            unchanged=1,
        )
        for n in range(chunks)
    )
    return dump


def test_the_lists_run_as_few_queries_for_300_chunks_as_for_3(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    dump = dump_with_chunks(3)
    urls = [reverse("admin:importers_dumpimport_changelist"), reverse("admin:importers_dumpchunk_changelist")]
    with CaptureQueriesContext(connection) as few:
        for url in urls:
            assert admin_client.get(url).status_code == 200
    DumpChunk.objects.filter(dump=dump).delete()
    dump_with_chunks(300)
    with django_assert_max_num_queries(len(few)) as many:
        for url in urls:
            assert admin_client.get(url).status_code == 200
    assert len(many) == len(few)


def test_a_dump_import_counts_its_chunks_by_status_each_linking_to_them(admin_client: Client) -> None:
    dump = dump_with_chunks(6)
    page = admin_client.get(reverse("admin:importers_dumpimport_change", args=[dump.pk])).text
    assert f'?dump__id__exact={dump.pk}&amp;status=done">done: 4</a>' in page
    assert f'?dump__id__exact={dump.pk}&amp;status=failed">failed: 2</a>' in page
    listed = admin_client.get(
        reverse("admin:importers_dumpchunk_changelist") + f"?dump__id__exact={dump.pk}&status=failed"
    )
    assert listed.text.count('class="field-first_line"') == 2


def test_a_dump_import_page_shows_the_totals_the_command_printed(admin_client: Client) -> None:
    """Before: no totals and no duration, though the command printed them."""
    dump = dump_with_chunks(6)  # 4 done, 2 failed; 10 entities, 9 written, 1 unchanged each
    DumpChunk.objects.filter(dump=dump).update(updated_at=dump.created_at + timedelta(seconds=2))
    page = admin_client.get(reverse("admin:importers_dumpimport_change", args=[dump.pk])).text
    assert (
        "60 entities read, 60 matched, 54 written, 6 unchanged, 0 bad lines; 0.0 MB imported; "
        "2 s, 30 entities/s, 0.0 MB/s"
    ) in page


def test_a_chunk_page_shows_its_bad_lines_escaped_and_nothing_can_be_changed(admin_client: Client) -> None:
    dump = dump_with_chunks(1)
    chunk = DumpChunk.objects.get(dump=dump)
    chunk.bad_lines = [[3, "not JSON: <script>"], [9, "Q6: lastrevid is -3"]]
    chunk.save()
    page = admin_client.get(reverse("admin:importers_dumpchunk_change", args=[chunk.pk])).text
    assert "<div>line 3: not JSON: &lt;script&gt;</div>" in page
    assert "<div>line 9: Q6: lastrevid is -3</div>" in page
    assert 'name="_save"' not in page
    assert admin_client.get(reverse("admin:importers_dumpchunk_add")).status_code == 403
