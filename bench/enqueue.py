"""Benchmark 1: enqueueing with ``as_task`` and with ``import_wikidata``, against bare ``.delay()``."""

from __future__ import annotations

import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from .harness import (
    PYTHON,
    QUEUES,
    Measured,
    bench_database,
    environment,
    purge_queues,
    queue_length,
    run_measured,
)
from .report import Goal, Result, Table, fmt

NAME = "enqueue"
TITLE = "1. Enqueue: as_task and import_wikidata against a bare .delay()"
ROUNDS = 5
# Messages a sender sends before the other takes its turn.
BLOCK = 250
AS_TASK_GOAL = 0.9
COMMAND_GOAL = 1.0
COMMAND_TIMEOUT = 600.0

Sender = Callable[[list[str]], float]


def send_as_task(ids: list[str]) -> float:
    """``obj.import_single.as_task(wikidata_id=...)`` for each id, as user code writes it."""
    from importers.importers import WikidataImporter

    importer = WikidataImporter()
    start = time.perf_counter()
    for wikidata_id in ids:
        importer.import_single.as_task(wikidata_id=wikidata_id)
    return time.perf_counter() - start


def send_delay(ids: list[str]) -> float:
    """The method caller's own ``.delay()`` with the same message: no checks, no options."""
    from core.tasks import call_importer_method

    start = time.perf_counter()
    for wikidata_id in ids:
        call_importer_method.delay("WikidataImporter", "import_single", [], {"wikidata_id": wikidata_id})
    return time.perf_counter() - start


@dataclass
class Rates:
    """Per round: messages a second (wall clock), and the sending process's CPU µs a message."""

    wall: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


def rounds(senders: dict[str, tuple[Sender, str]], count: int, times: int = ROUNDS) -> dict[str, Rates]:
    """Rates of each sender, one a round, over ``times`` rounds of ``count`` messages each.

    Within a round the senders take turns in blocks of ``BLOCK`` messages, swapping who goes first
    at every block, so that a burst of load from elsewhere falls on both alike. After each round
    every sender's messages are counted in its queue, then purged.
    """
    ids = [f"Q{number}" for number in range(1, count + 1)]
    blocks = [ids[start : start + BLOCK] for start in range(0, count, BLOCK)]
    rates = {name: Rates() for name in senders}
    for _ in range(times):
        wall = dict.fromkeys(senders, 0.0)
        cpu = dict.fromkeys(senders, 0.0)
        for number, block in enumerate(blocks):
            for name in list(senders) if number % 2 == 0 else list(reversed(senders)):
                start = time.process_time()
                wall[name] += senders[name][0](block)
                cpu[name] += time.process_time() - start
        for name, (_, queue) in senders.items():
            arrived = queue_length(queue)
            if arrived != count:
                raise RuntimeError(f"{name}: {arrived} of {count} messages arrived in {queue}")
            rates[name].wall.append(count / wall[name])
            rates[name].cpu_us.append(cpu[name] / count * 1e6)
        purge_queues()
    return rates


def span(rates: list[float]) -> str:
    return f"{fmt(min(rates))}-{fmt(max(rates))}"


def run_command(argv: list[str], expected: int) -> Measured:
    measured = run_measured(argv, environment("config.settings.local"), COMMAND_TIMEOUT)
    arrived = queue_length(QUEUES.wikidata)
    purge_queues()
    if arrived != expected:
        raise RuntimeError(f"{' '.join(argv)}: {arrived} of {expected} messages arrived")
    return measured


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


def own_work_us() -> float:
    """µs of ``obj.import_single.as_task(...)`` with the Celery call it ends in replaced by a no-op.

    What ``as_task`` adds of its own (argument checks, options, the transaction check), without
    the broker and the other processes' load that make the wall-clock ratio noisy.
    """
    from importers.importers import WikidataImporter

    importer = WikidataImporter()
    with mock.patch("core.tasks.call_importer_method.apply_async", new=_no_op):
        seconds = min(
            timeit.repeat(lambda: importer.import_single.as_task(wikidata_id="Q1"), number=20_000, repeat=5)
        )
    return seconds / 20_000 * 1e6


def send_bulk(ids: list[str]) -> float:
    """``WikidataImporter().import_bulk(ids)``: what the command calls, without the command around it."""
    from importers.importers import WikidataImporter

    start = time.perf_counter()
    WikidataImporter().import_bulk(ids)
    return time.perf_counter() - start


def run(quick: bool) -> Result:
    count = 500 if quick else 5000
    small, large = (1000, 10_000) if quick else (10_000, 100_000)
    result = Result(NAME, TITLE)
    senders: dict[str, tuple[Sender, str]] = {
        "obj.import_single.as_task(...)": (send_as_task, QUEUES.wikidata),
        "call_importer_method.delay(...)": (send_delay, QUEUES.default),
    }
    bulk_senders: dict[str, tuple[Sender, str]] = {
        "import_bulk": (send_bulk, QUEUES.wikidata),
        "delay": (send_delay, QUEUES.default),
    }
    startups, ones, commands = [], [], []
    bulk = {name: Rates() for name in bulk_senders}
    with bench_database(), tempfile.TemporaryDirectory() as directory:
        purge_queues()
        rounds(senders, 2 * BLOCK, times=1)  # warm-up: connections, producer pool, first declarations
        in_process = rounds(senders, count)
        own_us = own_work_us()

        files = {ids: Path(directory) / f"ids-{ids}.txt" for ids in (1, small, large)}
        for ids, path in files.items():
            path.write_text("".join(f"Q{number}\n" for number in range(1, ids + 1)))
        manage = [PYTHON, "manage.py", "import_wikidata"]
        for _ in range(ROUNDS):  # each round: the commands, then the same ids from this process
            startups.append(run_command([*manage, "--help"], 0))
            ones.append(run_command([*manage, "--file", str(files[1])], 1))
            commands.append(run_command([*manage, "--file", str(files[small])], small))
            for name, rates in rounds(bulk_senders, small, times=1).items():
                bulk[name].wall += rates.wall
                bulk[name].cpu_us += rates.cpu_us
        large_command = run_command([*manage, "--file", str(files[large])], large)

    as_task_rate = statistics.median(in_process["obj.import_single.as_task(...)"].wall)
    delay_rate = statistics.median(in_process["call_importer_method.delay(...)"].wall)
    table = Table(
        f"In one running process: {count:,} messages a round, {ROUNDS} rounds, Redis broker, no worker",
        ["side", "msgs/s (median)", "min-max", "µs a message", "CPU µs a message"],
    )
    for name, rates in in_process.items():
        rate = statistics.median(rates.wall)
        cpu = fmt(statistics.median(rates.cpu_us), 1)
        table.add(name, fmt(rate), span(rates.wall), fmt(1e6 / rate, 1), cpu)
    table.add("ratio as_task / delay", f"{as_task_rate / delay_rate:.3f}", "", "", "")
    table.add("as_task's own work: the same call, Celery's apply_async a no-op", "", "", fmt(own_us, 1), "")
    table.notes.append(
        "Same kwargs ({'wikidata_id': 'Q…'}) on both sides; as_task goes to the Wikidata queue with its "
        "shadow name, delay to the default queue; both queues are the run's own, counted and purged. "
        f"Within a round the two take turns every {BLOCK} messages. CPU: the bench process's own CPU "
        "time while sending (time.process_time), which other processes' load hardly changes."
    )
    result.tables.append(table)
    ratio = as_task_rate / delay_rate
    result.goals.append(Goal("as_task / delay", f"{ratio:.3f}", f"≥ {AS_TASK_GOAL}", ratio >= AS_TASK_GOAL))

    startup = statistics.median(m.seconds for m in startups)
    one = statistics.median(m.seconds for m in ones)
    command = statistics.median(m.seconds for m in commands)
    small_rss = max(m.max_rss_mib for m in commands)
    delay_small = statistics.median(bulk["delay"].wall)
    bulk_small = statistics.median(bulk["import_bulk"].wall)
    net_rate = small / (command - startup)
    table = Table(
        "import_wikidata --file ids.txt (no --wait) as a subprocess, against a bare .delay() loop",
        ["run", "ids", "seconds", "msgs/s, whole", "msgs/s, less start-up", "peak RSS MiB"],
    )

    def command_row(label: str, ids: int, runs: list[Measured]) -> None:
        seconds = statistics.median(m.seconds for m in runs)
        rss = fmt(max(m.max_rss_mib for m in runs), 1)
        if ids <= 1:  # a rate would mean nothing: these rows are the costs every run pays
            table.add(label, str(ids), fmt(seconds, 2), "", "", rss)
            return
        table.add(label, fmt(ids), fmt(seconds, 2), fmt(ids / seconds), fmt(ids / (seconds - startup)), rss)

    median = f"median of {ROUNDS}"
    command_row(f"start-up: import_wikidata --help ({median})", 0, startups)
    command_row(f"import_wikidata --file, 1 id ({median})", 1, ones)
    command_row(f"import_wikidata --file ({median})", small, commands)
    command_row("import_wikidata --file (once)", large, [large_command])
    table.add(
        f"bare .delay() loop in a running process ({median}, one a round after the commands)",
        fmt(small),
        "",
        fmt(delay_small),
        "",
        "",
    )
    table.add("ratio command (less start-up) / delay", "", "", "", f"{net_rate / delay_small:.3f}", "")
    table.add(
        f"import_bulk(ids) in a running process ({median}, taking turns with the delay loop)",
        fmt(small),
        "",
        fmt(bulk_small),
        "",
        "",
    )
    table.add("ratio import_bulk / delay", "", "", f"{bulk_small / delay_small:.2f}", "", "")
    marginal = (small - 1) / (command - one)
    table.notes += [
        "Each command is timed whole, wall clock, from the bench process; start-up is the same command "
        "with --help: Python, django.setup() and the command's imports, no database or broker. The "
        "1-id run adds what every run pays once: database and broker connections, the ImportRun, the "
        f"first send. Per id beyond that, the {fmt(small)}-id command sends {fmt(marginal)} msgs/s "
        f"({marginal / delay_small:.2f} of the delay loop).",
        "In the running process, CPU µs a message (median): import_bulk "
        f"{statistics.median(bulk['import_bulk'].cpu_us):.0f}, "
        f"delay {statistics.median(bulk['delay'].cpu_us):.0f}.",
        "Peak RSS and CPU time: /usr/bin/time -v around the command (a child forked from the bench "
        "process itself would report the bench process's RSS, which Linux keeps across exec). "
        f"CPU time, {fmt(small)} ids: {statistics.median(m.cpu_seconds for m in commands):.2f} s; "
        f"{fmt(large)} ids: {large_command.cpu_seconds:.2f} s.",
    ]
    result.tables.append(table)
    ratio = net_rate / delay_small
    result.goals.append(
        Goal("command (less start-up) / delay", f"{ratio:.3f}", f"≥ {COMMAND_GOAL}", ratio >= COMMAND_GOAL)
    )
    growth = large_command.max_rss_mib - small_rss
    result.goals.append(
        Goal(
            f"peak RSS, {fmt(large)} ids against {fmt(small)}",
            f"{growth:+.1f} MiB",
            "flat (within 5 MiB)",
            abs(growth) <= 5,
        )
    )
    return result
