"""Benchmark 4: importing unchanged entities again (same lastrevid), against the first import."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from .pipeline import CEILING, LATENCY, import_in_process, pipeline
from .report import Goal, Result, Table, fmt

NAME = "reimport"
TITLE = "4. Re-import of unchanged entities, against the first import"


def _snapshot() -> tuple[dict[str, datetime], Counter[str]]:
    """Each entity's ``fetched_at``, and how many outcomes have each status."""
    from importers.models import ImportOutcome, WikidataEntity

    fetched = dict(WikidataEntity.objects.values_list("wikidata_id", "fetched_at"))
    statuses = Counter(ImportOutcome.objects.values_list("status", flat=True))
    return fetched, statuses


def run(quick: bool) -> Result:
    count = 100 if quick else 1000
    result = Result(NAME, TITLE)
    with pipeline(count) as running:
        timeout = running.timeout(count)
        first_seconds = import_in_process(running.ids, timeout)
        first_requests = len(running.standin.requests)
        fetched_before, statuses_before = _snapshot()
        second_seconds = import_in_process(running.ids, timeout)
        second_requests = len(running.standin.requests) - first_requests
        fetched_after, statuses_after = _snapshot()

    rewritten = sum(fetched_after.get(key) != value for key, value in fetched_before.items())
    rewritten += len(fetched_after.keys() - fetched_before.keys())
    first_rate, second_rate = count / first_seconds, count / second_seconds
    table = Table(
        f"{count:,} ids, stand-in latency {LATENCY * 1000:.0f} ms, one worker from the Procfile, PostgreSQL",
        ["import", "HTTP requests", "seconds", "entities/s", "% of ceiling", "outcomes afterwards"],
    )
    for label, requests, seconds, rate, statuses in (
        ("first (new entities)", first_requests, first_seconds, first_rate, statuses_before),
        ("again (same lastrevid)", second_requests, second_seconds, second_rate, statuses_after),
    ):
        outcome = ", ".join(f"{number:,} {status}" for status, number in sorted(statuses.items()))
        table.add(label, fmt(requests), fmt(seconds, 2), fmt(rate, 1), f"{rate / CEILING:.0%}", outcome)
    table.add("ratio again / first", "", "", f"{second_rate / first_rate:.2f}", "", "")
    table.notes += [
        "Same set-up as benchmark 2; both imports through the worker, one after the other, on the same "
        "stand-in documents.",
        f"Rewritten by the second import: {rewritten} of {len(fetched_before):,} entities "
        "(WikidataEntity.fetched_at compared before and after).",
        "An unchanged entity is still fetched whole: the lastrevid is only known from the document.",
    ]
    result.tables.append(table)
    all_unchanged = statuses_after == Counter({"unchanged": count})
    result.goals.append(
        Goal(
            "nothing rewritten, every outcome `unchanged`",
            f"{rewritten} rewritten, {statuses_after.get('unchanged', 0):,} of {count:,} unchanged",
            f"0 rewritten, {count:,} unchanged",
            rewritten == 0 and all_unchanged,
        )
    )
    return result
