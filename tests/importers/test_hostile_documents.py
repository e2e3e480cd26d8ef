"""Stored data: only newer revisions, redirects only to ids of the kind asked, documents as sent.

A document that cannot be stored as sent is failed before anything is written, on SQLite and
PostgreSQL alike, whether one id is fetched alone or in a wbgetentities batch.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest
from django.db import connection, transaction
from django.utils import timezone

from importers.documents import Fetched
from importers.dump.storage import Row, Staging
from importers.importers import LAG_RETRIES, WikidataImporter
from importers.models import ImportOutcome, WikidataEntity, WikidataRedirect
from importers.revisions import is_newer
from importers.storage import Storage, upsert_newer
from tests.importers.conftest import import_in
from tests.importers.entities import PROPERTY, STUTTGART, item, texts
from tests.support.wikidata_server import Fault, StandInWikidata

pytestmark = pytest.mark.django_db
Status = ImportOutcome.Status
MODES = ["single", "batch"]


def revision(wikidata_id: str = "Q1022") -> tuple[int | None, str]:
    entity = WikidataEntity.objects.get(pk=wikidata_id)
    return entity.lastrevid, entity.label


NEWER = {**STUTTGART, "lastrevid": 2000000009, "labels": texts(en="Newer")}
OLDER = {**STUTTGART, "lastrevid": 2000000001, "labels": texts(en="Older")}


# Revisions


@pytest.mark.parametrize("mode", MODES)
def test_an_older_revision_is_unchanged_and_never_written(served: StandInWikidata, mode: str) -> None:
    served.add_entity(NEWER)
    assert import_in(mode).status == Status.IMPORTED
    served.add_entity(OLDER)  # what a lagged replica may answer
    assert import_in(mode).status == Status.UNCHANGED
    assert revision() == (2000000009, "Newer")


@pytest.mark.parametrize(
    "asked", [["Q99999", "Q1022"], ["Q1022", "Q99999"]], ids=["redirect-first", "target-first"]
)
def test_a_redirect_and_its_target_in_one_answer_keep_the_newer_revision(
    served: StandInWikidata, asked: list[str]
) -> None:
    redirected = {**OLDER, "redirects": {"from": "Q99999", "to": "Q1022"}}
    entries = {"Q99999": redirected, "Q1022": NEWER}
    served.add_fault(None, Fault.wrong_shape({"entities": entries, "success": 1}))
    assert WikidataImporter().import_batch(asked) == {"Q99999": "redirected", "Q1022": "imported"}
    assert revision() == (2000000009, "Newer")


def entity(lastrevid: int | None, label: str) -> WikidataEntity:
    document = {**STUTTGART, "lastrevid": lastrevid, "labels": texts(en=label)}
    return WikidataEntity(
        wikidata_id="Q1022",
        entity_type="item",
        label=label,
        data=document,
        lastrevid=lastrevid,
        fetched_at=timezone.now(),
    )


# (the stored revision, or "none" for no row; the revision written over it; whether it is written)
UPSERTS = [
    pytest.param("none", 7, True, id="a-new-row"),
    pytest.param(5, 7, True, id="newer"),
    pytest.param(5, 5, False, id="the-same"),
    pytest.param(5, 3, False, id="older"),
    pytest.param(None, 3, True, id="a-revision-over-none"),
    pytest.param(5, None, False, id="none-over-a-revision"),
    # A document without a revision never replaces a row: a dump read twice rewrites nothing.
    pytest.param(None, None, False, id="none-over-none"),
]


@pytest.mark.parametrize(("before", "after", "written"), UPSERTS)
def test_the_upsert_itself_writes_only_a_newer_revision(
    before: Any, after: int | None, written: bool
) -> None:
    if before != "none":
        upsert_newer([entity(before, "before")])
    assert upsert_newer([entity(after, "after")]) == ({"Q1022"} if written else set())
    assert revision() == ((after, "after") if written else (before, "before"))
    assert WikidataEntity.objects.get().data["labels"]["en"]["value"] == ("after" if written else "before")


@pytest.mark.parametrize(("before", "after", "written"), UPSERTS)
def test_the_dump_writes_by_the_same_one_rule(before: Any, after: int | None, written: bool) -> None:
    if before != "none":
        upsert_newer([entity(before, "before")])
        assert is_newer(after, before) == written
    with transaction.atomic():
        staging = Staging()
        data = orjson.dumps(entity(after, "after").data)
        staging.add(Row("Q1022", "item", "after", "", data, after, None))
        assert staging.upsert(timezone.now()) == int(written)
    assert revision() == ((after, "after") if written else (before, "before"))


@pytest.mark.django_db(transaction=True)
def test_tasks_racing_with_different_revisions_leave_the_newest(wikidata: StandInWikidata) -> None:
    revisions = [2000000001 + n for n in range(6)]
    start = threading.Barrier(len(revisions))
    errors: list[BaseException] = []

    def store(lastrevid: int) -> None:
        document = {**STUTTGART, "lastrevid": lastrevid, "labels": texts(en=str(lastrevid))}
        try:
            start.wait()
            Storage().store("Q1022", Fetched("Q1022", document, 1))
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=store, args=(lastrevid,)) for lastrevid in reversed(revisions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert revision() == (revisions[-1], str(revisions[-1]))


# Redirect targets


def document_of(target: str) -> dict[str, Any]:
    return {**STUTTGART, "id": target, "title": target}


@pytest.mark.parametrize(
    "target", ["", "q145", "L1-F1", "Q1<script>alert(1)</script>", "Q0", "Q01", "P31", "L7", "Q1 "]
)
def test_a_redirect_to_anything_but_an_id_of_the_kind_asked_is_refused(
    served: StandInWikidata, target: str
) -> None:
    served.add_fault("Q1022", Fault.wrong_shape({"entities": {target: document_of(target)}}), times=10)
    failed = import_in("single")
    assert failed.status == Status.FAILED
    assert "not a Wikidata id of the kind asked for: refused" in failed.error
    assert not WikidataEntity.objects.exists()
    assert not WikidataRedirect.objects.exists()


# (the entry answered for Q1022 in a batch, what the outcome's error says)
FOREIGN_ENTRIES = [
    pytest.param(item("Q1", "Universe"), "without Wikidata's redirect marker", id="no-marker"),
    pytest.param(
        {**item("Q1", "Universe"), "redirects": {"from": "Q5", "to": "Q1"}},
        "without Wikidata's redirect marker",
        id="another-ids-marker",
    ),
    pytest.param(
        {**item("Q1", "Universe"), "redirects": {"from": "Q1022", "to": "Q2"}},
        "without Wikidata's redirect marker",
        id="a-marker-to-another-target",
    ),
    pytest.param(
        {**document_of("q1"), "redirects": {"from": "Q1022", "to": "q1"}},
        "not a Wikidata id",
        id="lower-case",
    ),
    pytest.param(
        {**PROPERTY, "redirects": {"from": "Q1022", "to": "P31"}}, "not a Wikidata id", id="another-kind"
    ),
]


@pytest.mark.parametrize(("entry", "reason"), FOREIGN_ENTRIES)
def test_a_batch_entry_with_another_ids_document_needs_wikidatas_redirect_marker(
    served: StandInWikidata, entry: dict[str, Any], reason: str
) -> None:
    assert import_in("single", "P31").status == Status.IMPORTED
    served.add_fault(None, Fault.wrong_shape({"entities": {"Q1022": entry, "P31": PROPERTY}, "success": 1}))
    assert WikidataImporter().import_batch(["Q1022", "P31"]) == {"Q1022": "failed", "P31": "unchanged"}
    assert reason in ImportOutcome.objects.get(pk="Q1022").error
    assert list(WikidataEntity.objects.values_list("pk", flat=True)) == ["P31"]
    assert revision("P31") == (PROPERTY["lastrevid"], "instance of")
    assert not WikidataRedirect.objects.exists()


# Documents that cannot be stored as sent


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


# (what the document has instead, what the outcome's error says)
UNSTORABLE = [
    pytest.param(
        {"claims": {"P1082": [{"amount": float("nan")}]}}, "claims.P1082[0].amount is nan", id="nan"
    ),
    pytest.param({"claims": {"P625": [float("inf")]}}, "is inf, not a finite number", id="infinity"),
    pytest.param({"claims": {"P625": [-float("inf")]}}, "is -inf, not a finite number", id="minus-infinity"),
    pytest.param({"labels": texts(en="Stutt\x00gart")}, "labels.en.value holds a NUL", id="nul-in-a-label"),
    pytest.param({"aliases": {"en\x00": []}}, "a key in aliases holds a NUL", id="nul-in-a-key"),
    pytest.param({"descriptions": texts(en="\ud800")}, "lone surrogate", id="a-lone-surrogate"),
    pytest.param({"claims": nested(100)}, "nests deeper than 64 levels", id="nested-too-deep"),
    pytest.param({"type": "x" * 33}, "not a type of at most 32 characters", id="a-long-type"),
    pytest.param(
        {"lastrevid": 2**63}, "lastrevid is 9223372036854775808, not a revision id", id="beyond-bigint"
    ),
    pytest.param({"lastrevid": 0}, "not a revision id", id="revision-zero"),
    pytest.param({"lastrevid": -1}, "not a revision id", id="a-negative-revision"),
    pytest.param({"lastrevid": "2000000001"}, "not a revision id", id="a-string-revision"),
    pytest.param({"lastrevid": True}, "not a revision id", id="a-boolean-revision"),
    pytest.param({"lastrevid": 2000000001.0}, "not a revision id", id="a-float-revision"),
    pytest.param({"modified": "2024-13-45T00:00:00Z"}, "not a date and time", id="an-impossible-date"),
    pytest.param(
        {"modified": "9999-12-31T23:59:59-23:59"}, "not a date and time", id="beyond-year-9999-in-utc"
    ),
    pytest.param({"modified": "yesterday"}, "not a date and time", id="a-word"),
    pytest.param({"modified": 1714566600}, "not a date and time", id="a-number"),
]


@pytest.mark.parametrize(("change", "reason"), UNSTORABLE)
@pytest.mark.parametrize("mode", MODES)
def test_a_document_that_cannot_be_stored_as_sent_is_failed_before_anything_is_written(
    served: StandInWikidata, mode: str, change: dict[str, Any], reason: str
) -> None:
    served.add_entity({**STUTTGART, **change})
    failed = import_in(mode)
    assert failed.status == Status.FAILED
    assert "could not store the document" in failed.error
    assert reason in failed.error
    assert not WikidataEntity.objects.filter(pk="Q1022").exists()
    if mode == "batch":  # failed alone: the batch stored its neighbour
        assert ImportOutcome.objects.get(pk="P31").status == Status.IMPORTED
        assert served.count("P31") == 1


def test_a_document_without_revision_or_date_as_in_a_dump_is_stored(wikidata: StandInWikidata) -> None:
    dumped = {key: value for key, value in STUTTGART.items() if key not in ("lastrevid", "modified")}
    wikidata.add_entity(dumped)
    assert import_in("single").status == Status.IMPORTED
    assert revision() == (None, "Stuttgart")
    assert WikidataEntity.objects.get().modified is None


def test_a_batch_answered_older_than_the_change_feeds_revision_asks_again_and_stores_the_new_one(
    served: StandInWikidata,
) -> None:
    """A replica behind the primary answers an older revision than the stream told of: asked again."""
    served.add_entity(NEWER)
    served.add_fault("Q1022", Fault.wrong_shape({"entities": {"Q1022": OLDER}, "success": 1}))  # once
    outcomes = WikidataImporter().import_batch(["Q1022"], at_least={"Q1022": NEWER["lastrevid"]})
    assert outcomes == {"Q1022": "sent"}  # in process, the second try ran at once
    assert served.count("Q1022") == 2
    assert revision() == (2000000009, "Newer")


def test_a_lagging_answer_is_asked_again_a_bounded_number_of_times_then_stored(
    served: StandInWikidata,
) -> None:
    served.add_entity(OLDER)  # the replica never catches up
    WikidataImporter().import_batch(["Q1022"], at_least={"Q1022": NEWER["lastrevid"]})
    assert served.count("Q1022") == 1 + LAG_RETRIES
    assert revision() == (2000000001, "Older")  # the newest it could get


def test_a_redirect_answered_with_its_targets_older_revision_is_no_lag(served: StandInWikidata) -> None:
    served.add_entity(OLDER)
    served.add_redirect("Q99999", "Q1022")
    WikidataImporter().import_batch(["Q99999"], at_least={"Q99999": NEWER["lastrevid"]})
    assert served.count("Q99999") == 1
    assert WikidataRedirect.objects.get(pk="Q99999").target_id == "Q1022"
