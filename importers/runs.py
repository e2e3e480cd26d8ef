"""Runs of imports by id, for the commands and the admin alike: a run started, its ids requested a
chunk at a time (duplicates named), sent, withdrawn when the broker cannot be reached, and summed up."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Max
from django.db.models.functions import Length
from kombu.exceptions import OperationalError

from core.exceptions import EnqueueFailed

from .importers import WikidataImporter, chunked
from .models import ImportRun, RunOrigin, RunOutcome, Status
from .wikidata_api import MAX_BATCH

# Listing every failed id is useful up to a point; past it, the admin has the rest.
MAX_LISTED = 50
# Ids are added to the run this many at a time, just before they are sent.
REQUEST_CHUNK = 500
NO_OUTCOME = "no outcome"
NO_OUTCOME_HELP = "its task ended without recording one (see the worker's log)"
STATUS_WIDTH = max(len(NO_OUTCOME), *(len(status) for status in Status))


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


class NotSent(Exception):
    """The broker could not be reached: ``sent`` ids of the run went out; ``withdrawn`` are the ids
    requested after them, no longer the run's; ``duplicates``, those left out before. ``reason``
    is the broker's error."""

    def __init__(
        self,
        sent: int,
        broker: str,
        reason: BaseException | None,
        withdrawn: list[str],
        duplicates: Duplicates,
    ) -> None:
        super().__init__(f"the broker could not be reached after {sent} sent: {reason}")
        self.sent, self.broker, self.reason = sent, broker, reason
        self.withdrawn = withdrawn
        self.duplicates = duplicates


def start(origin: RunOrigin) -> ImportRun:
    """Create a run: for a command, its first write to the database.

    Raises:
        django.db.DatabaseError: the database is locked, has no tables yet, or cannot be used.
    """
    return ImportRun.objects.create(origin=origin)


def requested(run: ImportRun, ids: Iterable[tuple[str, str]], duplicates: Duplicates) -> Iterator[str]:
    """Yield each ``(id, origin)`` of ``ids`` new to the run, added to it first; collect the others."""
    for chunk in chunked(ids, REQUEST_CHUNK):
        new, repeated = run.request(chunk)
        duplicates.add(repeated)
        yield from new


def send(
    run: ImportRun,
    ids: Iterable[tuple[str, str]],
    batch_size: int,
    rewrite: bool = False,
    ended: Callable[[list[str]], None] | None = None,
) -> Duplicates:
    """Send (or run here) a task for each id of ``ids`` (``(id, origin)`` pairs), once; keep how many
    were sent in ``run``. Return the duplicates left out.

    ``rewrite``: a document of the stored revision is written again (never an older one).
    ``ended``: when the tasks run here, called with the ids of each as it ends (from its threads).

    Raises:
        NotSent: the broker could not be reached; the ids not sent were withdrawn from the run.
    """
    duplicates = Duplicates()
    try:
        sent = WikidataImporter().send_ids(
            requested(run, ids, duplicates),
            run_id=run.pk,
            batch_size=batch_size,
            rewrite=rewrite,
            ended=ended,
        )
    except EnqueueFailed as error:
        withdrawn = run.withdraw_after(error.sent)
        raise NotSent(error.sent, error.broker, error.__cause__, withdrawn, duplicates) from error
    run.set_requested(sent)
    return duplicates


def hand_over(run: ImportRun, ids: list[str], rewrite: bool = False) -> None:
    """Send the run's ``ids`` (requested already) as one ``import_bulk`` task, which sends them on in
    batches: a quick call, for a web request.

    Raises:
        NotSent: the broker could not be reached; nothing was sent, and the run has no id left.
    """
    try:
        extra: dict[str, Any] = {"rewrite": True} if rewrite else {}  # ordinary messages stay as small
        WikidataImporter().import_bulk.as_task(wikidata_ids=ids, run_id=run.pk, batch_size=MAX_BATCH, **extra)
    except OperationalError as error:
        withdrawn = run.withdraw_after(0)
        run.set_requested(0)
        raise NotSent(0, "", error, withdrawn, Duplicates()) from error


class Lines:
    """The outcome lines of a run's ids, each printed once, as its task ends (tasks end on threads)."""

    def __init__(self, run: ImportRun, id_width: int, write: Callable[[str], None]) -> None:
        self.run, self.id_width, self.write = run, id_width, write
        self.lock = threading.Lock()

    def ended(self, ids: list[str]) -> None:
        """Print the line of each of ``ids`` that has an outcome."""
        with self.lock:
            self.print(ids, every=False)

    def without_outcome(self) -> None:
        """Print the line of each id whose task ended without recording an outcome."""
        without = self.run.outcomes.filter(status="").values_list("wikidata_id", flat=True)
        for chunk in chunked(without.iterator(), REQUEST_CHUNK):
            self.print(chunk, every=True)

    def print(self, ids: list[str], every: bool) -> None:
        if not ids:
            return
        outcomes = self.run.outcomes.filter(wikidata_id__in=ids).select_related("entity")
        ended = {outcome.wikidata_id: outcome for outcome in outcomes if outcome.status or every}
        for wikidata_id in ids:
            if wikidata_id in ended:
                self.write(outcome_line(ended[wikidata_id], self.id_width))


def outcome_lines(run: ImportRun) -> Iterator[str]:
    """Each id of the run with its outcome and label (or error), in the order they ended."""
    outcomes = run.outcomes.select_related("entity").order_by("updated_at", "pk")
    id_width = outcomes.aggregate(width=Max(Length("wikidata_id")))["width"] or 0
    for outcome in outcomes.iterator():
        yield outcome_line(outcome, id_width)


def outcome_line(outcome: RunOutcome, id_width: int) -> str:
    """An id, its outcome and the entity's label (or the error), in columns."""
    label = outcome.entity.label if outcome.entity else outcome.error
    return (
        f"{outcome.wikidata_id:<{id_width}}  {outcome.status or NO_OUTCOME:<{STATUS_WIDTH}}  {label}".rstrip()
    )


@dataclass(frozen=True)
class Summary:
    """A run summed up: ``counts`` per outcome, and ``failures``, naming them ("" when every id succeeded).

    An id without an outcome (its task failed and could not record one) is not a success.
    """

    counts: str
    failures: str


def summarize(run: ImportRun) -> Summary:
    """Count the run's ids per outcome, and name the first ``MAX_LISTED`` of those not imported."""
    counts = run.status_counts()
    parts = [f"{count} {status}" for status, count in counts.items()]
    without = run.requested - sum(counts.values())
    if without:
        parts.append(f"{without} {NO_OUTCOME}")
    unsuccessful = run.unsuccessful()
    count = unsuccessful.count()
    if not count:
        return Summary(f"Run {run.pk}: {', '.join(parts)}.", "")
    lines = [
        f"  {o.wikidata_id}: {o.status or NO_OUTCOME}: {o.error or NO_OUTCOME_HELP}"
        for o in unsuccessful[:MAX_LISTED]
    ]
    if count > MAX_LISTED:
        lines.append(f"  ... and {count - MAX_LISTED} more (see the admin's run outcomes).")
    noun = "id was" if count == 1 else "ids were"
    return Summary(f"Run {run.pk}: {', '.join(parts)}.", f"{count} {noun} not imported:\n" + "\n".join(lines))
