"""``refresh_wikidata``: re-import the stored entities whose revision changed on Wikidata."""

from __future__ import annotations

import argparse
import re
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet
from django.utils import timezone

from core.sender import in_process, runs_in_process
from importers.console import add_batch_size_argument, add_waiting_arguments
from importers.documents import summarize
from importers.given_ids import GivenIds, add_id_arguments
from importers.importers import chunked
from importers.models import WikidataEntity
from importers.run_output import RunOutput
from importers.runs import MAX_LISTED
from importers.wikidata_api import MAX_BATCH, FetchFailed, fetch_revisions

# Documents read at a time for --relabel: a few MB at most in memory.
RELABEL_CHUNK = 100
DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Command(BaseCommand):
    help = "Re-import the stored Wikidata entities whose revision changed on Wikidata (all, with --force)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_id_arguments(parser)
        parser.add_argument(
            "--older-than",
            type=duration,
            metavar="DURATION",
            help="Only entities fetched longer ago than this: 90s, 30m, 12h, 7d, 2w.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Re-import every selected entity, rewriting it, changed or not.",
        )
        parser.add_argument(
            "--relabel",
            action="store_true",
            help="Recompute labels and descriptions from the stored documents for WIKIDATA_LANGUAGE; "
            "no request is made.",
        )
        add_waiting_arguments(parser, until="every id has an outcome")
        add_batch_size_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        self.unchecked = 0  # ids whose revision could not be asked for
        output = RunOutput(self, self.verbosity)
        with ExitStack() as stack:
            entities = self.selected(options, stack, output)
            if options["relabel"]:
                self.relabel(entities)
                return
            if options["sync"]:
                stack.enter_context(in_process())
            here = runs_in_process()
            stale = (
                list(entities.values_list("pk", flat=True)) if options["force"] else self.changed(entities)
            )
            if not stale:
                self.report_up_to_date(entities)
                return
            run = output.start()
            ids = [(wikidata_id, "stored entity") for wikidata_id in stale]
            # Forced: the same revision is written again, an older one never (nothing stored is
            # forgotten first, so nothing is lost when the imports fail or are never sent).
            width = max(map(len, stale))
            output.send(run, ids, len(ids), width, options["batch_size"], rewrite=options["force"])
        output.report(run, here, options)
        if self.unchecked:
            raise CommandError(
                f"Could not check {self.unchecked} of the selected ids on Wikidata; they were sent to be "
                "re-imported, which records what is wrong with each."
            )

    def report_up_to_date(self, entities: QuerySet[WikidataEntity]) -> None:
        """Say that nothing is to be done, and why: nothing selected, or nothing changed."""
        if self.verbosity < 1:
            return
        if not entities.exists():
            self.stdout.write("No stored entity is selected: nothing was checked.")
        else:
            self.stdout.write(self.style.SUCCESS("Every selected entity is up to date."))

    def selected(
        self, options: dict[str, Any], stack: ExitStack, output: RunOutput
    ) -> QuerySet[WikidataEntity]:
        """Return the stored entities the options select: the ids given, fetched before a time."""
        entities = WikidataEntity.objects.order_by("pk")
        if options["ids"] or options["file"]:
            given = GivenIds(options["ids"], options["file"], stack)
            given.check(options["skip_invalid"], output.warn)
            entities = entities.filter(pk__in=[wikidata_id for wikidata_id, _ in given.pairs()])
        if options["older_than"] is not None:
            entities = entities.filter(fetched_at__lt=timezone.now() - options["older_than"])
        return entities

    def changed(self, entities: QuerySet[WikidataEntity]) -> list[str]:
        """Return the ids whose revision on Wikidata is not the stored one, asking 50 ids a request.

        Ids whose check failed are returned too: importing them records what is wrong.
        """
        changed, checked, requests, unchecked = [], 0, 0, []
        stored = entities.values_list("pk", "lastrevid").iterator(chunk_size=2000)
        for chunk in chunked(stored, MAX_BATCH):
            ids = [wikidata_id for wikidata_id, _ in chunk]
            requests += 1
            try:
                revisions = fetch_revisions(ids)
            except FetchFailed as error:
                noun = "id" if len(ids) == 1 else "ids"
                unchecked.append(f"Could not check {len(ids)} {noun}, re-importing them: {error}")
                self.unchecked += len(ids)
                changed += ids
                continue
            changed += [wikidata_id for wikidata_id, revision in chunk if revisions[wikidata_id] != revision]
            checked += len(ids)
        if self.verbosity >= 1:
            noun = "request" if requests == 1 else "requests"
            self.stdout.write(
                f"Checked {checked} stored entities ({requests} {noun}): {len(changed)} to re-import."
            )
            for line in unchecked[:MAX_LISTED]:
                self.stderr.write(line)
        return changed

    def relabel(self, entities: QuerySet[WikidataEntity]) -> None:
        """Recompute each selected entity's label and description for ``WIKIDATA_LANGUAGE``."""
        language = settings.WIKIDATA_LANGUAGE
        relabelled = seen = 0
        rows = entities.only("pk", "data", "label", "description").iterator(chunk_size=RELABEL_CHUNK)
        for chunk in chunked(rows, RELABEL_CHUNK):
            changed = []
            for entity in chunk:
                summary = summarize(entity.data, language)
                if (entity.label, entity.description) != (summary.label, summary.description):
                    entity.label, entity.description = summary.label, summary.description
                    changed.append(entity)
            WikidataEntity.objects.bulk_update(changed, ["label", "description"])
            relabelled += len(changed)
            seen += len(chunk)
        if self.verbosity >= 1:
            self.stdout.write(f"Relabelled {relabelled} of {seen} entities in {language!r}.")


def duration(text: str) -> timedelta:
    """``--older-than``'s type: a number and a unit (s, m, h, d or w; seconds without one)."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration, e.g. 90s, 30m, 12h, 7d, 2w")
    return timedelta(seconds=float(match[1]) * UNITS[match[2]])
