"""Entity documents as fetched, and what the importer reads out of one: type, label, revision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

__all__ = ("Batch", "Fetched", "Summary", "summarize")

# Wikidata's language-neutral labels ("mul"), then English, before any other language.
FALLBACK_LANGUAGES = ("mul", "en")


@dataclass(frozen=True)
class Fetched:
    """An entity document, and the id it is stored under (the target's, for a redirect)."""

    entity_id: str
    document: Mapping[str, Any]
    attempts: int


@dataclass(frozen=True)
class Batch:
    """What one wbgetentities request gave, by the id asked for.

    ``documents`` holds each found entity's document (the target's, for a redirect);
    ``missing`` the ids Wikidata does not have; ``absent`` the ids the response left out.
    """

    documents: dict[str, Mapping[str, Any]]
    missing: list[str]
    absent: list[str]
    attempts: int


@dataclass(frozen=True)
class Summary:
    entity_type: str
    label: str
    description: str
    lastrevid: int | None
    modified: datetime | None


def summarize(document: Mapping[str, Any], language: str) -> Summary:
    """Return the fields the database keeps beside the whole document.

    A lexeme has lemmas instead of labels, and no description.
    """
    names = document.get("labels") or document.get("lemmas") or {}
    lastrevid = document.get("lastrevid")
    modified = document.get("modified")
    return Summary(
        entity_type=str(document.get("type", "")),
        label=_in_language(names, language),
        description=_in_language(document.get("descriptions") or {}, language),
        lastrevid=lastrevid if isinstance(lastrevid, int) else None,
        modified=parse_datetime(modified) if isinstance(modified, str) else None,
    )


def _in_language(texts: Mapping[str, Any], language: str) -> str:
    """The text in ``language``, else in a fallback language, else in any language, else ''."""
    if not isinstance(texts, Mapping):
        return ""
    for code in (language, *FALLBACK_LANGUAGES, *sorted(texts)):
        entry = texts.get(code)
        if isinstance(entry, Mapping) and isinstance(entry.get("value"), str):
            return str(entry["value"])
    return ""
