"""The admin in a real browser (Debian's headless Chromium, through Selenium) over real Wikidata documents.

What a person sees: an entity's label, its document folded and pretty-printed where unfolded, the
link to Wikidata; an action that sends a refresh to the workers; the run it made, leading to its
outcomes. ``bash .ci/run`` installs ``chromium`` and ``chromium-driver`` where they are missing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from importers.importers import WikidataImporter
from importers.models import ImportRun, WikidataEntity, WikidataRedirect
from tests.importers.test_shared_documents import document_files, entities_of
from tests.support.shared import SHARED
from tests.support.waiting import wait_until
from tests.support.wikidata_server import StandInWikidata
from tests.support.workers import CeleryWorker

pytestmark = pytest.mark.django_db(transaction=True)  # the live server and the worker see what is committed

# The flags a headless Chromium needs as root and on a closed network, where the background
# services it would otherwise start (updates, sync, field trials) fail and slow it down.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
PASSWORD = "a password for the browser test"
WAIT = 30.0


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """A headless Chromium with a new, empty profile, for the tests of this module."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.fail("the admin's browser tests need Debian's chromium and chromium-driver: `bash .ci/run`")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    # The driver is given: Selenium Manager would otherwise look for one on the network.
    browser = webdriver.Chrome(options=options, service=Service(driver))
    browser.implicitly_wait(0)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def real_entities(wikidata: StandInWikidata, settings: Any) -> dict[str, dict[str, Any]]:
    """Every entity of the shared real documents, imported through the stand-in; documents by id.

    Where a file repeats an entity, the largest document is kept (Q42.json's, about 400 KB on disk).
    The Wikidata links then point at Wikidata itself; the worker keeps fetching from the stand-in.
    """
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the browser tests show its real documents")
    documents: dict[str, dict[str, Any]] = {}
    redirects = {}
    for path in document_files():
        for asked, document in entities_of(path):
            clean = {key: value for key, value in document.items() if key != "redirects"}
            if len(json.dumps(clean)) > len(json.dumps(documents.get(clean["id"], {}))):
                documents[clean["id"]] = clean
            if asked != clean["id"]:
                redirects[asked] = clean["id"]
    for document in documents.values():
        wikidata.add_entity(document)
    for asked, target in redirects.items():
        wikidata.add_redirect(asked, target)
    importer = WikidataImporter()
    for wikidata_id in [*documents, *redirects]:
        importer.import_single(wikidata_id)
    assert WikidataEntity.objects.count() == len(documents)
    assert WikidataRedirect.objects.count() == len(redirects)
    settings.WIKIDATA_BASE_URL = "https://www.wikidata.org/"
    return documents


@pytest.fixture
def admin_browser(chromium: WebDriver, live_server: Any) -> WebDriver:
    """The browser, with an administrator logged in through the login page."""
    User.objects.create_superuser("operator", password=PASSWORD)
    chromium.delete_all_cookies()
    chromium.get(f"{live_server.url}/admin/login/")
    chromium.find_element(By.NAME, "username").send_keys("operator")
    chromium.find_element(By.NAME, "password").send_keys(PASSWORD)
    chromium.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    until(chromium, lambda: chromium.find_element(By.ID, "user-tools"))
    return chromium


def until(browser: WebDriver, condition: Any, timeout: float = WAIT) -> Any:
    """Wait until ``condition()`` is true (ignoring elements not there yet, or replaced by a page
    that loaded meanwhile); return what it returned."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(browser, timeout, ignored_exceptions=ignored).until(lambda _: condition())


def link(browser: WebDriver, text: str) -> WebElement:
    return browser.find_element(By.LINK_TEXT, text)


def field(browser: WebDriver, name: str) -> str:
    """The text a read-only field of an admin page shows."""
    return str(browser.find_element(By.CSS_SELECTOR, f".field-{name} .readonly").text)


def test_an_entity_page_shows_the_label_the_folded_document_and_the_link_to_wikidata(
    admin_browser: WebDriver, live_server: Any, real_entities: dict[str, dict[str, Any]]
) -> None:
    browser = admin_browser
    link(browser, "Wikidata entities").click()
    browser.find_element(By.ID, "searchbar").send_keys("Douglas Adams\n")
    until(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".paginator").text == "1 Wikidata entity")
    browser.find_element(By.CSS_SELECTOR, "#result_list th.field-wikidata_id a").click()
    until(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".wikidata-document"))

    assert browser.find_element(By.TAG_NAME, "h1").text == "View Wikidata entity"
    assert field(browser, "label") == "Douglas Adams"
    assert field(browser, "description") == real_entities["Q42"]["descriptions"]["en"]["value"]
    on_wikidata = browser.find_element(By.CSS_SELECTOR, ".field-on_wikidata a")
    assert on_wikidata.get_attribute("href") == "https://www.wikidata.org/wiki/Q42"
    assert not browser.find_elements(By.CSS_SELECTOR, "input[type=text], textarea, input[name=_save]")
    # The largest real document (383 KB on disk), folded (its speed is no test's business: a
    # timed assertion fails on a slow machine).
    assert (SHARED / "Q42.json").stat().st_size > 350_000

    # Folded: the plain values one line each, then one line per other top-level key, sized;
    # nothing of the statements shows.
    document = browser.find_element(By.CSS_SELECTOR, ".wikidata-document")
    assert '"id": "Q42"\n' in document.text
    assert f'"lastrevid": {real_entities["Q42"]["lastrevid"]}\n' in document.text
    keys = {
        element.text.split(":")[0]: element
        for element in browser.find_elements(By.CSS_SELECTOR, ".document-key > summary")
    }
    assert set(keys) == {
        json.dumps(key)
        for key, value in real_entities["Q42"].items()
        if isinstance(value, dict | list) and value
    }
    assert all(not details.get_attribute("open") for details in browser.find_elements(By.TAG_NAME, "details"))
    claims = keys['"claims"']
    assert f"{len(real_entities['Q42']['claims']):,} keys" in claims.text
    instance_of = browser.find_element(
        By.XPATH, "//details[@class='document-entry'][summary[starts-with(., '\"P31\"')]]"
    )
    assert not instance_of.is_displayed()

    # Unfolded by hand, one level, then the other: the statement pretty-printed.
    claims.click()
    assert instance_of.is_displayed()
    assert not instance_of.find_element(By.TAG_NAME, "pre").is_displayed()
    instance_of.find_element(By.TAG_NAME, "summary").click()
    statement = instance_of.find_element(By.TAG_NAME, "pre").text
    assert '      "property": "P31",\n' in statement
    assert '"numeric-id": 5' in statement
    assert instance_of.value_of_css_property("margin-left") != "0px"  # the stylesheet is served

    # The script unfolds and folds everything at once.
    browser.find_element(By.CSS_SELECTOR, "[data-fold=open]").click()
    assert all(
        details.get_attribute("open")
        for details in browser.find_elements(By.CSS_SELECTOR, "details.document-key")
    )
    browser.find_element(By.CSS_SELECTOR, "[data-fold=close]").click()
    assert not claims.find_element(By.XPATH, "..").get_attribute("open")


@pytest.mark.parametrize(
    ("wikidata_id", "label", "url"),
    [
        ("P279", "subclass of", "https://www.wikidata.org/wiki/Property:P279"),
        ("L3354", "bank", "https://www.wikidata.org/wiki/Lexeme:L3354"),
    ],
)
def test_a_property_and_a_lexeme_link_to_their_own_namespace_on_wikidata(
    admin_browser: WebDriver,
    live_server: Any,
    real_entities: dict[str, dict[str, Any]],
    wikidata_id: str,
    label: str,
    url: str,
) -> None:
    admin_browser.get(f"{live_server.url}/admin/importers/wikidataentity/{wikidata_id}/change/")
    assert field(admin_browser, "label") == label
    on_wikidata = admin_browser.find_element(By.CSS_SELECTOR, ".field-on_wikidata a")
    assert on_wikidata.get_attribute("href") == url


def test_refreshing_from_the_list_sends_a_run_whose_page_leads_to_its_outcomes(
    admin_browser: WebDriver,
    live_server: Any,
    real_entities: dict[str, dict[str, Any]],
    wikidata: StandInWikidata,
    live: CeleryWorker,
) -> None:
    browser = admin_browser
    changed = {**real_entities["P279"], "lastrevid": real_entities["P279"]["lastrevid"] + 1}
    wikidata.add_entity(changed)  # edited on Wikidata since it was imported
    browser.get(f"{live_server.url}/admin/importers/wikidataentity/")
    for wikidata_id in ("Q42", "P279", "L525"):
        browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value={wikidata_id}]").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("refresh_selected")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()

    message = until(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".messagelist .success"))
    run = ImportRun.objects.get()
    assert message.text == f"The refresh of 3 entities was sent to the workers as run {run.pk}."
    wait_until(lambda: run.finished_now() == 3, why=live.log_tail)

    # The run's page counts its outcomes by status, each a link to them.
    link(browser, "Home").click()
    link(browser, "Import runs").click()
    link(browser, str(run.pk)).click()
    assert field(browser, "outcomes_by_status") == "all 3 ids · imported: 1 · unchanged: 2"
    link(browser, "unchanged: 2").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert sorted(row.find_element(By.CSS_SELECTOR, ".field-wikidata_id").text for row in rows) == [
        "L525",
        "Q42",
    ]
    selected = browser.find_elements(By.CSS_SELECTOR, "#changelist-filter li.selected")
    assert [item.text for item in selected] == [f"Run {run.pk}", "unchanged"]

    # The other statuses are one click away in the filter.
    link(browser, "imported").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    statuses = [row.find_element(By.CSS_SELECTOR, ".field-status").text for row in rows]
    assert statuses == ["imported: stored or updated"]
    assert rows[0].find_element(By.CSS_SELECTOR, ".field-entity").text == "P279 subclass of"
    assert WikidataEntity.objects.get(pk="P279").lastrevid == changed["lastrevid"]
