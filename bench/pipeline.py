"""The Wikidata set-up of benchmarks 2 to 4: a stand-in Wikidata, the bench database and a real worker."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.importers.entities import item
from tests.support.waiting import wait_until
from tests.support.wikidata_server import StandInWikidata
from tests.support.workers import CeleryWorker

from .harness import (
    PYTHON,
    QUEUES,
    Measured,
    bench_database,
    bench_worker,
    environment,
    purge_queues,
    run_measured,
)

# Seconds the stand-in adds to every request, and requests in flight at once: the ceiling is 60/s.
LATENCY = 0.05
CONCURRENCY = 3
CEILING = CONCURRENCY / LATENCY


@dataclass
class Pipeline:
    """A running set-up: ``ids`` are served by ``standin`` and imported by ``worker``."""

    standin: StandInWikidata
    worker: CeleryWorker
    ids: list[str]

    def timeout(self, count: int) -> float:
        """A bound on any import of ``count`` ids here: ten times the ideal, plus a minute."""
        return count / CEILING * 10 + 60


def ids(count: int, first: int = 1) -> list[str]:
    return [f"Q{number}" for number in range(first, first + count)]


@contextmanager
def pipeline(
    count: int,
    *,
    worker_settings: str = "config.settings.local",
    worker_env: dict[str, str] | None = None,
) -> Iterator[Pipeline]:
    """Serve Q1..Q``count`` with ``LATENCY``; one worker with ``CONCURRENCY`` processes consumes them.

    The worker is warmed up on other ids first (its pool processes open their connections), and
    the tables are emptied again before the benchmark gets the pipeline.
    """
    wanted = ids(count)
    warm_up = ids(CONCURRENCY * 2, first=count + 1)
    with bench_database(), StandInWikidata() as standin:
        for number, wikidata_id in enumerate([*wanted, *warm_up], start=1):
            standin.add_entity(item(wikidata_id, f"Entity {number}", lastrevid=1_000_000 + number))
        standin.latency = LATENCY
        env = {**(worker_env or {}), "WIKIDATA_BASE_URL": standin.base_url}
        worker = bench_worker(
            "wikidata", [QUEUES.wikidata], concurrency=CONCURRENCY, settings_module=worker_settings, env=env
        )
        try:
            with worker:
                running = Pipeline(standin, worker, wanted)
                import_in_process(warm_up, running.timeout(len(warm_up)))
                clear_tables()
                standin.requests.clear()
                yield running
        finally:
            purge_queues()


def import_in_process(wikidata_ids: list[str], timeout: float, **options: Any) -> float:
    """Send the ids with ``WikidataImporter.import_bulk`` from here; wait until every one has an outcome.

    ``options`` go to ``import_bulk``. Returns the seconds from the first send to the last outcome.
    """
    from importers.importers import WikidataImporter
    from importers.models import ImportRun

    run = ImportRun.objects.create()
    start = time.perf_counter()
    sent = WikidataImporter().import_bulk(wikidata_ids, run_id=run.pk, **options)
    ImportRun.objects.filter(pk=run.pk).update(requested=sent)
    wait_until(
        lambda: run.finished_now() >= sent,
        timeout,
        why=lambda: f"{run.finished_now()} of {sent} ids finished",
        interval=0.02,
    )
    return time.perf_counter() - start


def import_with_command(running: Pipeline, *options: str) -> Measured:
    """Run ``manage.py import_wikidata --file IDS --wait OPTIONS`` against the pipeline; start-up included."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ids.txt"
        path.write_text("\n".join(running.ids) + "\n")
        argv = [PYTHON, "manage.py", "import_wikidata", "--file", str(path), "--wait", *options]
        env = environment("config.settings.local", WIKIDATA_BASE_URL=running.standin.base_url)
        return run_measured(argv, env, running.timeout(len(running.ids)))


def clear_tables() -> None:
    """Forget every imported entity, outcome and run, so that the next import starts afresh."""
    from importers.models import ImportOutcome, ImportRun, WikidataEntity, WikidataRedirect

    for model in (ImportOutcome, WikidataRedirect, WikidataEntity, ImportRun):
        model.objects.all().delete()
