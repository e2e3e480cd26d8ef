"""Benchmark 3: batched mode against one task per id, same stand-in, latency and worker."""

from __future__ import annotations

from .pipeline import CEILING, IN_FLIGHT, LATENCY, Pipeline, clear_tables, import_in_process, pipeline
from .report import Result, Table, fmt

NAME = "batched"
TITLE = "3. Batched mode against one task per id"
BATCH_SIZES = (50,)


def import_one_task_per_id(running: Pipeline) -> float:
    """Seconds to import ``running.ids`` with one task per id, until every id has an outcome."""
    return import_in_process(running.ids, running.timeout(len(running.ids)))


def import_batched(running: Pipeline, batch_size: int) -> float:
    """Seconds to import ``running.ids`` in batches of ``batch_size``, until every id has an outcome."""
    return import_in_process(running.ids, running.timeout(len(running.ids)), batch_size=batch_size)


def run(quick: bool) -> Result:
    count = 100 if quick else 1000
    result = Result(NAME, TITLE)
    table = Table(
        f"{count:,} ids, stand-in latency {LATENCY * 1000:.0f} ms a request, one worker from the "
        f"Procfile, {IN_FLIGHT} requests in flight at most, PostgreSQL",
        ["mode", "HTTP requests", "seconds", "entities/s", "% of one-per-id ceiling", "ratio"],
    )
    with pipeline(count) as running:
        batched: list[tuple[int, int, float]] = []
        try:
            for batch_size in BATCH_SIZES:
                seconds = import_batched(running, batch_size)
                batched.append((batch_size, len(running.standin.requests), seconds))
                clear_tables()
                running.standin.clear_log()
        except NotImplementedError as error:
            result.notes.append(f"Pending: {error}. Nothing was measured.")
            return result
        single = import_one_task_per_id(running)
        single_requests = len(running.standin.requests)
    single_rate = count / single
    table.add(
        "one task per id",
        fmt(single_requests),
        fmt(single, 2),
        fmt(single_rate, 1),
        f"{single_rate / CEILING:.0%}",
        "1.00",
    )
    for batch_size, requests, seconds in batched:
        rate = count / seconds
        table.add(
            f"batches of {batch_size}",
            fmt(requests),
            fmt(seconds, 2),
            fmt(rate, 1),
            f"{rate / CEILING:.0%}",
            f"{rate / single_rate:.2f}",
        )
    result.tables.append(table)
    return result
