"""Entity documents written for the tests, shaped like Wikidata's (see ../shared/wikidata for real ones)."""

from __future__ import annotations

from typing import Any


def texts(**by_language: str) -> dict[str, dict[str, str]]:
    return {language: {"language": language, "value": value} for language, value in by_language.items()}


def item(
    entity_id: str,
    label: str | None = None,
    description: str = "",
    lastrevid: int = 100,
    entity_type: str = "item",
    labels: dict[str, dict[str, str]] | None = None,
    claims: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "pageid": int(entity_id[1:]) + 1000,
        "ns": 0 if entity_type == "item" else 120,
        "title": entity_id if entity_type == "item" else f"Property:{entity_id}",
        "lastrevid": lastrevid,
        "modified": "2024-05-01T12:30:00Z",
        "type": entity_type,
        "id": entity_id,
        "labels": labels if labels is not None else texts(en=label or entity_id, de=f"{label} (de)"),
        "descriptions": texts(en=description) if description else {},
        "aliases": {},
        "claims": claims or {},
        "sitelinks": {},
    }


STUTTGART = item("Q1022", "Stuttgart", "capital of Baden-Württemberg, Germany", lastrevid=2000000001)
HUMAN = item("Q7259", "Ada Lovelace", "English mathematician", lastrevid=2000000002)
PROPERTY = item(
    "P31", "instance of", "that class of which this subject is a particular example", entity_type="property"
)
GERMAN_ONLY = item("Q1731", labels=texts(de="Dresden"), description="")
LEXEME = {
    "pageid": 54387043,
    "ns": 146,
    "title": "Lexeme:L7",
    "lastrevid": 1234,
    "modified": "2023-01-01T00:00:00Z",
    "type": "lexeme",
    "id": "L7",
    "lemmas": texts(en="cat"),
    "lexicalCategory": "Q1084",
    "language": "Q1860",
    "claims": {},
    "forms": [],
    "senses": [],
}


def _claim(prop: str, datatype: str, value: dict[str, Any], number: int) -> dict[str, Any]:
    return {
        "mainsnak": {
            "snaktype": "value",
            "property": prop,
            "datavalue": {"value": value, "type": datatype},
            "datatype": datatype,
        },
        "type": "statement",
        "id": f"Q2090${number}",
        "rank": "normal",
    }


JULIAN_DATE = {
    "time": "+1214-00-00T00:00:00Z",
    "timezone": 0,
    "before": 0,
    "after": 0,
    "precision": 9,
    "calendarmodel": "http://www.wikidata.org/entity/Q1985786",
}
POPULATION = {"amount": "+626275", "unit": "1"}

# Claims the wikidata package cannot decode: a Julian-calendar date and a quantity.
UNDECODABLE = item(
    "Q2090",
    "Nuremberg",
    "city in Bavaria",
    claims={
        "P571": [_claim("P571", "time", JULIAN_DATE, 1)],
        "P1082": [_claim("P1082", "quantity", POPULATION, 2)],
    },
)
