"""What the import commands share at the console: ``--wait``/``--timeout``/``--sync``, the progress
bar on stderr, the wait for workers (its deadline, and a hint when no worker takes the queue), and
what to say when the database cannot be used."""

from __future__ import annotations

import argparse
import math
import sqlite3
import time
from typing import IO, Any, cast

from celery import current_app
from django.core.management.base import CommandParser, OutputWrapper
from django.db import DatabaseError, connection
from rich.console import Console
from rich.progress import Progress, ProgressColumn

from core.budget import Budget, BudgetUnavailable
from core.sender import runs_in_process

from .models import ImportRun
from .wikidata_api import MAX_BATCH

# With nothing ended for this many seconds, a wait looks for a worker on the queue.
NO_WORKER_HINT_AFTER = 5.0
NO_WORKER_HINT = (
    "No worker consumes the '{queue}' queue: start one, e.g. "
    "`celery -A config.celery_app worker --queues {queues}` (see Running workers in the README)."
)
# How often a wait reads the progress from the database.
POLL = 0.5
# How long sqlite3 waits for another writer when the settings do not say.
SQLITE_DEFAULT_TIMEOUT = 5.0


def add_waiting_arguments(parser: CommandParser, until: str) -> None:
    """Add ``--wait`` (show progress ``until`` ...), ``--timeout`` and ``--sync``."""
    parser.add_argument("--wait", action="store_true", help=f"With a broker: show progress until {until}.")
    parser.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="With --wait: give up waiting after this long (the workers go on), and exit non-zero.",
    )
    parser.add_argument("--sync", action="store_true", help="Import in this process even with a broker.")


def add_batch_size_argument(parser: CommandParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=batch_size,
        default=1,
        metavar="N",
        help=f"Fetch N ids (1 to {MAX_BATCH}) per task with one wbgetentities request; default 1.",
    )


def batch_size(text: str) -> int:
    """``--batch-size``'s type: 1 to 50, the most ids wbgetentities answers at once."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {MAX_BATCH}")
    return value


def seconds(text: str) -> float:
    """``--timeout``'s type: a finite number of seconds above 0."""
    value = float(text)  # argparse turns a ValueError into "invalid seconds value"
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def progress_bar(stderr: OutputWrapper, *columns: str | ProgressColumn, shown: bool) -> Progress:
    """A Rich progress bar on the command's ``stderr``, styled on a terminal; hidden unless ``shown``."""
    console = Console(file=cast(IO[str], _Unstyled(stderr)), force_terminal=stderr.isatty())
    return Progress(*columns, console=console, disable=not shown)


class Waiting:
    """A wait for the workers: its deadline, and a hint, once, when nothing ends and no worker takes
    the queue."""

    def __init__(self, progress: Progress, queue: str, timeout: float | None, queues: str = "") -> None:
        """``queues``: what the hint's example worker consumes (default: ``queue`` alone)."""
        self.progress = progress
        self.queue, self.queues = queue, queues or queue
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = None if timeout is None else self.started + timeout
        self.ended: int | None = None
        self.since = self.started
        self.hinted = False

    def expired(self) -> bool:
        """Whether ``timeout`` seconds have passed since the wait began."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def note(self, ended: int) -> None:
        """Keep how many have ended; with none more for ``NO_WORKER_HINT_AFTER`` seconds, say if no
        worker consumes the queue (asked once)."""
        now = time.monotonic()
        if ended != self.ended:
            self.ended, self.since = ended, now
        if self.hinted or now - self.since < NO_WORKER_HINT_AFTER or runs_in_process():
            return
        self.hinted = True
        if not consumers_of(self.queue):
            hint = NO_WORKER_HINT.format(queue=self.queue, queues=self.queues)
            self.progress.console.print(hint, markup=False)

    def pause(self) -> None:
        time.sleep(min(POLL, self.timeout or POLL))


def consumers_of(queue: str) -> list[str]:
    """The workers (node names) that answer within a second and consume ``queue``."""
    answers = current_app.control.inspect(timeout=1.0).active_queues() or {}
    return [node for node, queues in answers.items() if any(q.get("name") == queue for q in queues)]


class RequestGauge:
    """What the workers' shared request budget shows: requests in flight, and their rate lately."""

    # The rate is over the last this many seconds.
    WINDOW = 5.0

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.samples: list[tuple[float, int]] = []

    def reading(self) -> str:
        """``"3/3 requests in flight, 58.2/s"``; empty when the budget is not shared (nothing to see here)."""
        if not self.budget.shared:
            return ""
        try:
            in_flight, started = self.budget.in_flight(), self.budget.started()
        except BudgetUnavailable:
            return "request budget unavailable"
        now = time.monotonic()
        self.samples = [(at, count) for at, count in self.samples if now - at <= self.WINDOW]
        self.samples.append((now, started))
        first_at, first = self.samples[0]
        seconds = now - first_at
        rate = f", {(started - first) / seconds:.1f}/s" if seconds > 0 else ""
        return f"{in_flight}/{self.budget.limit} requests in flight{rate}"


def database_problem(error: DatabaseError) -> str:
    """Return what went wrong with the database, in words an operator can act on.

    A locked database is not one that needs migrating: SQLite answers "database is locked" once
    another process has held its write lock for longer than the connection's timeout.
    """
    if _is_locked(error):
        timeout = connection.settings_dict["OPTIONS"].get("timeout", SQLITE_DEFAULT_TIMEOUT)
        return (
            f"The database is locked: another process has been writing to it for longer than the "
            f"{timeout:g} s this command waits (SQLITE_TIMEOUT). Try again when it is done, or set "
            f"SQLITE_TIMEOUT to wait longer. ({error})"
        )
    try:
        migrated = ImportRun._meta.db_table in connection.introspection.table_names()
    except DatabaseError:
        migrated = True  # cannot even list the tables: not a matter of migrations
    if not migrated:
        return f"The database has no tables yet ({error}): run `python manage.py migrate` first."
    return f"The database cannot be used ({error}): check DATABASE_URL, and that the database is up."


def _is_locked(error: DatabaseError) -> bool:
    # sqlite3 gives the error's code (an extended code: the primary one is its low byte).
    code = getattr(error.__cause__, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class _Unstyled:
    """The command's stderr as a plain stream for Rich, which writes partial lines and styles them itself."""

    def __init__(self, output: Any) -> None:
        self.output = output

    def write(self, text: str) -> int:
        self.output.write(text, style_func=lambda line: line, ending="")
        return len(text)

    def flush(self) -> None:
        self.output.flush()
