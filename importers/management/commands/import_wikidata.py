"""``import_wikidata``: import Wikidata entities by id, as Celery tasks (one an id, or one a batch)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from core.sender import in_process, runs_in_process
from importers.console import add_batch_size_argument, add_waiting_arguments
from importers.given_ids import GivenIds, add_id_arguments
from importers.models import ImportRun
from importers.run_output import RunOutput


class Command(BaseCommand):
    help = "Import Wikidata entities by id (e.g. Q1022): a Celery task an id, or a batch (--batch-size)."
    verbosity = 1  # set from --verbosity by handle()

    def add_arguments(self, parser: CommandParser) -> None:
        add_id_arguments(parser)
        add_waiting_arguments(parser, until="every id has an outcome")
        add_batch_size_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        output = RunOutput(self, self.verbosity)
        with ExitStack() as stack:
            given = GivenIds(options["ids"], options["file"], stack)
            given.check(options["skip_invalid"], output.warn)
            if options["sync"]:
                stack.enter_context(in_process())
            here = runs_in_process()
            run = output.start()
            output.send(run, given.pairs(), given.valid, given.id_width, options["batch_size"])
        output.report(run, here, options)

    def wait_for(self, run: ImportRun, sent: int, timeout: float | None = None) -> None:
        """Show a progress bar until every id of ``run`` has an outcome (see ``RunOutput.wait_for``)."""
        RunOutput(self, self.verbosity).wait_for(run, sent, timeout)

    def summarize(self, run: ImportRun) -> None:
        """Print counts per outcome of the run's ids; fail unless every one succeeded (``RunOutput``)."""
        RunOutput(self, self.verbosity).summarize(run)
