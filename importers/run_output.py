"""What a command shows of a run (``importers.runs``): each id's line as it ends when the tasks run
here, what was enqueued, the progress while waiting for the workers, and the summary."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from core.database import UNAVAILABLE, patiently
from core.sender import runs_in_process

from . import runs
from .console import RequestGauge, Waiting, database_problem, progress_bar
from .models import ImportRun, RunOrigin
from .wikidata_api import request_budget


class RunOutput:
    """A command's run of imports, shown on its stdout and stderr at its verbosity."""

    def __init__(self, command: BaseCommand, verbosity: int) -> None:
        self.stdout, self.stderr, self.style = command.stdout, command.stderr, command.style
        self.verbosity = verbosity

    def warn(self, text: str) -> None:
        if self.verbosity >= 1:
            self.stderr.write(text)

    def start(self) -> ImportRun:
        """Create the run: the command's first write to the database.

        Raises:
            CommandError: the database is locked, has no tables yet, or cannot be used; says which.
        """
        try:
            return runs.start(RunOrigin.COMMAND)
        except DatabaseError as error:
            raise CommandError(database_problem(error)) from None

    def send(
        self,
        run: ImportRun,
        ids: Iterable[tuple[str, str]],
        valid: int,
        id_width: int,
        batch_size: int,
        rewrite: bool = False,
    ) -> None:
        """Send (or run here) a task for each of the ``valid`` ids, once; run here, print each id's
        line as it ends.

        Raises:
            CommandError: the broker could not be reached; names the ids that were not sent.
        """
        shown = runs_in_process() and self.verbosity >= 1
        lines = runs.Lines(run, id_width, self.stdout.write)
        try:
            duplicates = runs.send(run, ids, batch_size, rewrite, ended=lines.ended if shown else None)
        except runs.NotSent as error:
            unique = valid - error.duplicates.count
            listed = error.withdrawn[: runs.MAX_LISTED]
            more = unique - error.sent - len(listed)
            raise CommandError(
                f"The broker at {error.broker} could not be reached: {error.reason}\n"
                f"{error.sent} of {unique} ids were enqueued; these {unique - error.sent} were not:\n  "
                + " ".join(listed)
                + (f" ... and {more} more" if more > 0 else "")
            ) from None
        if shown:  # the ids whose task ended without recording an outcome
            lines.without_outcome()
        if duplicates.count:
            self.warn(duplicates.report())

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
                for line in runs.outcome_lines(run):
                    self.stdout.write(line)
        self.summarize(run)  # run here, each id's line was printed as it ended

    def report_enqueued(self, run: ImportRun, batch_size: int) -> None:
        if self.verbosity >= 1:
            tasks = -(-run.requested // batch_size)
            noun = "task" if tasks == 1 else "tasks"
            ids = "id" if run.requested == 1 else "ids"
            self.stdout.write(f"Enqueued {tasks} import {noun} for {run.requested} {ids} (run {run.pk}).")

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
        """Print counts per outcome of the run's ids; fail, naming them, unless every one succeeded."""
        summary = runs.summarize(run)
        if self.verbosity >= 1:
            self.stdout.write(summary.counts)
        if summary.failures:
            raise CommandError(summary.failures)
        if self.verbosity >= 1:
            self.stdout.write(self.style.SUCCESS("Every id was imported."))
