"""``import_wikidata``: import Wikidata entities by id, as Celery tasks (one an id, or one a batch)."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.db.models import Max
from django.db.models.functions import Length
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from core.database import UNAVAILABLE, patiently
from core.exceptions import EnqueueFailed
from core.sender import in_process, runs_in_process
from core.tasks import call_importer_method
from importers.console import RequestGauge, Waiting, add_waiting_arguments, database_problem, progress_bar
from importers.entity_ids import InvalidEntityId, SourcedId, read_ids
from importers.fetch import MAX_BATCH, request_budget
from importers.importers import WikidataImporter, chunked
from importers.models import ImportRun, RunOrigin, RunOutcome, Status

# Listing every failed id is useful up to a point; past it, the admin has the rest.
MAX_LISTED = 50
# Ids are added to the run this many at a time, just before they are sent.
REQUEST_CHUNK = 500
NO_OUTCOME = "no outcome"
STATUS_WIDTH = max(len(NO_OUTCOME), *(len(status) for status in Status))
NO_OUTCOME_HELP = "its task ended without recording one (see the worker's log)"


class Command(BaseCommand):
    help = "Import Wikidata entities by id (e.g. Q1022): a Celery task an id, or a batch (--batch-size)."
    verbosity = 1  # set from --verbosity by handle()
    id_width = 0  # of the longest valid id, for the outcome lines

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_id_arguments(parser)
        self.add_sending_arguments(parser)

    def add_id_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", metavar="ID", help="Entity ids: Q1022, P31, L7, ...")
        parser.add_argument(
            "--file", metavar="PATH", help="Read ids from a file, one a line ('-' for stdin)."
        )
        parser.add_argument(
            "--skip-invalid", action="store_true", help="Import the valid ids even when some are invalid."
        )

    def add_sending_arguments(self, parser: CommandParser) -> None:
        add_waiting_arguments(parser, until="every id has an outcome")
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=1,
            metavar="N",
            help=f"Fetch N ids (1 to {MAX_BATCH}) per task with one wbgetentities request; default 1.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        with ExitStack() as stack:
            source = self.open_source(options["ids"], options["file"], stack)
            valid = self.check_ids(source, options["skip_invalid"])
            if options["sync"]:
                stack.enter_context(in_process())
            here = runs_in_process()
            run = self.start_run()
            self.send(run, source, valid, options["batch_size"])
        self.report(run, here, options)

    def report(self, run: ImportRun, here: bool, options: dict[str, Any]) -> None:
        """Print the outcomes (run here), or what was enqueued and, with ``--wait``, the outcomes.

        Raises:
            CommandError: an id was not imported, or waiting gave up.
        """
        if not here:
            self.report_enqueued(run, options["batch_size"])
            if not options["wait"]:
                return
            self.wait_for(run, run.requested, options["timeout"])
            if self.verbosity >= 2:
                self.print_outcomes(run)
        self.summarize(run)  # run here, each id's line was printed as it ended

    def start_run(self) -> ImportRun:
        """Create the run: the command's first write to the database.

        Raises:
            CommandError: the database is locked, has no tables yet, or cannot be used; says which.
        """
        try:
            return ImportRun.objects.create(origin=RunOrigin.COMMAND)
        except DatabaseError as error:
            raise CommandError(database_problem(error)) from None

    def send(
        self,
        run: ImportRun,
        source: list[SourcedId] | Path,
        valid: int,
        batch_size: int,
        rewrite: bool = False,
    ) -> None:
        """Send (or run here) a task for each id, once, and keep how many were sent in ``run``.

        ``rewrite``: a document of the stored revision is written again (never an older one).

        Each id is added to the run's requested ids before it is sent; a duplicate is skipped.

        Raises:
            CommandError: the broker could not be reached; names the ids that were not sent.
        """
        duplicates = Duplicates()
        ids = self.requested_ids(run, source, duplicates)
        shown = runs_in_process() and self.verbosity >= 1
        try:
            with self.printed_as_they_end(run) if shown else contextlib.nullcontext():
                sent = WikidataImporter().import_bulk(
                    ids, run_id=run.pk, batch_size=batch_size, rewrite=rewrite
                )
        except EnqueueFailed as error:
            self.report_not_enqueued(run, valid - duplicates.count, error)
        if shown:  # the ids whose task ended without recording an outcome
            without = run.outcomes.filter(status="").values_list("wikidata_id", flat=True)
            for chunk in chunked(without.iterator(), REQUEST_CHUNK):
                self.print_ended(run, chunk, every=True)
        run.set_requested(sent)
        if duplicates.count and self.verbosity >= 1:
            self.stderr.write(duplicates.report())

    def requested_ids(
        self, run: ImportRun, source: list[SourcedId] | Path, duplicates: Duplicates
    ) -> Iterator[str]:
        """Yield the valid ids of ``source``, each added to the run first; collect the duplicates."""
        for chunk in chunked(self.valid_ids(source), REQUEST_CHUNK):
            new, repeated = run.request(chunk)
            duplicates.add(repeated)
            yield from new

    @contextlib.contextmanager
    def printed_as_they_end(self, run: ImportRun) -> Iterator[None]:
        """Within the block, print the lines of a task's ids as it ends (tasks that run here, on threads).

        A task is one the import sent (``import_single`` or ``import_batch``): the calls it makes
        in turn (a batch's ids handed on one by one) end before it, and are printed with it.
        """
        lock = threading.Lock()
        depth = threading.local()  # of nested task calls, in each thread

        def started(task: Any, **_: Any) -> None:
            if task.name == call_importer_method.name:
                depth.calls = getattr(depth, "calls", 0) + 1

        def ended(task: Any, args: list[Any], **_: Any) -> None:
            if task.name != call_importer_method.name:
                return
            depth.calls -= 1
            kwargs = args[-1] if args and isinstance(args[-1], dict) else {}
            ids = kwargs.get("wikidata_ids") or [kwargs.get("wikidata_id")]
            if not depth.calls and all(isinstance(i, str) for i in ids):
                with lock:
                    self.print_ended(run, ids)

        task_prerun.connect(started, weak=False)
        task_postrun.connect(ended, weak=False)
        try:
            yield
        finally:
            task_prerun.disconnect(started)  # type: ignore[attr-defined]
            task_postrun.disconnect(ended)  # type: ignore[attr-defined]

    def print_ended(self, run: ImportRun, ids: list[str], every: bool = False) -> list[str]:
        """Print the line of each of ``ids`` that has an outcome (``every``: of all); return the others."""
        if not ids:
            return ids
        outcomes = run.outcomes.filter(wikidata_id__in=ids).select_related("entity")
        ended = {outcome.wikidata_id: outcome for outcome in outcomes if outcome.status or every}
        for wikidata_id in ids:
            if wikidata_id in ended:
                self.stdout.write(outcome_line(ended[wikidata_id], self.id_width))
        return [wikidata_id for wikidata_id in ids if wikidata_id not in ended]

    def report_enqueued(self, run: ImportRun, batch_size: int) -> None:
        if self.verbosity >= 1:
            tasks = -(-run.requested // batch_size)
            noun = "task" if tasks == 1 else "tasks"
            ids = "id" if run.requested == 1 else "ids"
            self.stdout.write(f"Enqueued {tasks} import {noun} for {run.requested} {ids} (run {run.pk}).")

    def open_source(self, ids: list[str], path: str | None, stack: ExitStack) -> list[SourcedId] | Path:
        """Return the ids given as arguments, or the path of a file to stream them from."""
        if ids and path:
            raise CommandError("Give ids as arguments or with --file, not both.")
        if not path:
            if not ids:
                raise CommandError("Give at least one id, e.g. `import_wikidata Q1022`, or --file PATH.")
            return [SourcedId(raw, f"argument {number}") for number, raw in enumerate(ids, start=1)]
        if path == "-":
            # Standard input can be read only once; the ids are checked before any is sent. Its
            # bytes are copied as they are: read_ids decodes them, line by line.
            spool = stack.enter_context(tempfile.NamedTemporaryFile("w+b", suffix=".ids"))  # noqa: SIM115
            stdin = getattr(sys.stdin, "buffer", None)
            if stdin is not None:
                shutil.copyfileobj(stdin, spool)
            else:  # a text stream without bytes beneath, as tests put in its place
                for text in iter(lambda: sys.stdin.read(1 << 16), ""):
                    spool.write(text.encode("utf-8", "surrogateescape"))
            spool.flush()
            return Path(spool.name)
        if not Path(path).is_file():
            raise CommandError(f"--file {path}: no such file.")
        return Path(path)

    def sourced_ids(self, source: list[SourcedId] | Path) -> Iterator[SourcedId]:
        if isinstance(source, list):
            yield from source
            return
        with source.open("rb") as file:
            yield from read_ids(file)

    def check_ids(self, source: list[SourcedId] | Path, skip_invalid: bool) -> int:
        """Check every id before any is sent; return how many are valid.

        Raises:
            CommandError: an id is invalid (and not ``skip_invalid``), or there is no valid id.
        """
        valid = invalid = 0
        listed: list[str] = []  # the first MAX_LISTED invalid ones, with where they are
        for sourced in self.sourced_ids(source):
            try:
                self.id_width = max(self.id_width, len(sourced.normalized()))
                valid += 1
            except InvalidEntityId as error:
                invalid += 1
                # A junk file has millions of invalid lines: the first few say what is wrong.
                if len(listed) < MAX_LISTED:
                    listed.append(f"  {sourced.origin}: {error}")
        if invalid:
            if invalid > len(listed):
                listed.append(f"  ... and {invalid - len(listed)} more")
            listing = "\n".join(listed)
            noun = "id" if invalid == 1 else "ids"
            if not skip_invalid:
                raise CommandError(
                    f"{invalid} invalid {noun}; nothing was imported "
                    f"(--skip-invalid imports the rest):\n{listing}"
                )
            if self.verbosity >= 1:
                self.stderr.write(f"Skipping {invalid} invalid {noun}:\n{listing}")
        if not valid:
            raise CommandError("No valid ids to import.")
        return valid

    def valid_ids(self, source: list[SourcedId] | Path) -> Iterator[tuple[str, str]]:
        """Yield each valid id of ``source``, normalized, with where it came from."""
        for sourced in self.sourced_ids(source):
            try:
                yield sourced.normalized(), sourced.origin
            except InvalidEntityId:
                continue  # listed by check_ids already

    def report_not_enqueued(self, run: ImportRun, valid: int, error: EnqueueFailed) -> NoReturn:
        """Fail, naming the ids that were not enqueued; they are no longer the run's."""
        listed = run.withdraw_after(error.sent)[:MAX_LISTED]
        more = valid - error.sent - len(listed)
        raise CommandError(
            f"The broker at {error.broker} could not be reached: {error.__cause__}\n"
            f"{error.sent} of {valid} ids were enqueued; these {valid - error.sent} were not:\n  "
            + " ".join(listed)
            + (f" ... and {more} more" if more > 0 else "")
        )

    def print_outcomes(self, run: ImportRun) -> None:
        """Print each id of the run with its outcome and label (or error), in the order they ended."""
        if self.verbosity < 1:
            return
        outcomes = run.outcomes.select_related("entity").order_by("updated_at", "pk")
        id_width = outcomes.aggregate(width=Max(Length("wikidata_id")))["width"] or 0
        for outcome in outcomes.iterator():
            self.stdout.write(outcome_line(outcome, id_width))

    def wait_for(self, run: ImportRun, sent: int, timeout: float | None = None) -> None:
        """Show a progress bar until every id of ``run`` has an outcome.

        The command's own database connection may drop (a database restart): it reconnects,
        for up to ``IMPORTER_DATABASE_WAIT`` seconds at a time.

        Raises:
            CommandError: ``timeout`` seconds passed first (says how many ids are still to come),
                or the database stayed unavailable.
        """
        columns = (
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[requests]}"),
        )
        requests = RequestGauge(request_budget())
        with progress_bar(self.stderr, *columns, shown=self.verbosity >= 1) as progress:
            queue = settings.WIKIDATA_QUEUE
            waiting = Waiting(progress, queue, timeout, queues=f"celery,{queue}")
            bar = progress.add_task("import", total=sent, requests="")
            while True:
                try:
                    finished = patiently(run.finished_now)
                except UNAVAILABLE as error:
                    raise CommandError(f"Lost the database while waiting for run {run.pk}: {error}") from None
                progress.update(bar, completed=min(finished, sent), requests=requests.reading())
                if finished >= sent:
                    return
                waiting.note(finished)
                if waiting.expired():
                    raise CommandError(
                        f"Gave up waiting after {timeout:g} s: {sent - finished} of {sent} ids of run "
                        f"{run.pk} have no outcome yet (the workers go on; see the admin's run outcomes)."
                    )
                waiting.pause()

    def summarize(self, run: ImportRun) -> None:
        """Print counts per outcome of the run's ids; fail, naming them, unless every one succeeded.

        An id without an outcome (its task failed and could not record one) is not a success.
        """
        counts = run.status_counts()
        parts = [f"{count} {status}" for status, count in counts.items()]
        without = run.requested - sum(counts.values())
        if without:
            parts.append(f"{without} {NO_OUTCOME}")
        unsuccessful = run.unsuccessful()
        count = unsuccessful.count()
        if self.verbosity >= 1:
            self.stdout.write(f"Run {run.pk}: {', '.join(parts)}.")
        if not count:
            if self.verbosity >= 1:
                self.stdout.write(self.style.SUCCESS("Every id was imported."))
            return
        lines = [
            f"  {o.wikidata_id}: {o.status or NO_OUTCOME}: {o.error or NO_OUTCOME_HELP}"
            for o in unsuccessful[:MAX_LISTED]
        ]
        if count > MAX_LISTED:
            lines.append(f"  ... and {count - MAX_LISTED} more (see the admin's run outcomes).")
        noun = "id was" if count == 1 else "ids were"
        raise CommandError(f"{count} {noun} not imported:\n" + "\n".join(lines))


def outcome_line(outcome: RunOutcome, id_width: int) -> str:
    """An id, its outcome and the entity's label (or the error), in columns."""
    label = outcome.entity.label if outcome.entity else outcome.error
    return (
        f"{outcome.wikidata_id:<{id_width}}  {outcome.status or NO_OUTCOME:<{STATUS_WIDTH}}  {label}".rstrip()
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


class Duplicates:
    """The ids a run was given more than once: how many, and the first few, with where they came from."""

    def __init__(self) -> None:
        self.count = 0
        self.listed: list[tuple[str, str, str]] = []

    def add(self, duplicates: list[tuple[str, str, str]]) -> None:
        self.count += len(duplicates)
        self.listed.extend(duplicates[: MAX_LISTED - len(self.listed)])

    def report(self) -> str:
        noun = "id" if self.count == 1 else "ids"
        lines = [f"  {origin}: {wikidata_id} (first: {first})" for origin, wikidata_id, first in self.listed]
        if self.count > len(self.listed):
            lines.append(f"  ... and {self.count - len(self.listed)} more")
        return f"Skipping {self.count} duplicate {noun}:\n" + "\n".join(lines)
