"""``import_wikidata_dump`` through a real broker and a real ``celery worker`` process."""

from __future__ import annotations

import gzip
import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from bench import make_dump
from config.celery_app import app
from importers import console
from importers.dump.importer import WikidataDumpImporter
from importers.models import ChunkStatus, DumpChunk, WikidataEntity
from tests.importers.dump.test_command import counts, import_dump
from tests.support.shared import NEEDS_SHARED
from tests.support.workers import CeleryWorker

pytestmark = [pytest.mark.django_db(transaction=True), NEEDS_SHARED]  # the worker sees what the test commits


def test_workers_import_the_chunks_of_a_compressed_dump_and_remove_their_files(
    tmp_path: Path, settings: Any, live: CeleryWorker
) -> None:
    settings.WIKIDATA_DUMP_CHUNK_BYTES = 20_000
    texts = list(make_dump.lines(200))
    path = tmp_path / "dump.json.gz"
    path.write_bytes(gzip.compress(b"[\n" + b",\n".join(texts) + b"\n]\n"))
    out, _ = import_dump(path, "--wait", "--timeout", "120")
    assert counts(out) == "200 entities read, 200 matched, 200 written, 0 unchanged, 0 bad lines"
    assert out.splitlines()[-1] == "Every chunk was imported."
    assert set(WikidataEntity.objects.values_list("pk", flat=True)) == {
        json.loads(text)["id"] for text in texts
    }
    chunks = DumpChunk.objects.all()
    assert len(chunks) > 5
    assert {chunk.status for chunk in chunks} == {ChunkStatus.DONE}
    assert all(chunk.task_id for chunk in chunks)  # each recorded by a worker's task
    assert "WikidataDumpImporter.import_chunk" in live.log_text()
    assert list((tmp_path / "chunks").iterdir()) == []


def test_without_wait_the_command_says_what_it_sent(tmp_path: Path, live: CeleryWorker) -> None:
    path = tmp_path / "dump.json"
    path.write_bytes(b"[\n" + b",\n".join(make_dump.lines(3)) + b"\n]\n")
    out, _ = import_dump(path)
    assert out.startswith(f"Cut {path} into 1 chunks and sent a task for each not done (dump import ")
    out, _ = import_dump(path, "--wait", "--timeout", "60")  # the first is finished now, or resumed
    assert out.splitlines()[-1] == "Every chunk was imported."


def test_sync_imports_in_this_process_even_with_a_broker(tmp_path: Path, live: CeleryWorker) -> None:
    received = live.log_text().count("import_chunk")
    path = tmp_path / "dump.json"
    path.write_bytes(b"[\n" + b",\n".join(make_dump.lines(5)) + b"\n]\n")
    out, _ = import_dump(path, "--sync")
    assert counts(out) == "5 entities read, 5 matched, 5 written, 0 unchanged, 0 bad lines"
    assert live.log_text().count("import_chunk") == received  # nothing went to the worker


def test_no_more_chunk_files_than_the_spool_allows_wait_for_a_worker(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A broker, and a queue nobody consumes: the chunks sent stay unimported, their files on disk.
    nobody = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-nobody"
    monkeypatch.setattr(WikidataDumpImporter, "queue", nobody)
    monkeypatch.setitem(app.conf, "CELERY_TASK_ALWAYS_EAGER", False)
    settings.WIKIDATA_DUMP_CHUNK_BYTES = 2048
    settings.WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS = 3
    path = tmp_path / "dump.json.gz"
    path.write_bytes(gzip.compress(b"[\n" + b",\n".join(make_dump.lines(100)) + b"\n]\n"))
    try:
        with pytest.raises(
            CommandError,
            match=r"Gave up waiting: 3 chunks of dump import \d+ are not finished, and the dump is not read",
        ):
            import_dump(path, "--timeout", "2")
    finally:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        client.delete(nobody)
        client.close()
    assert len(list((tmp_path / "chunks").glob("*.json"))) == 3
    assert DumpChunk.objects.count() == 3  # the fourth waits for one of them to be done


def test_wait_names_the_queue_no_worker_consumes_under_the_settings_users_run(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: AttributeError 'Settings' object has no attribute 'CELERY_TASK_DEFAULT_QUEUE' (only
    the test settings define it) whenever no chunk ended for 5 s: no worker, a busy one, a restart."""
    nobody = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-nobody"
    del settings.CELERY_TASK_DEFAULT_QUEUE  # as in config.settings.local and production
    monkeypatch.setitem(app.conf, "task_default_queue", nobody)
    monkeypatch.setitem(app.conf, "CELERY_TASK_ALWAYS_EAGER", False)
    monkeypatch.setattr(console, "NO_WORKER_HINT_AFTER", 0.2)
    settings.WIKIDATA_DUMP_CHUNK_BYTES = 2048
    path = tmp_path / "dump.json.gz"
    path.write_bytes(gzip.compress(b"[\n" + b",\n".join(make_dump.lines(10)) + b"\n]\n"))
    err = io.StringIO()
    try:
        with pytest.raises(CommandError, match=r"Gave up waiting"):
            call_command(
                "import_wikidata_dump", str(path), "--chunk-dir", str(tmp_path / "chunks"),
                "--wait", "--timeout", "3", stdout=io.StringIO(), stderr=err,
            )  # fmt: skip
    finally:
        client = redis.Redis.from_url(app.conf.broker_url)
        client.delete(nobody)
        client.close()
    assert f"No worker consumes the '{nobody}' queue" in err.getvalue()


def test_failed_chunks_filling_the_spool_stop_the_command_with_their_error(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: failed chunks counted as waiting, so the command waited for ever, saying nothing.

    The workers here fail every chunk as workers that cannot see the chunk directory would (no
    worker consumes the queue; a thread records each chunk failed, as the task would).
    """
    nobody = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-nobody"
    monkeypatch.setattr(WikidataDumpImporter, "queue", nobody)
    monkeypatch.setitem(app.conf, "CELERY_TASK_ALWAYS_EAGER", False)
    settings.WIKIDATA_DUMP_CHUNK_BYTES = 2048
    settings.WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS = 3
    path = tmp_path / "dump.json.gz"
    path.write_bytes(gzip.compress(b"[\n" + b",\n".join(make_dump.lines(100)) + b"\n]\n"))
    stop = threading.Event()

    def fail_every_chunk() -> None:
        try:
            while not stop.wait(0.05):
                DumpChunk.objects.filter(status=ChunkStatus.PENDING).update(
                    status=ChunkStatus.FAILED, error="chunk file not found here (another machine's disk?)"
                )
        finally:
            connection.close()

    failer = threading.Thread(target=fail_every_chunk, daemon=True)
    failer.start()
    try:
        with pytest.raises(CommandError) as stopped:
            import_dump(path, "--timeout", "60")
    finally:
        stop.set()
        failer.join(timeout=10)
        client = redis.Redis.from_url(app.conf.broker_url)
        client.delete(nobody)
        client.close()
    assert "chunk 0 failed: chunk file not found here (another machine's disk?)" in str(stopped.value)
    assert "run the same command again to resume" in str(stopped.value)
    assert "Gave up waiting" not in str(stopped.value)  # it did not wait out the timeout
