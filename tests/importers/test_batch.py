"""Batched mode: one ``wbgetentities`` request and one upsert per batch, an outcome per id."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from importers.importers import WikidataImporter, chunked
from importers.models import ImportOutcome, ImportRun, WikidataEntity, WikidataRedirect
from importers.wikidata_api import fetch_batch
from tests.importers.conftest import EVERY_KIND
from tests.importers.entities import HUMAN, STUTTGART, item, texts
from tests.support.wikidata_server import Fault, StandInWikidata

pytestmark = pytest.mark.django_db
Status = ImportOutcome.Status


def api_requests(server: StandInWikidata) -> list[str]:
    return [request.path for request in server.requests if request.path.startswith("/w/api.php")]


def test_a_batch_is_one_request_and_every_id_gets_its_outcome(served: StandInWikidata) -> None:
    run = ImportRun.objects.create()
    outcomes = WikidataImporter().import_batch(["Q1022", "Q7259", "P31", "L7", "Q99999", "Q404"], run.pk)
    assert outcomes == EVERY_KIND
    (path,) = api_requests(served)
    assert "action=wbgetentities" in path
    assert "maxlag=5" in path
    assert [r.path for r in served.requests] == [path]  # nothing fetched one by one
    assert WikidataEntity.objects.get(pk="Q1022").data == STUTTGART  # without the "redirects" marker
    assert WikidataEntity.objects.get(pk="L7").label == "cat"
    assert WikidataRedirect.objects.get(pk="Q99999").target_id == "Q1022"
    assert dict(ImportOutcome.objects.values_list("pk", "status")) == outcomes
    assert ImportRun.objects.get(pk=run.pk).finished_now() == 6


def test_a_batch_rewrites_only_what_changed(served: StandInWikidata) -> None:
    importer = WikidataImporter()
    importer.import_batch(["Q1022", "Q7259"])
    fetched_at = WikidataEntity.objects.get(pk="Q1022").fetched_at
    served.add_entity({**HUMAN, "lastrevid": HUMAN["lastrevid"] + 1})
    assert importer.import_batch(["Q1022", "Q7259"]) == {"Q1022": "unchanged", "Q7259": "imported"}
    assert WikidataEntity.objects.get(pk="Q1022").fetched_at == fetched_at


def test_maxlag_is_retried_like_a_429(served: StandInWikidata, settings: object) -> None:
    settings.WIKIDATA_RETRY_AFTER_MAX = 0.1  # type: ignore[attr-defined]  # the fault says 5 s
    served.add_fault(None, Fault.maxlag(), times=2)
    assert WikidataImporter().import_batch(["Q1022", "P31"]) == {"Q1022": "imported", "P31": "imported"}
    assert len(api_requests(served)) == 3
    assert ImportOutcome.objects.get(pk="Q1022").attempts == 3


def test_a_batch_that_fails_for_good_falls_back_to_one_task_per_id(served: StandInWikidata) -> None:
    served.add_fault(None, Fault.status(503), times=4)  # every try of the batch request
    outcomes = WikidataImporter().import_batch(["Q1022", "Q404", "P31"])
    assert outcomes == {"Q1022": "imported", "Q404": "missing", "P31": "imported"}
    assert len(api_requests(served)) == 4
    assert served.count("Q404") == 5  # four in the batch, then its own request


def test_an_invalid_id_in_a_batch_does_not_sink_the_others(served: StandInWikidata) -> None:
    outcomes = WikidataImporter().import_batch(["Q1022", "Q0", "P31"])
    assert outcomes == {"Q1022": "imported", "Q0": "invalid", "P31": "imported"}


def test_ids_the_response_leaves_out_are_fetched_one_by_one(served: StandInWikidata) -> None:
    served.add_fault(None, Fault.wrong_shape({"entities": {"Q1022": STUTTGART}, "success": 1}))
    outcomes = WikidataImporter().import_batch(["Q1022", "P31"])
    assert outcomes == {"Q1022": "imported", "P31": "imported"}
    assert served.count("P31") == 2


def test_fetch_batch_takes_one_to_fifty_ids() -> None:
    with pytest.raises(ValueError, match="1 to 50"):
        fetch_batch([f"Q{n}" for n in range(1, 52)])
    with pytest.raises(ValueError, match="1 to 50"):
        fetch_batch([])


def test_chunked_streams_its_input() -> None:
    def ids() -> Iterator[str]:
        yield from ["Q1", "Q2", "Q3"]
        raise AssertionError("read past what was needed")

    chunks = chunked(ids(), 2)
    assert next(chunks) == ["Q1", "Q2"]
    assert list(chunked([], 3)) == []


def test_the_command_imports_in_batches(served: StandInWikidata) -> None:
    served.add_entity(item("Q64", "Berlin"))
    out = io.StringIO()
    call_command(
        "import_wikidata", "Q1022", "Q7259", "P31", "L7", "Q99999", "Q64", "--batch-size", "4", stdout=out
    )
    assert out.getvalue().splitlines()[-1] == "Every id was imported."
    assert len(api_requests(served)) == 2
    assert ImportOutcome.objects.filter(status__in=ImportOutcome.SUCCESSFUL).count() == 6


@pytest.mark.parametrize("size", ["0", "51", "x"])
def test_the_batch_size_is_checked(served: StandInWikidata, size: str) -> None:
    with pytest.raises(CommandError, match=r"batch.size"):
        call_command("import_wikidata", "Q1022", "--batch-size", size, stdout=io.StringIO())
    assert served.requests == []


def test_an_unexpected_error_while_storing_a_batch_is_recorded_for_each_id(
    served: StandInWikidata, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_upsert(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("importers.storage.upsert_newer", broken_upsert)
    with pytest.raises(RuntimeError, match="disk full"):
        WikidataImporter().import_batch(["Q1022", "Q404"])
    assert dict(ImportOutcome.objects.values_list("pk", "status")) == {"Q1022": "failed", "Q404": "failed"}
    assert not WikidataEntity.objects.exists()


def peak_traced_bytes_importing(wikidata: StandInWikidata, count: int) -> int:
    """The peak of Python's allocations while ``import_wikidata`` imports ``count`` ids of 25 KB in
    process, 50 a message."""
    ids = [f"Q{number}" for number in range(1, count + 1)]
    labels = texts(**{f"l{index}": "x" * 200 for index in range(110)})  # 22 KB of labels
    for entity_id in ids:
        wikidata.add_entity(item(entity_id, f"Item {entity_id}", labels=labels))
    tracemalloc.start()
    try:
        call_command(
            "import_wikidata", *ids, "--batch-size", "50", stdout=io.StringIO(), stderr=io.StringIO()
        )
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        WikidataEntity.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_an_in_process_batched_import_holds_a_few_batches_at_once_however_many_ids(
    wikidata: StandInWikidata, settings: Any
) -> None:
    """Its memory is bounded by the batches in flight (one a thread), not by the ids: measured 38 MB
    of allocations for 300 ids of 25 KB and for 900 (the command's RSS 124 and 141 MB)."""
    small, large = peak_traced_bytes_importing(wikidata, 300), peak_traced_bytes_importing(wikidata, 900)
    in_flight = settings.WIKIDATA_IN_PROCESS_THREADS * 50 * 25_000  # raw answers, one batch a thread
    assert large < small * 1.5
    assert large < 10 * in_flight
