"""Benchmark 5: what a worker adds to a task method that does (almost) nothing, against a plain loop."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from tests.support.waiting import wait_until
from tests.support.workers import CeleryWorker

from .harness import QUEUES, TOKEN, bench_worker, broker, purge_queues, queue_length
from .report import Result, Table, fmt

if TYPE_CHECKING:
    from celery import Celery


class Counter:
    """The Redis key that the no-op task increments."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._redis = broker()

    def reset(self) -> None:
        self._redis.set(self.key, 0)

    def value(self) -> int:
        return int(cast(bytes | None, self._redis.get(self.key)) or 0)

    def wait_for(
        self, count: int, timeout: float, why: Callable[[], str] = lambda: "", interval: float = 0.02
    ) -> None:
        """Return once the counter is at ``count`` or more, polled every ``interval`` seconds.

        Raises:
            WaitTimeout: it was still below after ``timeout`` seconds; the message says where it
                stopped, then ``why()``.
        """
        wait_until(
            lambda: self.value() >= count,
            timeout,
            why=lambda: f"{self.key} stopped at {self.value()} of {count}\n{why()}",
            interval=interval,
        )

    def delete(self) -> None:
        self._redis.delete(self.key)
        self._redis.close()


NAME = "overhead"
TITLE = "5. Worker overhead: no-op task methods through a worker, against a plain loop"
POOLS = (("solo", 1), ("prefork", 1))
WARM_UP = 50
REPEATS = 3


def drain_full_queue(app: Celery, worker: CeleryWorker, counter: Counter, count: int) -> tuple[float, float]:
    """Seconds to send ``count`` ticks while the worker does not consume, and for it to run them all."""
    from .importers import BenchNoopImporter

    importer = BenchNoopImporter()
    destination = [worker.nodename]
    if not app.control.cancel_consumer(QUEUES.noop, destination=destination, reply=True, timeout=5):
        raise RuntimeError(f"{worker.nodename}: no reply to cancel_consumer")
    counter.reset()
    start = time.perf_counter()
    for _ in range(count):
        importer.tick.as_task(counter.key)
    send = time.perf_counter() - start
    if (queued := queue_length(QUEUES.noop)) != count:
        raise RuntimeError(f"{worker.nodename}: the queue holds {queued}, not {count}")
    start = time.perf_counter()
    app.control.add_consumer(QUEUES.noop, destination=destination, reply=True, timeout=5)
    counter.wait_for(count, count * 0.05 + 60, why=worker.log_tail, interval=0.005)
    return send, time.perf_counter() - start


def run(quick: bool) -> Result:
    from config.celery_app import app

    from .importers import BenchNoopImporter

    count = 500 if quick else 5000
    importer = BenchNoopImporter()
    counter = Counter(f"{TOKEN}-ticks")

    result = Result(NAME, TITLE)
    table = Table(
        f"{count:,} calls of BenchNoopImporter.tick (one Redis INCR), Redis broker, no result backend",
        ["side", "seconds", "calls/s", "µs a call", "µs more than the loop"],
    )
    try:
        loops = []
        for _ in range(REPEATS):
            counter.reset()
            start = time.perf_counter()
            for _ in range(count):
                importer.tick(counter.key)
            loops.append(time.perf_counter() - start)
            assert counter.value() == count
        loop = statistics.median(loops)
        table.add(
            f"plain loop: importer.tick(counter) (median of {REPEATS})",
            fmt(loop, 2),
            fmt(count / loop),
            fmt(loop / count * 1e6, 1),
            "",
        )

        for pool, concurrency in POOLS:
            name = f"worker --pool {pool} --concurrency {concurrency}"
            with bench_worker(
                f"noop-{pool}",
                [QUEUES.noop],
                pool=pool,
                concurrency=concurrency,
                settings_module="bench.settings",
            ) as worker:
                counter.reset()
                for _ in range(WARM_UP):
                    importer.tick.as_task(counter.key)
                counter.wait_for(WARM_UP, 60, why=worker.log_tail)
                runs = [drain_full_queue(app, worker, counter, count) for _ in range(REPEATS)]
            send = statistics.median(send for send, _ in runs)
            drain = statistics.median(drain for _, drain in runs)
            table.add(
                f"{name}: drain of a full queue (median of {REPEATS})",
                fmt(drain, 2),
                fmt(count / drain),
                fmt(drain / count * 1e6, 1),
                fmt((drain - loop) / count * 1e6, 1),
            )
            table.add(
                f"sending them: importer.tick.as_task(counter) (median of {REPEATS})",
                fmt(send, 2),
                fmt(count / send),
                fmt(send / count * 1e6, 1),
                "",
            )
    finally:
        counter.delete()
        purge_queues()
    table.notes += [
        f"Each worker (bench.settings: the local settings plus the bench app) is warmed up on {WARM_UP} "
        "tasks; then, each time, it stops consuming (cancel_consumer), the queue is filled, and the drain "
        "is timed from add_consumer until the counter reaches N (polled every 5 ms).",
        "Workers run as in production: acks late, prefetch multiplier 1, --loglevel INFO (two log lines "
        "a task), no result backend.",
    ]
    result.tables.append(table)
    return result
