"""The admin: pages whose queries do not grow with the tables, the read-only entity page, the actions."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.db import connection
from django.templatetags.static import static
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from core.sender import TaskSender
from importers.admin import MAX_SELECTED, ImportRunAdmin, run_outcomes_url, wikidata_url
from importers.document_html import MAX_SHOWN_ENTRIES, document_html
from importers.importers import WikidataImporter
from importers.models import (
    ImportOutcome,
    ImportRun,
    RunOrigin,
    RunOutcome,
    Status,
    WikidataEntity,
    WikidataRedirect,
)
from tests.importers.entities import STUTTGART
from tests.support.waiting import wait_until
from tests.support.wikidata_server import StandInWikidata
from tests.support.workers import CeleryWorker

pytestmark = pytest.mark.django_db

# What reading a document looks like in SQL, on SQLite and PostgreSQL alike.
READS_A_DOCUMENT = re.compile(r'"importers_wikidataentity"\."data"')


def changelist(model: str) -> str:
    return reverse(f"admin:importers_{model}_changelist")


def document(number: int) -> dict[str, Any]:
    """A document of about 2 KB: every list that loaded it would be slow to notice at 1,000 rows."""
    return {
        "id": f"Q{number}",
        "type": "item",
        "lastrevid": number,
        "labels": {"en": {"language": "en", "value": f"entity {number}"}},
        "claims": {"P31": [{"mainsnak": {"property": "P31", "datavalue": {"value": "x" * 2000}}}]},
    }


def add_entities(numbers: range) -> list[WikidataEntity]:
    now = timezone.now()
    return WikidataEntity.objects.bulk_create(
        WikidataEntity(
            wikidata_id=f"Q{n}",
            entity_type="item",
            label=f"entity {n}",
            data=document(n),
            lastrevid=n,
            fetched_at=now,
        )
        for n in numbers
    )


def add_run_outcomes(run: ImportRun, numbers: range) -> None:
    """Outcomes of ``run`` for the entities ``numbers``: every tenth failed, every seventh still waiting."""
    RunOutcome.objects.bulk_create(
        RunOutcome(
            run=run,
            wikidata_id=f"Q{n}",
            entity_id=f"Q{n}",
            status="" if n % 7 == 0 else Status.FAILED if n % 10 == 0 else Status.IMPORTED,
        )
        for n in numbers
    )


# Each list page, filled with the rows ``numbers`` (more on each call); each returns the page's address.
def entity_list(numbers: range) -> str:
    add_entities(numbers)
    return changelist("wikidataentity")


def entity_search(numbers: range) -> str:
    add_entities(numbers)
    return changelist("wikidataentity") + "?q=entity&entity_type=item"


def redirect_list(numbers: range) -> str:
    add_entities(numbers)
    WikidataRedirect.objects.bulk_create(
        WikidataRedirect(wikidata_id=f"Q{n + 10_000_000}", target_id=f"Q{n}") for n in numbers
    )
    return changelist("wikidataredirect")


def run_list(numbers: range) -> str:
    runs = ImportRun.objects.bulk_create(ImportRun(requested=2) for _ in numbers)
    RunOutcome.objects.bulk_create(
        RunOutcome(run=run, wikidata_id=wikidata_id, status=status)
        for run in runs
        for wikidata_id, status in (("Q1", Status.IMPORTED), ("Q2", ""))
    )
    return changelist("importrun")


def outcomes_of_a_run(numbers: range) -> str:
    add_entities(numbers)
    run, _ = ImportRun.objects.get_or_create(pk=1)
    add_run_outcomes(run, numbers)
    return run_outcomes_url(run.pk)


def failed_outcomes_of_a_run(numbers: range) -> str:
    outcomes_of_a_run(numbers)
    return run_outcomes_url(1, status=Status.FAILED)


def import_outcomes(numbers: range) -> str:
    add_entities(numbers)
    run, _ = ImportRun.objects.get_or_create(pk=1)
    ImportOutcome.objects.bulk_create(
        ImportOutcome(wikidata_id=f"Q{n}", entity_id=f"Q{n}", run=run, status=Status.IMPORTED)
        for n in numbers
    )
    return changelist("importoutcome")


def entity_autocomplete(numbers: range) -> str:
    add_entities(numbers)
    query = "app_label=importers&model_name=wikidataredirect&field_name=target&term=entity"
    return reverse("admin:autocomplete") + "?" + query


# The most queries each page may run, whatever the row count: the request's savepoint and its
# release, the session and the user, then the count (and the unfiltered count, on the small
# tables), the page of rows, and the entity type filter's choices.
LIST_PAGES: dict[str, tuple[Callable[[range], str], int]] = {
    "entities": (entity_list, 7),
    "entities searched and filtered": (entity_search, 7),
    "redirects": (redirect_list, 7),
    "runs": (run_list, 7),
    "a run's outcomes": (outcomes_of_a_run, 6),
    "a run's failed outcomes": (failed_outcomes_of_a_run, 6),
    "latest outcomes": (import_outcomes, 6),
    "entity autocomplete": (entity_autocomplete, 6),
}


@pytest.mark.parametrize(("fill", "most"), LIST_PAGES.values(), ids=LIST_PAGES.keys())
def test_a_list_page_runs_as_few_queries_for_1000_rows_as_for_10_and_reads_no_document(
    admin_client: Client,
    django_assert_max_num_queries: Any,
    fill: Callable[[range], str],
    most: int,
) -> None:
    url = fill(range(1, 11))
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(url).status_code == 200
    fill(range(11, 1001))
    with django_assert_max_num_queries(most) as many:
        response = admin_client.get(url)
    assert response.status_code == 200
    assert len(many) == len(few)
    assert not [query["sql"] for query in many if READS_A_DOCUMENT.search(query["sql"])]


@pytest.mark.parametrize("column", ["finished", "not_imported", "last_outcome_at"])
def test_the_run_list_offers_no_sort_that_counts_the_outcomes_of_every_run(
    admin_client: Client, column: str
) -> None:
    """Before: sorting by "with an outcome" counted every run's outcomes, 12 minutes over 100,001 runs."""
    run_list(range(3))
    index = ImportRunAdmin.list_display.index(column)
    page = admin_client.get(changelist("importrun")).text
    header = re.search(rf'<th scope="col" class="[^"]*column-{column}[^"]*">(.*?)</th>', page, re.S)
    assert header is not None
    assert "sortable" not in header.group(0)
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(changelist("importrun") + f"?o={index + 1}").status_code == 200
    ordered = [query["sql"] for query in queries if "ORDER BY" in query["sql"]]
    assert ordered
    assert not [sql for sql in ordered if "COUNT(" in sql.split("ORDER BY", 1)[1].upper()]


def test_the_run_list_counts_each_runs_ids_with_an_outcome(admin_client: Client) -> None:
    run_list(range(3))
    rows = re.findall(
        r'<td class="field-finished">(\d+)</td>', admin_client.get(changelist("importrun")).text
    )
    assert rows == ["1", "1", "1"]


def test_the_run_list_tells_a_failed_run_from_a_good_one_and_a_running_one(admin_client: Client) -> None:
    """Before: a run whose every id failed looked exactly like a good one."""
    good, failed, running = ImportRun.objects.bulk_create(ImportRun(requested=2) for _ in range(3))
    RunOutcome.objects.bulk_create(
        RunOutcome(run=run, wikidata_id=wikidata_id, status=status)
        for run, statuses in (
            (good, (Status.IMPORTED, Status.UNCHANGED)),
            (failed, (Status.FAILED, Status.MISSING)),
            (running, (Status.IMPORTED, "")),
        )
        for wikidata_id, status in zip(("Q1", "Q2"), statuses, strict=True)
    )
    page = admin_client.get(changelist("importrun")).text
    states = re.findall(r'<td class="field-state">([^<]+)</td>', page)
    not_imported = re.findall(r'<td class="field-not_imported">(\d+)</td>', page)
    # Newest first: the running run, the failed one, the good one.
    assert states == ["running", "finished, with failures", "finished"]
    assert not_imported == ["0", "2", "0"]
    assert page.count('<td class="field-last_outcome_at') == 3


def test_the_run_list_and_page_say_what_started_each_run(admin_client: Client) -> None:
    *_, admin = ImportRun.objects.bulk_create(
        ImportRun(origin=origin) for origin in ("", RunOrigin.COMMAND, RunOrigin.ADMIN)
    )
    page = admin_client.get(changelist("importrun")).text
    origins = re.findall(r'<td class="field-origin">([^<]+)</td>', page)
    assert origins == [  # newest first; a run from before origins were recorded shows none
        "the admin (refresh or re-import selected)",
        "a command (import_wikidata, refresh_wikidata)",
        "-",
    ]
    page = admin_client.get(reverse("admin:importers_importrun_change", args=[admin.pk])).text
    assert "the admin (refresh or re-import selected)" in page


def test_a_run_page_counts_its_outcomes_by_status_each_linking_to_them(admin_client: Client) -> None:
    add_entities(range(1, 31))
    run = ImportRun.objects.create(requested=30)
    add_run_outcomes(run, range(1, 31))  # 4 waiting (7, 14, 21, 28), 3 failed (10, 20, 30)
    page = admin_client.get(reverse("admin:importers_importrun_change", args=[run.pk])).text
    links = dict(
        (text, href.replace("&amp;", "&"))
        for href, text in re.findall(r'<a href="([^"]+)">([^<]+)</a>', page)
    )
    assert links["all 30 ids"] == run_outcomes_url(run.pk)
    assert links["imported: 23"] == run_outcomes_url(run.pk, status="imported")
    assert links["failed: 3"] == run_outcomes_url(run.pk, status="failed")
    assert links["no outcome yet: 4"] == run_outcomes_url(run.pk, status="none")
    assert page.index("failed: 3") < page.index("imported: 23")  # failures first
    assert '<input type="submit"' not in page  # a record of what happened, not a form


@pytest.mark.parametrize(
    ("status", "ids"),
    [
        ("failed", ["Q10"]),
        ("none", ["Q7", "Q14"]),
        ("", [f"Q{n}" for n in range(1, 16)]),
    ],
)
def test_a_runs_outcome_list_shows_that_runs_ids_with_the_chosen_outcome(
    admin_client: Client, status: str, ids: list[str]
) -> None:
    add_entities(range(1, 21))
    run, other = ImportRun.objects.create(), ImportRun.objects.create()
    add_run_outcomes(run, range(1, 16))
    add_run_outcomes(other, range(16, 21))
    filters = {"status": status} if status else {}
    page = admin_client.get(run_outcomes_url(run.pk, **filters)).text
    listed = re.findall(r'<th class="field-wikidata_id"><a [^>]+>(Q\d+)</a>', page)
    assert sorted(listed) == sorted(ids)
    assert f"Run {run.pk}" in page  # the run filter says which run this is


def test_a_run_number_that_is_not_a_number_is_refused_as_a_lookup(admin_client: Client) -> None:
    response = admin_client.get(changelist("runoutcome") + "?run=abc")
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


# Each edit page (an object's key, or None for an add page), the most queries it may run (with the
# session, the user, the object, the content type for its history link, and each foreign key's
# choice), and how many documents it reads.
EDIT_PAGES: dict[str, tuple[str | None, int, int]] = {
    "wikidataredirect_change": ("Q99999999", 7, 0),
    "wikidataredirect_add": (None, 4, 0),
    "runoutcome_change": ("1", 8, 0),
    "importoutcome_change": ("Q5", 8, 0),
    "wikidataentity_change": ("Q5", 7, 1),
}


@pytest.mark.parametrize(("page", "key", "most", "documents_read"), [(k, *v) for k, v in EDIT_PAGES.items()])
def test_an_edit_page_of_1000_entities_lists_none_and_reads_no_document_but_the_one_it_shows(
    admin_client: Client,
    django_assert_max_num_queries: Any,
    page: str,
    key: str | None,
    most: int,
    documents_read: int,
) -> None:
    add_entities(range(1, 1001))
    run = ImportRun.objects.create()
    WikidataRedirect.objects.create(wikidata_id="Q99999999", target_id="Q5")
    RunOutcome.objects.create(pk=1, run=run, wikidata_id="Q5", entity_id="Q5", status=Status.IMPORTED)
    ImportOutcome.objects.create(wikidata_id="Q5", entity_id="Q5", run=run, status=Status.IMPORTED)
    url = reverse(f"admin:importers_{page}", args=[key] if key else [])
    with django_assert_max_num_queries(most) as queries:
        response = admin_client.get(url)
    assert response.status_code == 200
    assert len([query for query in queries if READS_A_DOCUMENT.search(query["sql"])]) == documents_read
    assert response.text.count("<option") < 20  # the statuses, and the selected entity at most
    if key and documents_read == 0:
        assert "Q5 entity 5" in response.text  # the selected entity, by id and label


def test_the_entity_page_shows_the_entity_read_only_with_its_document_folded(admin_client: Client) -> None:
    (entity,) = add_entities(range(42, 43))
    entity.data = {**entity.data, "labels": {"en": {"language": "en", "value": "<script>alert(1)</script>"}}}
    entity.save()
    page = admin_client.get(reverse("admin:importers_wikidataentity_change", args=["Q42"])).text
    assert "View Wikidata entity" in page
    assert "<textarea" not in page
    assert 'name="_save"' not in page
    assert (
        '<a href="https://www.wikidata.org/wiki/Q42" rel="noopener">https://www.wikidata.org/wiki/Q42</a>'
        in page
    )
    assert "<details open" not in page
    assert '<details class="document-key"><summary>&quot;claims&quot;: ' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert "importers/document.css" in page
    assert "importers/document.js" in page


def test_entities_cannot_be_added_or_changed_but_may_be_deleted(admin_client: Client) -> None:
    add_entities(range(1, 2))
    assert admin_client.get(reverse("admin:importers_wikidataentity_add")).status_code == 403
    url = reverse("admin:importers_wikidataentity_change", args=["Q1"])
    assert admin_client.post(url, {"label": "changed"}).status_code == 403
    assert WikidataEntity.objects.get().label == "entity 1"
    response = admin_client.post(
        reverse("admin:importers_wikidataentity_delete", args=["Q1"]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not WikidataEntity.objects.exists()


@pytest.mark.parametrize(
    ("wikidata_id", "url"),
    [
        ("Q42", "https://www.wikidata.org/wiki/Q42"),
        ("P31", "https://www.wikidata.org/wiki/Property:P31"),
        ("L7", "https://www.wikidata.org/wiki/Lexeme:L7"),
    ],
)
def test_each_kind_of_entity_links_to_its_page_on_wikidata(wikidata_id: str, url: str) -> None:
    assert wikidata_url(wikidata_id) == url


def test_the_wikidata_link_follows_the_configured_wikidata(settings: Any) -> None:
    settings.WIKIDATA_BASE_URL = "https://test.wikidata.org"
    assert wikidata_url("P31") == "https://test.wikidata.org/wiki/Property:P31"


def test_a_document_folds_each_top_level_key_and_each_entry_and_pretty_prints_the_values() -> None:
    html = document_html(
        {
            "id": "Q1",
            "aliases": {},
            "labels": {"en": {"language": "en", "value": "Ada"}},
            "forms": [{"id": "L1-F1"}, {"id": "L1-F2"}],
        }
    )
    assert '<div class="document-line">&quot;id&quot;: &quot;Q1&quot;</div>' in html
    assert '<div class="document-line">&quot;aliases&quot;: {}</div>' in html  # nothing to unfold
    assert '<summary>&quot;labels&quot;: <span class="document-size">1 key, 38 bytes</span>' in html
    assert '<summary>&quot;forms&quot;: <span class="document-size">2 items, 31 bytes</span>' in html
    assert "<summary>[1]: " in html
    assert '<pre class="document-value">{\n  &quot;language&quot;: &quot;en&quot;,\n' in html


def test_a_huge_document_shows_a_bounded_page_saying_what_it_leaves_out() -> None:
    """Before: a stored answer of a million empty arrays made a page of 33.6 MB, built in 750 MB."""
    html = document_html(
        {
            "id": "Q1",
            "claims": {f"P{number}": [] for number in range(1, 500_001)},
            "sitelinks": {"enwiki": {"site": "enwiki", "title": "x" * 5_000_000}},
        }
    )
    assert len(html) < 2_000_000
    assert html.count('<details class="document-entry">') == MAX_SHOWN_ENTRIES + 1
    assert f'<p class="document-more">… and {500_000 - MAX_SHOWN_ENTRIES:,} more not shown</p>' in html
    assert "more characters not shown)</pre>" in html


def test_the_documents_script_and_style_are_a_few_kilobytes_found_by_staticfiles() -> None:
    sizes = {}
    for name in ("importers/document.css", "importers/document.js"):
        path = finders.find(name)
        assert path, f"{name} is not found by the static files finders"
        sizes[name] = Path(path).stat().st_size
    assert sum(sizes.values()) < 4096, sizes


# The actions: they commit a run, then send it, so their tests commit too.
actions = pytest.mark.django_db(transaction=True)


def act(client: Client, action: str, ids: list[str], **extra: str) -> str:
    """Run an admin action on the entities ``ids``; return the text of the page it leads to."""
    data = {"action": action, "_selected_action": ids, **extra}
    response = client.post(changelist("wikidataentity"), data, follow=True)
    assert response.status_code == 200
    return str(response.text)


@pytest.fixture
def imported(served: StandInWikidata) -> StandInWikidata:
    """Stuttgart and Ada Lovelace imported, and served unchanged."""
    importer = WikidataImporter()
    assert importer.import_single("Q1022") == importer.import_single("Q7259") == Status.IMPORTED
    return served


@actions
def test_refreshing_entities_whose_revision_is_stored_leaves_them_unchanged(
    admin_client: Client, imported: StandInWikidata
) -> None:
    page = act(admin_client, "refresh_selected", ["Q1022", "Q7259"])
    run = ImportRun.objects.get()
    assert (
        f'The refresh of 2 entities ran here as <a href="{run_outcomes_url(run.pk)}">run {run.pk}</a>.'
        in page
    )
    assert dict(run.outcomes.values_list("wikidata_id", "status")) == {
        "Q1022": "unchanged",
        "Q7259": "unchanged",
    }
    assert list(run.outcomes.values_list("origin", flat=True)) == ["admin refresh", "admin refresh"]
    assert run.requested == 2
    assert run.origin == "admin"


@actions
def test_refreshing_an_entity_that_changed_on_wikidata_stores_the_new_revision(
    admin_client: Client, imported: StandInWikidata
) -> None:
    imported.add_entity({**STUTTGART, "lastrevid": STUTTGART["lastrevid"] + 1, "labels": {}})
    act(admin_client, "refresh_selected", ["Q1022"])
    assert ImportRun.objects.get().outcomes.get().status == "imported"
    assert WikidataEntity.objects.get(pk="Q1022").lastrevid == STUTTGART["lastrevid"] + 1


@actions
def test_reimporting_rewrites_an_unchanged_entity_relabelled_in_the_configured_language(
    admin_client: Client, imported: StandInWikidata, settings: Any
) -> None:
    settings.WIKIDATA_LANGUAGE = "de"
    page = act(admin_client, "reimport_selected", ["Q1022"])
    assert "The re-import of 1 entity ran here as" in page
    assert ImportRun.objects.get().outcomes.get().status == "imported"
    entity = WikidataEntity.objects.get(pk="Q1022")
    assert (entity.label, entity.lastrevid) == ("Stuttgart (de)", STUTTGART["lastrevid"])
    assert WikidataEntity.objects.get(pk="Q7259").label == "Ada Lovelace"  # not selected


@actions
def test_an_action_on_more_entities_than_it_takes_sends_nothing(admin_client: Client) -> None:
    add_entities(range(1, MAX_SELECTED + 2))
    page = act(admin_client, "refresh_selected", ["Q1"], select_across="1")
    assert "Select at most 1,000 entities to refresh at once" in page
    assert not ImportRun.objects.exists()


@actions
def test_with_the_broker_down_an_action_sends_nothing_and_leaves_the_entities_as_they_were(
    admin_client: Client, imported: StandInWikidata, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(TaskSender, "apply_async", unreachable)
    page = act(admin_client, "reimport_selected", ["Q1022"])
    assert "Nothing was sent: the broker could not be reached (Error 111 connecting" in page
    run = ImportRun.objects.get()
    assert (run.requested, run.outcomes.count()) == (0, 0)
    assert WikidataEntity.objects.get(pk="Q1022").lastrevid == STUTTGART["lastrevid"]


@actions
def test_a_user_who_may_only_view_entities_is_offered_no_import_action(imported: StandInWikidata) -> None:
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_wikidataentity"))
    client = Client()
    client.force_login(viewer)
    page = client.get(changelist("wikidataentity")).text
    assert "refresh_selected" not in page
    act(client, "refresh_selected", ["Q1022"])
    assert not ImportRun.objects.exists()


@actions
def test_with_workers_an_action_sends_the_run_to_them(
    admin_client: Client, imported: StandInWikidata, live: CeleryWorker, published: list[dict[str, Any]]
) -> None:
    page = act(admin_client, "refresh_selected", ["Q1022", "Q7259"])
    run = ImportRun.objects.get()
    assert "The refresh of 2 entities was sent to the workers as <a href" in page
    sent = {"wikidata_ids": ["Q1022", "Q7259"], "run_id": run.pk, "batch_size": 50}
    assert [message["body"][0] for message in published] == [("WikidataImporter", "import_bulk", [], sent)]
    wait_until(lambda: run.finished_now() == 2, why=live.log_tail)
    assert dict(run.outcomes.values_list("wikidata_id", "status")) == {
        "Q1022": "unchanged",
        "Q7259": "unchanged",
    }


def test_in_production_whitenoise_serves_the_documents_style_and_script_cache_busted(
    settings: Any, tmp_path: Path
) -> None:
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    settings.MIDDLEWARE = ["whitenoise.middleware.WhiteNoiseMiddleware", *settings.MIDDLEWARE]
    call_command("collectstatic", "--noinput", verbosity=0)
    client = Client()
    for name, hashed in (
        ("importers/document.css", r"/static/importers/document\.[0-9a-f]{12}\.css"),
        ("importers/document.js", r"/static/importers/document\.[0-9a-f]{12}\.js"),
    ):
        url = static(name)
        assert re.fullmatch(hashed, url), url
        response = client.get(url)
        assert response.status_code == 200
        assert "immutable" in response["Cache-Control"]


@pytest.mark.parametrize("model", ["runoutcome", "importoutcome"])
def test_outcome_records_cannot_be_added_or_changed_by_hand(admin_client: Client, model: str) -> None:
    """They are records of what happened (before: ADD RUN OUTCOME, and an editable form)."""
    from importers.storage import Storage

    Storage(ImportRun.objects.create().pk).record("Q1", Status.FAILED, error="what happened")
    assert admin_client.get(reverse(f"admin:importers_{model}_add")).status_code == 403
    outcome = (RunOutcome if model == "runoutcome" else ImportOutcome).objects.get()
    url = reverse(f"admin:importers_{model}_change", args=[outcome.pk])
    assert admin_client.post(url, {"status": "imported", "error": "forged"}).status_code == 403
    assert type(outcome).objects.get().error == "what happened"
    listing = admin_client.get(reverse(f"admin:importers_{model}_changelist"))
    assert listing.status_code == 200, (listing.status_code, listing.headers)
    assert reverse(f"admin:importers_{model}_add") not in listing.content.decode()  # no ADD button
