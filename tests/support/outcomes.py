"""The import outcomes that tests read back from the database, and the wait for workers to record them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from importers.models import ImportOutcome
from tests.support.waiting import TIMEOUT, wait_until

__all__ = ["outcomes", "wait_for_outcomes"]


def outcomes(ids: Iterable[str]) -> dict[str, str]:
    """The recorded status of each of ``ids`` that has an outcome, by id."""
    return dict(ImportOutcome.objects.filter(wikidata_id__in=list(ids)).values_list("wikidata_id", "status"))


def wait_for_outcomes(
    ids: Iterable[str], timeout: float = TIMEOUT, why: Callable[[], str] = lambda: ""
) -> dict[str, str]:
    """Wait until each of ``ids`` has an outcome; return their statuses, by id.

    Raises:
        WaitTimeout: some had none after ``timeout`` seconds; the message lists them, then ``why()``
            (the workers' logs, say).
    """
    wanted = list(dict.fromkeys(ids))

    def every_id_has_an_outcome() -> bool:
        return ImportOutcome.objects.filter(wikidata_id__in=wanted).count() == len(wanted)

    def explanation() -> str:
        found = outcomes(wanted)
        missing = [wikidata_id for wikidata_id in wanted if wikidata_id not in found]
        return f"no outcome yet for {', '.join(missing)}\n{why()}"

    # Polled gently: on SQLite every read holds off the workers' commits for a moment.
    interval = 0.05 if len(wanted) < 50 else 0.5
    wait_until(every_id_has_an_outcome, timeout=timeout, why=explanation, interval=interval)
    return outcomes(wanted)
