"""Real Wikidata documents (from public Wikidata tools, in ../shared/wikidata) through the importer."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from importers.importers import WikidataImporter
from importers.models import ImportOutcome, WikidataEntity, WikidataRedirect
from tests.support.shared import SHARED
from tests.support.wikidata_server import StandInWikidata

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        not SHARED.is_dir(), reason=f"{SHARED} is absent; its documents are not in the repository"
    ),
]


def load(path: Path) -> Any:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as file:
            text = file.read()
    else:
        text = path.read_text(encoding="utf-8")
    return json.loads(text)


def entities_of(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(asked id, document) for every entity document a file holds, whatever its shape."""
    data = load(path)
    if isinstance(data, list):  # a JSON dump: an array of entities
        for document in data:
            yield document["id"], document
    elif "entities" in data:  # a wbgetentities response: keyed by the asked id
        for asked, document in data["entities"].items():
            if "missing" not in document and "id" in document:
                yield asked, document
    elif "id" in data and "type" in data:  # a bare entity
        yield data["id"], data


def document_files() -> list[Path]:
    if not SHARED.is_dir():
        return []
    return sorted(path for path in SHARED.glob("*.json*") if any(entities_of(path)))


def names(document: dict[str, Any]) -> list[str]:
    texts = document.get("labels") or document.get("lemmas") or {}
    return [entry["value"] for entry in texts.values()]


@pytest.mark.parametrize("path", document_files(), ids=lambda path: path.name)
def test_every_real_document_imports_whole(wikidata: StandInWikidata, path: Path) -> None:
    documents = list(entities_of(path))
    for asked, document in documents:
        clean = {key: value for key, value in document.items() if key != "redirects"}
        wikidata.add_entity(clean)
        if asked != document["id"]:
            wikidata.add_redirect(asked, document["id"])
    importer = WikidataImporter()
    for asked, document in documents:
        status = importer.import_single(asked)
        entity = WikidataEntity.objects.get(pk=document["id"])
        assert entity.data == {key: value for key, value in document.items() if key != "redirects"}
        assert entity.lastrevid == document.get("lastrevid")
        assert entity.entity_type == document["type"]
        english = (document.get("labels") or document.get("lemmas") or {}).get("en")
        if english:
            assert entity.label == english["value"]
        elif names(document):
            assert entity.label in names(document)
        else:
            assert entity.label == ""
        if asked != document["id"]:
            assert status == ImportOutcome.Status.REDIRECTED
            assert document["redirects"] == {"from": asked, "to": document["id"]}
            assert WikidataRedirect.objects.get(pk=asked).target_id == document["id"]
        else:
            assert status == ImportOutcome.Status.IMPORTED


def test_the_shared_folder_has_the_documents_it_promises() -> None:
    files = {path.name for path in document_files()}
    assert {"Q42.json", "Q2112.json", "P279.json", "L525.json", "Q32063953.json"} <= files


def test_a_missing_entry_of_a_real_response_is_missing(wikidata: StandInWikidata) -> None:
    response = load(SHARED / "wbgetentities_Q6-Q42-P31.json")
    assert "missing" in response["entities"]["Q6"]
    assert WikidataImporter().import_single("Q6") == ImportOutcome.Status.MISSING
