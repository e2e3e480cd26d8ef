"""``import_wikidata`` through a real broker and a real ``celery worker`` process."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from importers.importers import WikidataImporter
from importers.models import ImportOutcome, ImportRun, WikidataEntity, WikidataRedirect
from tests.importers.conftest import EVERY_KIND, import_wikidata
from tests.support.outcomes import wait_for_outcomes
from tests.support.wikidata_server import StandInWikidata
from tests.support.workers import CeleryWorker

pytestmark = pytest.mark.django_db(transaction=True)  # the worker must see what the test commits


def test_the_worker_imports_every_kind_of_entity(served: StandInWikidata, live: CeleryWorker) -> None:
    with pytest.raises(CommandError) as caught:
        import_wikidata("Q1022", "Q7259", "P31", "L7", "Q99999", "Q404", "--wait")
    assert str(caught.value) == "1 id was not imported:\n  Q404: missing: no such entity (HTTP 404)"
    statuses = dict(ImportOutcome.objects.values_list("wikidata_id", "status"))
    # Q99999 redirects to Q1022: on a worker with several processes either task may store the
    # document first, and the other then finds the same revision stored.
    assert statuses.pop("Q1022") in ("imported", "unchanged")
    assert statuses == {key: value for key, value in EVERY_KIND.items() if key != "Q1022"}
    assert WikidataEntity.objects.get(pk="L7").label == "cat"
    assert WikidataRedirect.objects.get(pk="Q99999").target_id == "Q1022"
    run = ImportRun.objects.get()
    assert (run.requested, run.finished_now()) == (6, 6)
    assert "WikidataImporter.import_single" in live.log_text()  # the worker ran them


def test_without_wait_the_command_reports_what_it_enqueued(
    served: StandInWikidata, live: CeleryWorker
) -> None:
    output = import_wikidata("Q1022", "P31")
    run = ImportRun.objects.get()
    assert output == f"Enqueued 2 import tasks for 2 ids (run {run.pk}).\n"
    output = import_wikidata("Q1022", "P31", "--wait")  # waits for its own run only
    assert output.splitlines()[-1] == "Every id was imported."
    output = import_wikidata("Q1022", "--wait")  # waited for: the worker is done before the test ends
    assert output.startswith("Enqueued 1 import task for 1 id (run ")  # before: "for 1 ids"


def test_sync_runs_in_process_even_with_a_broker(served: StandInWikidata, live: CeleryWorker) -> None:
    received = live.log_text().count("received")
    output = import_wikidata("Q1022", "--sync")
    assert output.splitlines()[0] == "Q1022  imported    Stuttgart"
    assert live.log_text().count("received") == received  # nothing went to the worker


if connection.vendor == "postgresql":  # a server connection to drop; SQLite has none (CI runs both)

    def test_a_worker_reconnects_when_the_database_drops_its_connection(
        served: StandInWikidata, live: CeleryWorker
    ) -> None:
        # Workers keep their connection between tasks; a database restart breaks it under them.
        WikidataImporter().import_bulk(["Q1022"])
        assert wait_for_outcomes(["Q1022"], why=live.log_tail) == {"Q1022": "imported"}
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchall(), "the worker had no connection to drop"
        WikidataImporter().import_bulk(["P31", "L7"])
        assert wait_for_outcomes(["P31", "L7"], why=live.log_tail) == {"P31": "imported", "L7": "imported"}


def test_with_workers_verbosity_2_lists_each_ids_outcome_after_waiting(
    served: StandInWikidata, live: CeleryWorker
) -> None:
    out = io.StringIO()
    with pytest.raises(CommandError, match="Q404: missing"):
        call_command(
            "import_wikidata", "Q1022", "Q404", "--wait", "-v", "2", stdout=out, stderr=io.StringIO()
        )
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Enqueued 2 import tasks for 2 ids")
    assert sorted(lines[1:3]) == [
        "Q1022  imported    Stuttgart",
        "Q404   missing     no such entity (HTTP 404)",
    ]


def test_with_workers_a_duplicate_id_in_a_batch_is_sent_once_and_the_wait_ends(
    served: StandInWikidata, live: CeleryWorker
) -> None:
    # Before, two ids were counted and one outcome recorded: --wait waited forever.
    output = import_wikidata("Q1022", "q1022", "P31", "--batch-size", "50", "--wait", "--timeout", "30")
    assert "Enqueued 1 import task for 2 ids" in output.splitlines()[0]
    assert output.splitlines()[-1] == "Every id was imported."
    assert ImportRun.objects.get().requested == 2
