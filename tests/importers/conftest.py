"""Fixtures of the importer tests: a stand-in Wikidata serving one entity of each kind."""

from __future__ import annotations

import contextlib
import io

import pytest
from django.core.management import call_command

from core.exceptions import TaskFailed
from importers.importers import WikidataImporter
from importers.models import ImportOutcome
from tests.importers.entities import HUMAN, LEXEME, PROPERTY, STUTTGART
from tests.support.wikidata_server import StandInWikidata

# The outcome of each id that ``served`` answers for, plus one it does not have.
EVERY_KIND = {
    "Q1022": "imported",
    "Q7259": "imported",
    "P31": "imported",
    "L7": "imported",
    "Q99999": "redirected",
    "Q404": "missing",
}


@pytest.fixture
def served(wikidata: StandInWikidata) -> StandInWikidata:
    """A city, a human, a property, a lexeme, and ``Q99999`` merged into the city."""
    for document in (STUTTGART, HUMAN, PROPERTY, LEXEME):
        wikidata.add_entity(document)
    wikidata.add_redirect("Q99999", "Q1022")
    return wikidata


def import_wikidata(*args: str) -> str:
    """Run the command; return what it printed."""
    out = io.StringIO()
    call_command("import_wikidata", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def import_in(mode: str, wikidata_id: str = "Q1022") -> ImportOutcome:
    """Import ``wikidata_id`` alone, or in a batch with P31; return its outcome."""
    importer = WikidataImporter()
    if mode == "single":
        with contextlib.suppress(TaskFailed):  # a failed outcome fails the task too
            importer.import_single(wikidata_id)
    else:
        importer.import_batch([wikidata_id, "P31"])
    return ImportOutcome.objects.get(pk=wikidata_id)
