"""``refresh_wikidata``: re-import only what changed on Wikidata, --force, --relabel, --older-than."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from importers.documents import Batch
from importers.models import ImportRun, WikidataEntity
from importers.storage import Storage
from tests.importers.entities import STUTTGART, item, texts
from tests.support.wikidata_server import Fault, StandInWikidata

pytestmark = pytest.mark.django_db


def refresh(*args: str) -> str:
    out = io.StringIO()
    call_command("refresh_wikidata", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def stored(wikidata: StandInWikidata, count: int) -> list[dict[str, Any]]:
    """``count`` items served and stored as an import would store them; return their documents."""
    numbers = range(1, count + 1)
    documents = [item(f"Q{number}", f"Item {number}", lastrevid=1000 + number) for number in numbers]
    for document in documents:
        wikidata.add_entity(document)
    for start in range(0, count, 50):
        chunk = documents[start : start + 50]
        Storage().store_batch(Batch({document["id"]: document for document in chunk}, [], [], 1))
    wikidata.requests.clear()
    return documents


def test_refreshing_1000_entities_of_which_10_changed_takes_20_plus_10_requests(
    wikidata: StandInWikidata,
) -> None:
    documents = stored(wikidata, 1000)
    changed = documents[::100]
    for document in changed:
        wikidata.add_entity({**document, "lastrevid": document["lastrevid"] + 1, "labels": texts(en="New")})
    output = refresh()
    assert output.splitlines()[0] == "Checked 1000 stored entities (20 requests): 10 to re-import."
    assert output.splitlines()[-1] == "Every id was imported."
    assert len(wikidata.requests) == 20 + 10
    assert set(WikidataEntity.objects.filter(label="New").values_list("pk", flat=True)) == {
        document["id"] for document in changed
    }
    assert ImportRun.objects.get().requested == 10


def test_nothing_changed_means_nothing_imported(wikidata: StandInWikidata) -> None:
    stored(wikidata, 60)
    assert refresh().splitlines() == [
        "Checked 60 stored entities (2 requests): 0 to re-import.",
        "Every selected entity is up to date.",
    ]
    assert not ImportRun.objects.exists()


def test_with_nothing_selected_it_says_nothing_was_checked(wikidata: StandInWikidata) -> None:
    """Before: "Every entity is up to date.", with nothing stored or selected."""
    stored(wikidata, 2)
    assert refresh("--older-than", "7d").splitlines() == [
        "Checked 0 stored entities (0 requests): 0 to re-import.",
        "No stored entity is selected: nothing was checked.",
    ]


def test_force_rewrites_an_entity_whose_revision_did_not_change(wikidata: StandInWikidata) -> None:
    stored(wikidata, 3)
    WikidataEntity.objects.filter(pk="Q2").update(label="edited in the admin")
    refresh("Q2")
    assert WikidataEntity.objects.get(pk="Q2").label == "edited in the admin"  # same revision: kept
    output = refresh("Q2", "--force")
    assert "Q2  imported    Item 2" in output
    assert WikidataEntity.objects.get(pk="Q2").label == "Item 2"
    assert WikidataEntity.objects.get(pk="Q2").lastrevid == 1002


def test_relabel_recomputes_labels_for_the_language_without_any_request(
    wikidata: StandInWikidata, settings: Any
) -> None:
    wikidata.add_entity(STUTTGART)
    call_command("import_wikidata", "Q1022", stdout=io.StringIO())
    wikidata.requests.clear()
    settings.WIKIDATA_LANGUAGE = "de"
    assert refresh("--relabel") == "Relabelled 1 of 1 entities in 'de'.\n"
    assert WikidataEntity.objects.get(pk="Q1022").label == "Stuttgart (de)"
    assert wikidata.requests == []


def test_older_than_selects_only_entities_fetched_before_then(wikidata: StandInWikidata) -> None:
    stored(wikidata, 3)
    WikidataEntity.objects.filter(pk="Q1").update(fetched_at=timezone.now() - timedelta(days=8))
    assert refresh("--older-than", "7d").splitlines()[0] == (
        "Checked 1 stored entities (1 request): 0 to re-import."
    )


def test_ids_whose_check_failed_are_re_imported_and_so_get_an_outcome(
    wikidata: StandInWikidata,
) -> None:
    stored(wikidata, 2)
    wikidata.add_fault(None, Fault.status(503), times=4)  # every try of the one check
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="Could not check 2 of the selected ids on Wikidata"):
        call_command("refresh_wikidata", stdout=out, stderr=err)  # before: exit 0
    assert out.getvalue().splitlines()[0] == "Checked 0 stored entities (1 request): 2 to re-import."
    assert out.getvalue().splitlines()[-1] == "Every id was imported."
    assert err.getvalue().startswith("Could not check 2 ids, re-importing them: ")  # before: "50 ids"


def test_force_never_lowers_a_stored_revision_when_its_imports_fail(wikidata: StandInWikidata) -> None:
    """Before: --force erased the stored revision before sending, and put nothing back when the
    import failed; then an old dump overwrote revision 1867923350 with revision 100."""
    stored(wikidata, 1)
    wikidata.add_fault("Q1", Fault.status(503), times=100)  # the forced import fails
    with pytest.raises(CommandError):
        refresh("Q1", "--force")
    assert WikidataEntity.objects.get(pk="Q1").lastrevid == 1001
    older = item("Q1", "Older", lastrevid=100)
    Storage().store_batch(Batch({"Q1": older}, [], [], 1))  # an old document, from a dump say
    assert WikidataEntity.objects.get(pk="Q1").label == "Item 1"
    # Forced while a lagging server answers an older revision: rewritten only at the same one.
    wikidata.reset()
    wikidata.add_entity(older)
    assert "Q1  unchanged" in refresh("Q1", "--force")
    assert WikidataEntity.objects.get(pk="Q1").lastrevid == 1001


@pytest.mark.parametrize("bad", ["soon", "7x", "--1d", ""])
def test_a_duration_that_is_not_one_is_refused(bad: str) -> None:
    with pytest.raises(CommandError, match="is not a duration"):
        refresh(f"--older-than={bad}")
