"""A worker killed in the middle of a dump's chunk: the chunk is redone, and nothing is counted twice."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from bench import make_dump
from importers.models import ChunkStatus, DumpChunk, DumpImport, WikidataEntity
from tests.importers.dump.test_command import counts, import_dump
from tests.production.conftest import Deployment, RedisServer
from tests.support.nginx import NEEDS_NGINX, nginx_serving
from tests.support.shared import NEEDS_SHARED
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), NEEDS_SHARED]  # workers see what the test commits

# Short, so that a new worker hands out the dead worker's unacknowledged message at once.
VISIBILITY_TIMEOUT = 2


def import_location(location: str, tmp_path: Path, *args: str) -> str:
    """Run the command on a dump's path or URL; return what it printed."""
    out = io.StringIO()
    call_command("import_wikidata_dump", location, "--chunk-dir", str(tmp_path / "chunks"), *args,
                 stdout=out, stderr=io.StringIO())  # fmt: skip
    return out.getvalue()


@contextmanager
def stored_and_held(entity_id: str) -> Iterator[psycopg.Connection[Any]]:
    """Store revision 1 of ``entity_id`` and hold its row locked from another connection until the
    block ends (or the connection's transaction is rolled back): an upsert of it waits there."""
    WikidataEntity.objects.create(
        wikidata_id=entity_id, entity_type="item", data={}, lastrevid=1, fetched_at=timezone.now()
    )
    with psycopg.connect(
        dbname=connection.settings_dict["NAME"], host="127.0.0.1", user="postgres"
    ) as holder:
        holder.execute(
            "SELECT 1 FROM importers_wikidataentity WHERE wikidata_id = %s FOR UPDATE", [entity_id]
        )
        yield holder


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
        site = deploy(private_redis.url, visibility_timeout=VISIBILITY_TIMEOUT)
        with stored_and_held(held) as holder:
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

    @pytest.mark.parametrize("source", ["path", pytest.param("nginx", marks=NEEDS_NGINX)])
    def test_two_machines_share_a_sliced_dump_and_one_killed_mid_slice_leaves_the_rest_to_the_other(
        tmp_path: Path,
        settings: Any,
        private_redis: RedisServer,
        deploy: Callable[..., Deployment],
        source: str,
    ) -> None:
        """Two workers (two machines' worth: two hostnames) read the slices of one Wikimedia-style
        .gz, where it lies or by HTTP ranges from nginx; the one stuck in a slice is SIGKILLed with
        its pool, and the other imports that slice when the command is run again: every entity
        stored once, counted once."""
        settings.WIKIDATA_DUMP_SLICE_BYTES = 1  # a slice a member
        (tmp_path / "www").mkdir()
        path = tmp_path / "www" / "dump.json.gz"
        make_dump.write(path, 200, member_lines=20)
        with ExitStack() as stack:
            location = str(path)
            if source == "nginx":
                server = stack.enter_context(nginx_serving(tmp_path / "www", tmp_path / "nginx"))
                location = server.url(path.name)
            run_slices_and_kill_one(location, tmp_path, private_redis, deploy)

    def run_slices_and_kill_one(
        location: str, tmp_path: Path, private_redis: RedisServer, deploy: Callable[..., Deployment]
    ) -> None:
        ids = [json.loads(text)["id"] for text in make_dump.lines(200)]
        held = ids[-1]  # in the last slice of entities; its row is held, as above
        site = deploy(private_redis.url, visibility_timeout=VISIBILITY_TIMEOUT)
        with stored_and_held(held) as holder:
            workers = [site.worker("a", concurrency=2), site.worker("b", concurrency=2)]
            out = import_location(location, tmp_path)
            dump = DumpImport.objects.get()
            chunks = dump.chunks
            assert chunks == 1 + 10 + 1  # "[", ten members of 20 lines, "]"
            assert out.startswith(f"Cut {location} into {chunks} chunks")

            def all_but_the_held_slice_done() -> bool:
                done = DumpChunk.objects.filter(status=ChunkStatus.DONE).count()
                return done == chunks - 1 and blocked_on_a_lock()

            wait_until(all_but_the_held_slice_done, timeout=60, why=site.logs)
            held_slice = DumpChunk.objects.get(status=ChunkStatus.PENDING)
            assert held_slice.is_slice
            running = f"import_chunk(chunk_id={held_slice.pk})"
            (stuck,) = [worker for worker in workers if running in worker.log_text()]
            (other,) = [worker for worker in workers if worker is not stuck]
            stuck.kill()  # its main process and pool processes, as when a machine dies
            holder.rollback()
        assert WikidataEntity.objects.get(pk=held).lastrevid == 1  # nothing of the slice was kept
        assert WikidataEntity.objects.count() == 200 - 20 + 1
        done_before = {
            chunk.pk: chunk.updated_at for chunk in DumpChunk.objects.filter(status=ChunkStatus.DONE)
        }

        out = import_location(location, tmp_path, "--wait", "--timeout", "60")
        assert out.startswith(f"Resuming dump import {dump.pk}: {chunks - 1} chunks done already")
        assert counts(out) == "200 entities read, 200 matched, 200 written, 0 unchanged, 0 bad lines"
        assert set(WikidataEntity.objects.values_list("pk", flat=True)) == set(ids)
        assert (
            WikidataEntity.objects.get(pk=held).lastrevid
            == make_dump.FIRST_REVISION + make_dump.FIRST_ID + 199
        )
        assert running in other.log_text()  # the survivor imported the slice
        untouched = DumpChunk.objects.filter(pk__in=done_before)
        assert {chunk.pk: chunk.updated_at for chunk in untouched} == done_before
