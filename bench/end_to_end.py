"""Benchmark 2: one task per id through a real worker, against a plain sequential loop in one process."""

from __future__ import annotations

import time
from typing import Any

from .pipeline import CEILING, IN_FLIGHT, LATENCY, Pipeline, import_in_process, pipeline
from .report import Goal, Result, Table, fmt

NAME = "end_to_end"
TITLE = "2. End to end: one task per id through a worker, against a sequential loop"
GOAL = 0.9


def sequential_loop(running: Pipeline) -> float:
    """Fetch and store every id in this process, one after the other, with the plain ``wikidata`` client."""
    from django.conf import settings
    from django.utils import timezone
    from wikidata.client import Client
    from wikidata.entity import EntityId

    from importers.documents import summarize
    from importers.models import WikidataEntity

    client = Client(running.standin.base_url)
    start = time.perf_counter()
    for wikidata_id in running.ids:
        document = client.get(EntityId(wikidata_id), load=True).data
        assert document is not None
        summary = summarize(document, settings.WIKIDATA_LANGUAGE)
        WikidataEntity.objects.update_or_create(
            wikidata_id=wikidata_id,
            defaults={
                "entity_type": summary.entity_type,
                "label": summary.label,
                "description": summary.description,
                "data": document,
                "lastrevid": summary.lastrevid,
                "modified": summary.modified,
                "fetched_at": timezone.now(),
            },
        )
    return time.perf_counter() - start


def through_worker(count: int, **options: Any) -> tuple[float, int, int]:
    """Seconds, HTTP requests and ``imported`` outcomes of importing Q1..Q``count`` through a worker."""
    from importers.models import ImportOutcome, WikidataEntity

    with pipeline(count, **options) as running:
        seconds = import_in_process(running.ids, running.timeout(count))
        imported = ImportOutcome.objects.filter(status=ImportOutcome.Status.IMPORTED).count()
        assert WikidataEntity.objects.count() == count
        return seconds, len(running.standin.requests), imported


def run(quick: bool) -> Result:
    from importers.models import WikidataEntity

    count = 100 if quick else 1000
    result = Result(NAME, TITLE)
    table = Table(
        f"{count:,} ids, stand-in latency {LATENCY * 1000:.0f} ms a request, PostgreSQL",
        ["side", "ids", "HTTP requests", "seconds", "entities/s", "% of ceiling"],
    )

    def add(label: str, requests: int, seconds: float) -> float:
        rate = count / seconds
        table.add(label, fmt(count), fmt(requests), fmt(seconds, 2), fmt(rate, 1), f"{rate / CEILING:.0%}")
        return rate

    with pipeline(count) as running:
        loop_seconds = sequential_loop(running)
        loop_requests = len(running.standin.requests)
        assert WikidataEntity.objects.count() == count
    loop_rate = add("sequential loop (one process)", loop_requests, loop_seconds)
    seconds, requests, imported = through_worker(count)
    worker_rate = add("import_bulk → one worker from the Procfile", requests, seconds)
    table.add("ratio worker / loop", "", "", "", f"{worker_rate / loop_rate:.2f}", "")
    table.add(f"ceiling {IN_FLIGHT} in flight / {LATENCY} s", "", "", "", fmt(CEILING, 1), "100%")
    table.notes += [
        "Loop: wikidata.client.Client(base_url).get(EntityId(id), load=True) and "
        "WikidataEntity.objects.update_or_create(...) with the same fields, in the bench process.",
        "Worker: WikidataImporter().import_bulk(ids, run_id=...) from the bench process; one worker "
        "started from the Procfile's `worker:` line (its options and --concurrency), on the run's "
        f"Wikidata queue, config.settings.local, its requests bounded by the shared budget ({IN_FLIGHT} "
        "in flight); timed from the first send until every id of the run has an outcome (polled every "
        "20 ms). Each worker run has a new database, stand-in and worker, warmed up on other ids first.",
        f"{imported:,} of {count:,} outcomes of the product's worker run were `imported`.",
        "The worker keeps its database connection across tasks (CELERY_DB_REUSE_MAX, CONN_MAX_AGE); "
        "closing it around every task, Celery's default, cost 10 points of the ceiling in the "
        "previous run (72% against 82%).",
    ]
    result.tables.append(table)
    share = worker_rate / CEILING
    result.goals.append(Goal("worker rate / ceiling", f"{share:.1%}", f"≥ {GOAL:.0%}", share >= GOAL))
    return result
