"""Every requested id ends with a true outcome in its run, and the report says so (in process).

The same guarantees through real workers, a database outage and redelivery: tests/production.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection

from importers.importers import WikidataImporter
from importers.management.commands.import_wikidata import Command
from importers.models import ImportOutcome, ImportRun, RunOutcome, Status
from importers.storage import Storage
from tests.importers.entities import item
from tests.support.wikidata_server import Fault, StandInWikidata

pytestmark = pytest.mark.django_db

# JSON nested deeper than any decoder recurses: json.loads raises RecursionError, not ValueError.
TOO_DEEP = "[" * 100_000 + "]" * 100_000


def run_command(*args: str) -> tuple[str, str, CommandError | None]:
    """Run import_wikidata; return its stdout, its stderr and the CommandError it raised, if any."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_wikidata", *args, stdout=out, stderr=err)
    except CommandError as error:
        return out.getvalue(), err.getvalue(), error
    return out.getvalue(), err.getvalue(), None


def run_outcomes(run: ImportRun) -> dict[str, str]:
    return dict(run.outcomes.values_list("wikidata_id", "status"))


# An unexpected exception


@pytest.mark.parametrize("batch_size", ["1", "50"])
def test_an_answer_nested_too_deep_to_decode_is_a_failed_outcome(
    served: StandInWikidata, batch_size: str
) -> None:
    served.add_fault(None, Fault.status(200, TOO_DEEP, {"Content-Type": "application/json"}), times=10)
    _, _, error = run_command("Q1022", "--batch-size", batch_size)
    assert error is not None
    assert "Q1022: failed:" in str(error)
    assert "not JSON" in str(error)
    assert ImportOutcome.objects.get(pk="Q1022").status == Status.FAILED


@pytest.mark.parametrize("retry_after", ["-1", "NaN", "1.5", "soon"])
def test_a_maxlag_answer_with_an_odd_retry_after_is_waited_out_and_retried(
    served: StandInWikidata, settings: Any, retry_after: str
) -> None:
    settings.WIKIDATA_RETRY_AFTER_MAX = 0.05  # the default wait of 5 s, capped for the test
    lagged = Fault.maxlag()
    headers = tuple((name, retry_after if name == "Retry-After" else value) for name, value in lagged.headers)
    served.add_fault(None, Fault("respond", 200, lagged.body, headers), times=1)
    out, _, error = run_command("Q1022", "P31", "--batch-size", "2")
    assert error is None, error
    assert "Every id was imported." in out


def test_any_exception_in_a_task_method_ends_in_a_failed_outcome_naming_it(
    served: StandInWikidata, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(entity_id: str) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr("importers.importers.fetch_entity", broken)
    _, _, error = run_command("Q1022", "P31")
    assert str(error) == (
        "2 ids were not imported:\n"
        "  Q1022: failed: could not import: KeyError: 'surprise'\n"
        "  P31: failed: could not import: KeyError: 'surprise'"
    )


def test_an_id_whose_task_could_not_record_an_outcome_is_named_not_counted_imported(
    served: StandInWikidata, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The embedded SQLite locked by another writer past its timeout: nothing can be recorded.
    real_store = Storage.store

    def locked(self: Any, asked_id: str, fetched: Any) -> Any:
        if asked_id == "P31":
            raise OperationalError("database is locked")
        return real_store(self, asked_id, fetched)

    monkeypatch.setattr("importers.storage.Storage.store", locked)
    out, _, error = run_command("Q1022", "P31")
    assert "Q1022  imported    Stuttgart" in out
    assert "P31    no outcome" in out
    assert f"Run {ImportRun.objects.get().pk}: 1 imported, 1 no outcome." in out
    assert str(error) == (
        "1 id was not imported:\n"
        "  P31: no outcome: its task ended without recording one (see the worker's log)"
    )


# Overlapping runs


def test_a_later_run_over_the_same_ids_leaves_the_earlier_runs_report_alone(served: StandInWikidata) -> None:
    _, _, first_error = run_command("Q1022", "Q404")
    first = ImportRun.objects.earliest("pk")
    served.add_entity(item("Q404", "found later"))
    _, _, second_error = run_command("Q1022", "Q404")
    assert second_error is None
    assert run_outcomes(first) == {"Q1022": "imported", "Q404": "missing"}
    assert run_outcomes(ImportRun.objects.latest("pk")) == {"Q1022": "unchanged", "Q404": "imported"}
    with pytest.raises(CommandError, match="1 id was not imported:\n  Q404: missing"):
        Command(stdout=io.StringIO(), stderr=io.StringIO()).summarize(first)
    assert first_error is not None
    assert ImportOutcome.objects.get(pk="Q404").status == "imported"  # the latest, for browsing


# Duplicates


@pytest.mark.parametrize("batch_size", ["1", "50"])
def test_a_duplicate_id_is_skipped_and_named_and_the_run_counts_it_once(
    served: StandInWikidata, batch_size: str
) -> None:
    out, err, error = run_command("Q1022", "q1022", "P31", " Q1022 ", "--batch-size", batch_size)
    assert error is None
    assert err.splitlines() == [
        "Skipping 2 duplicate ids:",
        "  argument 2: Q1022 (first: argument 1)",
        "  argument 4: Q1022 (first: argument 1)",
    ]
    run = ImportRun.objects.get()
    assert run.requested == 2
    assert run_outcomes(run) == {"Q1022": "imported", "P31": "imported"}
    assert out.splitlines()[-1] == "Every id was imported."


def test_duplicates_in_a_file_are_named_by_line(served: StandInWikidata, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("Q1022\nP31\n\nq1022\nP31\n")
    _, err, error = run_command("--file", str(ids))
    assert error is None
    assert "  line 4: Q1022 (first: line 1)\n  line 5: P31 (first: line 2)" in err


def test_a_batch_given_one_missing_id_twice_records_it_once(served: StandInWikidata) -> None:
    # On PostgreSQL this was "ON CONFLICT DO UPDATE command cannot affect row a second time".
    assert WikidataImporter().import_batch(["Q404", "q404", "Q1022"]) == {
        "Q404": "missing",
        "Q1022": "imported",
    }


# Batches


UNSTORABLE = [
    pytest.param({"modified": "2024-13-45T00:00:00Z"}, id="impossible-date"),
    pytest.param({"lastrevid": 2**63}, id="lastrevid-beyond-bigint"),
]
if connection.vendor == "postgresql":  # SQLite stores a NUL in text
    UNSTORABLE.append(
        pytest.param({"labels": {"en": {"language": "en", "value": "a\x00b"}}}, id="nul-in-label")
    )


@pytest.mark.parametrize("unstorable", UNSTORABLE)
def test_a_document_that_cannot_be_stored_does_not_sink_its_batch(
    served: StandInWikidata, unstorable: dict[str, Any]
) -> None:
    served.add_entity({**item("Q5", "bad"), **unstorable})
    run = ImportRun.objects.create()
    outcomes = WikidataImporter().import_batch(["Q1022", "Q5", "Q404", "P31"], run.pk)
    assert outcomes == {"Q1022": "imported", "Q5": "failed", "Q404": "missing", "P31": "imported"}
    assert "could not store" in RunOutcome.objects.get(run=run, wikidata_id="Q5").error
    assert run.finished_now() == 4


def test_ids_an_answer_leaves_out_are_handed_on_even_when_a_neighbour_cannot_be_stored(
    served: StandInWikidata, monkeypatch: pytest.MonkeyPatch
) -> None:
    served.add_entity({**item("Q5", "bad"), "modified": "2024-13-45T00:00:00Z"})
    left_out = served._api  # the stand-in leaves Q7259 out of its answer

    def leaving_out(query: dict[str, list[str]], entity_ids: tuple[str, ...]) -> Any:
        return left_out(query, tuple(entity_id for entity_id in entity_ids if entity_id != "Q7259"))

    monkeypatch.setattr(served, "_api", leaving_out)
    outcomes = WikidataImporter().import_batch(["Q5", "Q7259"])
    assert outcomes == {"Q5": "failed", "Q7259": "imported"}


def test_a_batch_delivered_twice_counts_each_id_once(served: StandInWikidata) -> None:
    run = ImportRun.objects.create(requested=3)
    run.request([("Q1022", "line 1"), ("Q404", "line 2"), ("P31", "line 3")])
    for _ in range(2):
        WikidataImporter().import_batch(["Q1022", "Q404", "P31"], run.pk)
    assert run.finished_now() == 3
    assert run.outcomes.count() == 3


# Waiting


@pytest.mark.parametrize("size", ["51", "0", "x", "1.5"])
def test_a_batch_size_out_of_range_says_so_in_one_line(size: str) -> None:
    with pytest.raises(CommandError) as caught:
        call_command("import_wikidata", "Q1022", "--batch-size", size)
    assert str(caught.value).endswith(f"{size!r} is not a whole number from 1 to 50")
    assert not ImportRun.objects.exists()


@pytest.mark.parametrize("timeout", ["nan", "-1", "0", "inf", "soon"])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(timeout: str) -> None:
    with pytest.raises(CommandError, match="--timeout"):
        call_command("import_wikidata", "Q1022", "--wait", "--timeout", timeout)
    assert not ImportRun.objects.exists()


@pytest.mark.django_db(transaction=True)  # outside a transaction, as the command runs
def test_waiting_survives_its_own_database_connection_being_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    run = ImportRun.objects.create(requested=1)
    run.request([("Q1022", "argument 1")])
    polls = []

    def dropped_once(self: ImportRun) -> int:
        polls.append(1)
        if len(polls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return 1

    monkeypatch.setattr(ImportRun, "finished_now", dropped_once)
    Command(stdout=io.StringIO(), stderr=io.StringIO()).wait_for(run, 1, timeout=5)
    assert len(polls) == 2


def test_a_task_that_recorded_nothing_leaves_the_id_without_an_outcome_in_its_run() -> None:
    run = ImportRun.objects.create(requested=2)
    run.request([("Q1", "argument 1"), ("Q2", "argument 2")])
    RunOutcome.objects.filter(run=run, wikidata_id="Q1").update(status=Status.IMPORTED)
    assert run.finished_now() == 1
    assert list(run.unsuccessful().values_list("wikidata_id", flat=True)) == ["Q2"]
