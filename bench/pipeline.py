"""The Wikidata set-up of the API benchmarks: a stand-in Wikidata, the bench database and real workers."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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
    environment,
    procfile_worker,
    purge_queues,
    run_measured,
)

# Seconds the stand-in adds to every request, and the request budget (WIKIDATA_MAX_IN_FLIGHT's
# default): the ceiling is 60 requests a second, however many workers and processes share it.
LATENCY = 0.05
IN_FLIGHT = 3
CEILING = IN_FLIGHT / LATENCY


@dataclass
class Pipeline:
    """A running set-up: ``ids`` are served by ``standin`` and imported by ``workers``."""

    standin: StandInWikidata
    workers: list[CeleryWorker]
    ids: list[str]

    def timeout(self, count: int) -> float:
        """A bound on any import of ``count`` ids here: ten times the ideal, plus a minute."""
        return count / CEILING * 10 + 60


def ids(count: int, first: int = 1) -> list[str]:
    return [f"Q{number}" for number in range(first, first + count)]


@contextmanager
def pipeline(count: int, *, workers: int = 1, worker_env: dict[str, str] | None = None) -> Iterator[Pipeline]:
    """Serve Q1..Q``count`` with ``LATENCY``; ``workers`` workers started from the Procfile consume them.

    The workers are warmed up on other ids first (their pool processes open their connections),
    and the tables are emptied again before the benchmark gets the pipeline.
    """
    wanted = ids(count)
    with bench_database(), StandInWikidata() as standin, ExitStack() as stack:
        env = {**(worker_env or {}), "WIKIDATA_BASE_URL": standin.base_url}
        started = [
            stack.enter_context(procfile_worker(f"wikidata-{n}", [QUEUES.wikidata], env=env))
            for n in range(1, workers + 1)
        ]
        warm_up = ids(sum(worker.concurrency for worker in started) * 2, first=count + 1)
        for number, wikidata_id in enumerate([*wanted, *warm_up], start=1):
            standin.add_entity(item(wikidata_id, f"Entity {number}", lastrevid=1_000_000 + number))
        standin.latency = LATENCY
        try:
            running = Pipeline(standin, started, wanted)
            import_in_process(warm_up, running.timeout(len(warm_up)))
            clear_tables()
            standin.clear_log()
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
