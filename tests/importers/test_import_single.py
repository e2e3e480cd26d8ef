"""``WikidataImporter.import_single`` against the stand-in server: documents, outcomes and faults."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

from core.exceptions import TaskFailed
from importers.importers import WikidataImporter
from importers.models import ImportOutcome, ImportRun, WikidataEntity, WikidataRedirect
from tests.importers.entities import GERMAN_ONLY, HUMAN, LEXEME, PROPERTY, STUTTGART, UNDECODABLE, item
from tests.support.wikidata_server import Fault, StandInWikidata

pytestmark = pytest.mark.django_db
Status = ImportOutcome.Status


def import_single(wikidata_id: str, run_id: int | None = None) -> str:
    return WikidataImporter().import_single(wikidata_id, run_id)


def outcome(wikidata_id: str) -> ImportOutcome:
    return ImportOutcome.objects.get(pk=wikidata_id)


def test_a_city_is_imported_whole(wikidata: StandInWikidata) -> None:
    wikidata.add_entity(STUTTGART)
    assert import_single("Q1022") == Status.IMPORTED
    entity = WikidataEntity.objects.get(pk="Q1022")
    assert entity.entity_type == "item"
    assert entity.label == "Stuttgart"
    assert entity.description == "capital of Baden-Württemberg, Germany"
    assert entity.data == STUTTGART
    assert entity.lastrevid == 2000000001
    assert entity.modified == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert entity.fetched_at is not None
    assert outcome("Q1022").status == Status.IMPORTED
    assert outcome("Q1022").entity == entity
    assert outcome("Q1022").attempts == 1


def test_the_user_agent_setting_is_sent(wikidata: StandInWikidata, settings: object) -> None:
    settings.WIKIDATA_USER_AGENT = "test-suite/1.0 (ops@example.org)"  # type: ignore[attr-defined]
    wikidata.add_entity(STUTTGART)
    import_single("Q1022")
    assert wikidata.requests[-1].headers["User-Agent"] == "test-suite/1.0 (ops@example.org)"


def test_lower_case_ids_are_canonical(wikidata: StandInWikidata) -> None:
    wikidata.add_entity(STUTTGART)
    assert import_single("q1022") == Status.IMPORTED
    assert outcome("Q1022").status == Status.IMPORTED


def test_the_same_revision_is_not_rewritten(wikidata: StandInWikidata) -> None:
    wikidata.add_entity(STUTTGART)
    import_single("Q1022")
    fetched_at = WikidataEntity.objects.get(pk="Q1022").fetched_at
    assert import_single("Q1022") == Status.UNCHANGED
    assert WikidataEntity.objects.get(pk="Q1022").fetched_at == fetched_at
    wikidata.add_entity(
        {**STUTTGART, "lastrevid": 2000000009, "labels": {"en": {"language": "en", "value": "S"}}}
    )
    assert import_single("Q1022") == Status.IMPORTED
    entity = WikidataEntity.objects.get(pk="Q1022")
    assert (entity.lastrevid, entity.label) == (2000000009, "S")
    assert WikidataEntity.objects.count() == 1


def test_a_redirect_stores_the_target_under_its_own_id(wikidata: StandInWikidata) -> None:
    wikidata.add_entity(STUTTGART)
    wikidata.add_redirect("Q99999", "Q1022")
    assert import_single("Q99999") == Status.REDIRECTED
    assert list(WikidataEntity.objects.values_list("pk", flat=True)) == ["Q1022"]
    assert WikidataRedirect.objects.get(pk="Q99999").target_id == "Q1022"
    redirected = outcome("Q99999")
    assert redirected.status == Status.REDIRECTED
    assert redirected.entity_id == "Q1022"


def test_a_stored_entity_merged_into_another_becomes_a_redirect_and_no_longer_an_entity(
    wikidata: StandInWikidata,
) -> None:
    wikidata.add_entity(item("Q5", "Merged away", lastrevid=500))
    import_single("Q5")
    wikidata.add_redirect("Q6", "Q5")
    import_single("Q6")
    # Q5 is merged into Q1022 on Wikidata: asking for it answers with Q1022.
    wikidata.add_entity(STUTTGART)
    wikidata.add_redirect("Q5", "Q1022")
    assert import_single("Q5") == Status.REDIRECTED
    assert sorted(WikidataEntity.objects.values_list("pk", flat=True)) == ["Q1022"]
    # Q6 pointed at Q5: it follows Q5 to its target, not lost with Q5's row.
    assert dict(WikidataRedirect.objects.values_list("pk", "target_id")) == {"Q5": "Q1022", "Q6": "Q1022"}
    assert outcome("Q5").entity_id == "Q1022"


@pytest.mark.parametrize(
    ("document", "label", "entity_type"),
    [
        (HUMAN, "Ada Lovelace", "item"),
        (PROPERTY, "instance of", "property"),
        (LEXEME, "cat", "lexeme"),
        (GERMAN_ONLY, "Dresden", "item"),
        (UNDECODABLE, "Nuremberg", "item"),
    ],
    ids=["human", "property", "lexeme", "no-english-label", "undecodable-claims"],
)
def test_every_kind_of_entity_imports_whole(
    wikidata: StandInWikidata, document: dict[str, object], label: str, entity_type: str
) -> None:
    wikidata.add_entity(document)
    entity_id = str(document["id"])
    assert import_single(entity_id) == Status.IMPORTED
    entity = WikidataEntity.objects.get(pk=entity_id)
    assert (entity.label, entity.entity_type) == (label, entity_type)
    assert entity.data == document


def test_the_configured_language_is_used_with_a_fallback(wikidata: StandInWikidata, settings: object) -> None:
    settings.WIKIDATA_LANGUAGE = "de"  # type: ignore[attr-defined]
    wikidata.add_entity(STUTTGART)
    wikidata.add_entity(item("Q64", labels={"fr": {"language": "fr", "value": "Berlin"}}))
    import_single("Q1022")
    import_single("Q64")
    assert WikidataEntity.objects.get(pk="Q1022").label == "Stuttgart (de)"
    assert WikidataEntity.objects.get(pk="Q1022").description == "capital of Baden-Württemberg, Germany"
    assert WikidataEntity.objects.get(pk="Q64").label == "Berlin"


def test_a_missing_entity_is_recorded_and_not_retried(wikidata: StandInWikidata) -> None:
    assert import_single("Q404") == Status.MISSING
    assert outcome("Q404").status == Status.MISSING
    assert "404" in outcome("Q404").error
    assert wikidata.count("Q404") == 1
    assert not WikidataEntity.objects.exists()


def test_an_id_wikidata_calls_invalid_is_recorded_as_invalid(wikidata: StandInWikidata) -> None:
    wikidata.add_fault("Q5", Fault.status(400))
    assert import_single("Q5") == Status.INVALID
    assert outcome("Q5").status == Status.INVALID


def test_a_malformed_id_is_invalid_without_a_request(wikidata: StandInWikidata) -> None:
    assert import_single("Q1;DROP") == Status.INVALID
    assert outcome("Q1;DROP").status == Status.INVALID
    assert wikidata.requests == []


def test_429_is_retried_no_sooner_than_retry_after(wikidata: StandInWikidata) -> None:
    wikidata.add_entity(STUTTGART)
    wikidata.add_fault("Q1022", Fault.status(429, headers={"Retry-After": "1"}))
    assert import_single("Q1022") == Status.IMPORTED
    first, second = wikidata.requests
    assert second.time - first.time >= 1.0
    assert outcome("Q1022").attempts == 2


def test_retry_after_is_capped(wikidata: StandInWikidata, settings: object) -> None:
    settings.WIKIDATA_RETRY_AFTER_MAX = 0.2  # type: ignore[attr-defined]
    wikidata.add_entity(STUTTGART)
    wikidata.add_fault("Q1022", Fault.status(429, headers={"Retry-After": "3600"}))
    assert import_single("Q1022") == Status.IMPORTED
    first, second = wikidata.requests
    assert 0.2 <= second.time - first.time < 5


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(500),
        Fault.status(502),
        Fault.status(503),
        Fault.status(504),
        Fault.reset(),
        Fault.hang(1),
    ],
    ids=["500", "502", "503", "504", "connection-reset", "timeout"],
)
def test_transient_faults_are_retried_until_they_pass(
    wikidata: StandInWikidata, fault: Fault, settings: object
) -> None:
    settings.WIKIDATA_TIMEOUT = 0.3  # type: ignore[attr-defined]
    wikidata.add_entity(STUTTGART)
    wikidata.add_fault("Q1022", fault, times=2)
    assert import_single("Q1022") == Status.IMPORTED
    assert wikidata.count("Q1022") == 3
    assert outcome("Q1022").attempts == 3


def test_a_fault_that_outlasts_the_retries_is_recorded_as_failed(
    wikidata: StandInWikidata, settings: object
) -> None:
    run = ImportRun.objects.create()
    wikidata.add_entity(STUTTGART)
    wikidata.add_fault("Q1022", Fault.status(503), times=100)
    with pytest.raises(TaskFailed, match="Q1022 failed"):
        import_single("Q1022", run.pk)
    failed = outcome("Q1022")
    assert failed.status == Status.FAILED
    assert failed.attempts == settings.WIKIDATA_MAX_RETRIES + 1  # type: ignore[attr-defined]
    assert "HTTP 503" in failed.error
    assert wikidata.count("Q1022") == failed.attempts
    assert not WikidataEntity.objects.exists()
    assert ImportRun.objects.get(pk=run.pk).finished_now() == 1


def test_connection_errors_that_outlast_the_retries_fail_with_the_error(wikidata: StandInWikidata) -> None:
    wikidata.add_fault("Q1022", Fault.reset(), times=100)
    with pytest.raises(TaskFailed):
        import_single("Q1022")
    assert "gave up after 4 attempts" in outcome("Q1022").error


def test_403_fails_at_once_and_says_to_set_the_user_agent(wikidata: StandInWikidata) -> None:
    wikidata.add_entity(STUTTGART)
    wikidata.add_fault("Q1022", Fault.status(403), times=100)
    with pytest.raises(TaskFailed):
        import_single("Q1022")
    assert "WIKIDATA_USER_AGENT" in outcome("Q1022").error
    assert wikidata.count("Q1022") == 1


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault.not_json(), "the response is not JSON"),
        (Fault.wrong_shape({"foo": 1}), "unexpected shape"),
        (Fault.wrong_shape([]), "unexpected shape"),
        (Fault.wrong_shape({"entities": {}}), "unexpected shape"),
        (Fault.wrong_shape({"entities": {"Q1022": "text"}}), "unexpected shape"),
        (Fault.wrong_shape({"entities": {"Q1022": {"id": "Q1"}}}), "unexpected shape"),
    ],
    ids=["not-json", "no-entities", "a-list", "empty", "not-a-document", "wrong-id"],
)
def test_an_unusable_response_fails_clearly_and_writes_nothing(
    wikidata: StandInWikidata, fault: Fault, message: str
) -> None:
    wikidata.add_fault("Q1022", fault)
    with pytest.raises(TaskFailed):
        import_single("Q1022")
    assert message in outcome("Q1022").error
    assert not WikidataEntity.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_one_id_at_once_leave_one_row(wikidata: StandInWikidata) -> None:
    wikidata.add_entity(STUTTGART)
    wikidata.latency = 0.2  # both requests in flight together
    errors: list[BaseException] = []

    def run() -> None:
        try:
            import_single("Q1022")
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert WikidataEntity.objects.count() == 1
    assert ImportOutcome.objects.count() == 1


def test_an_unexpected_error_while_storing_is_recorded_and_raised(
    wikidata: StandInWikidata, monkeypatch: pytest.MonkeyPatch
) -> None:
    wikidata.add_entity(STUTTGART)

    def broken_upsert(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("importers.storage.upsert_newer", broken_upsert)
    with pytest.raises(RuntimeError, match="disk full"):
        import_single("Q1022")
    failed = outcome("Q1022")
    assert failed.status == Status.FAILED
    assert "could not import: RuntimeError: disk full" in failed.error
    assert not WikidataEntity.objects.exists()
