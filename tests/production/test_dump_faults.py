"""A worker killed in the middle of a dump's chunk: the chunk is redone, and nothing is counted twice."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from bench import make_dump
from importers.models import ChunkStatus, DumpChunk, DumpImport, WikidataEntity
from tests.importers.dump.test_command import counts, import_dump
from tests.production.conftest import Deployment, RedisServer
from tests.support.shared import NEEDS_SHARED
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), NEEDS_SHARED]  # workers see what the test commits

# Short, so that a new worker hands out the dead worker's unacknowledged message at once.
VISIBILITY_TIMEOUT = 2


def blocked_on_a_lock() -> bool:
    """Whether a connection to the test database waits for a row lock (the chunk's upsert, here)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


if connection.vendor == "postgresql":  # a row lock to hold the chunk mid-way; SQLite locks the whole file

    def test_a_worker_killed_mid_chunk_leaves_nothing_of_it_and_the_next_run_imports_it_once(
        tmp_path: Path, settings: Any, private_redis: RedisServer, deploy: Callable[..., Deployment]
    ) -> None:
        settings.WIKIDATA_DUMP_CHUNK_BYTES = 20_000
        texts = list(make_dump.lines(120))
        path = tmp_path / "dump.json.gz"
        path.write_bytes(gzip.compress(b"[\n" + b",\n".join(texts) + b"\n]\n"))
        ids = [json.loads(text)["id"] for text in texts]
        # An older revision of the last entity is stored; holding its row, the test stops the
        # chunk that updates it after its lines are read and staged, at its upsert.
        held = ids[-1]
        WikidataEntity.objects.create(
            wikidata_id=held, entity_type="item", data={}, lastrevid=1, fetched_at=timezone.now()
        )
        site = deploy(private_redis.url, visibility_timeout=VISIBILITY_TIMEOUT)
        with psycopg.connect(
            dbname=connection.settings_dict["NAME"], host="127.0.0.1", user="postgres"
        ) as holder:
            holder.execute("SELECT 1 FROM importers_wikidataentity WHERE wikidata_id = %s FOR UPDATE", [held])
            first = site.worker("a", concurrency=2)
            out, _ = import_dump(path)
            assert out.startswith(f"Cut {path} into ")
            dump = DumpImport.objects.get()
            chunks = dump.chunks
            assert chunks is not None
            assert chunks > 5

            def all_but_the_held_chunk_done() -> bool:
                done = DumpChunk.objects.filter(status=ChunkStatus.DONE).count()
                return done == chunks - 1 and blocked_on_a_lock()

            wait_until(all_but_the_held_chunk_done, timeout=60, why=site.logs)
            first.kill()  # the main process and its pool processes, as when a machine dies
            holder.rollback()
        held_chunk = DumpChunk.objects.get(status=ChunkStatus.PENDING)
        first_index = held_chunk.first_line - 2  # line 1 is "["
        in_held_chunk = ids[first_index : first_index + held_chunk.lines]
        assert held in in_held_chunk
        # Nothing of the killed chunk was kept: its rows and its counts were one transaction.
        assert not WikidataEntity.objects.filter(pk__in=in_held_chunk).exclude(pk=held).exists()
        assert WikidataEntity.objects.get(pk=held).lastrevid == 1
        done_before = {
            chunk.pk: chunk.updated_at for chunk in DumpChunk.objects.filter(status=ChunkStatus.DONE)
        }

        site.worker("b", concurrency=2)
        out, _ = import_dump(path, "--wait", "--timeout", "60")
        assert out.startswith(
            f"Resuming dump import {dump.pk}: {chunks - 1} chunks done already are skipped."
        )
        # Every line counted once, though the killed chunk's message may have run twice (redelivered
        # by Redis, and sent again by the second run): the second found it done.
        assert counts(out) == "120 entities read, 120 matched, 120 written, 0 unchanged, 0 bad lines"
        assert set(WikidataEntity.objects.values_list("pk", flat=True)) == set(ids)
        assert (
            WikidataEntity.objects.get(pk=held).lastrevid
            == make_dump.FIRST_REVISION + make_dump.FIRST_ID + 119
        )
        untouched = DumpChunk.objects.filter(pk__in=done_before)
        assert {chunk.pk: chunk.updated_at for chunk in untouched} == done_before
