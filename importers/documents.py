"""Entity documents as fetched, what the importer reads out of one, and whether it can be stored as sent."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

__all__ = ("Batch", "Fetched", "Summary", "UnusableDocument", "check", "summarize")

# Wikidata's language-neutral labels ("mul"), then English, before any other language.
FALLBACK_LANGUAGES = ("mul", "en")
# Revision ids are positive; the lastrevid column is a PostgreSQL bigint.
MAX_REVISION = 2**63 - 1
# The width of WikidataEntity.entity_type: PostgreSQL refuses a longer value, SQLite would keep it.
MAX_TYPE_LENGTH = 32
# Wikidata's documents nest about 15 levels at most (a lexeme, its forms, a form, its claims, a
# statement, its references, a reference, its snaks, a snak, its value...); far deeper is no
# entity, and would reach the recursion limits of JSON encoders (orjson stops at 255 levels).
MAX_DEPTH = 64
# PostgreSQL's text and jsonb cannot hold NUL; a lone surrogate is no Unicode text (UTF-8 cannot
# encode it). The standard library's JSON decoder, which the wikidata package uses, accepts both.
UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


class UnusableDocument(ValueError):
    """An entity document that cannot be stored as it was sent; the message says where and why."""


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
    ``missing`` the ids Wikidata does not have; ``absent`` the ids the response left out;
    ``failed`` the ids whose entry cannot be stored, with the reason.
    """

    documents: dict[str, Mapping[str, Any]]
    missing: list[str]
    absent: list[str]
    attempts: int
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Summary:
    entity_type: str
    label: str
    description: str
    lastrevid: int | None
    modified: datetime | None


def summarize(document: Mapping[str, Any], language: str) -> Summary:
    """Return the fields the database keeps beside the whole document.

    A lexeme has lemmas instead of labels, and no description. A document without a
    ``lastrevid`` or ``modified`` (a dump's) has None for them.

    Raises:
        UnusableDocument: ``lastrevid`` or ``modified`` is there but out of range, or not what
            Wikidata writes (see ``check``).
    """
    names = document.get("labels") or document.get("lemmas") or {}
    return Summary(
        entity_type=str(document.get("type", "")),
        label=_in_language(names, language),
        description=_in_language(document.get("descriptions") or {}, language),
        lastrevid=_revision(document),
        modified=_modified(document),
    )


def check(document: Mapping[str, Any]) -> None:
    """Check that ``document`` can be stored as it was sent, on PostgreSQL and SQLite alike.

    Raises:
        UnusableDocument: it holds a number that is not finite (NaN, Infinity), a NUL character
            or a lone surrogate, or nests deeper than ``MAX_DEPTH``; its ``type`` is longer than
            ``MAX_TYPE_LENGTH``; its ``lastrevid`` is not a revision id (a positive integer below
            2**63); its ``modified`` is not a date and time that can be stored.
    """
    _check_values(document)
    entity_type = document.get("type")
    if not isinstance(entity_type, str) or len(entity_type) > MAX_TYPE_LENGTH:
        raise UnusableDocument(
            f"type is {entity_type!r:.40}, not a type of at most {MAX_TYPE_LENGTH} characters"
        )
    _revision(document)
    _modified(document)


def _check_values(document: Mapping[str, Any]) -> None:
    """Walk the whole document, without recursion (it may nest deep), for what cannot be stored.

    A fast walk over every value; only when it finds something, a slower one that says where.
    """
    if not _all_storable(document):
        _locate_unstorable(document)
        raise AssertionError("unreachable: both walks test the same")  # pragma: no cover


def _all_storable(document: Mapping[str, Any]) -> bool:
    """Whether every value can be stored; the fast walk, run over every value of every document."""
    search, isfinite = UNSTORABLE_CHARACTER.search, math.isfinite
    stack: list[tuple[Any, int]] = [(document, 0)]
    push, pop = stack.append, stack.pop
    while stack:
        container, depth = pop()
        if depth >= MAX_DEPTH:
            return False
        items = enumerate(container) if type(container) is list else container.items()
        for key, value in items:
            if type(key) is str and search(key):
                return False
            kind = type(value)
            if kind is str:
                if search(value):
                    return False
            elif kind is dict or kind is list:
                push((value, depth + 1))
            elif kind is float and not isfinite(value):
                return False
    return True


def _locate_unstorable(document: Mapping[str, Any]) -> None:
    """Raise UnusableDocument naming the first value that cannot be stored, and where it is."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        container, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            raise UnusableDocument(f"{_path(path)} nests deeper than {MAX_DEPTH} levels")
        items = enumerate(container) if type(container) is list else container.items()
        for key, value in items:
            if type(key) is str and UNSTORABLE_CHARACTER.search(key):
                raise UnusableDocument(f"a key in {_path(path)} {_character(key)}")
            if type(value) is str and UNSTORABLE_CHARACTER.search(value):
                raise UnusableDocument(f"{_path((*path, key))} {_character(value)}")
            if type(value) is dict or type(value) is list:
                stack.append((value, (*path, key)))
            if type(value) is float and not math.isfinite(value):
                raise UnusableDocument(f"{_path((*path, key))} is {value}, not a finite number")


def _character(text: str) -> str:
    found = UNSTORABLE_CHARACTER.search(text)
    if found is not None and found.group() == "\x00":
        return "holds a NUL character, which PostgreSQL cannot store"
    return "holds a lone surrogate, which is not Unicode text"


def _path(path: tuple[str | int, ...]) -> str:
    """``claims.P31[0].mainsnak`` for ``("claims", "P31", 0, "mainsnak")``, odd keys quoted and cut short."""
    return "".join(_segment(key) for key in path).removeprefix(".")[:300] or "the document"


def _segment(key: str | int) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    plain = key.isprintable() and len(key) <= 40 and "." not in key and "[" not in key
    return f".{key}" if plain else f".{key!r:.40}"


def _revision(document: Mapping[str, Any]) -> int | None:
    lastrevid = document.get("lastrevid")
    if lastrevid is None:
        return None
    if type(lastrevid) is not int or not 0 < lastrevid <= MAX_REVISION:
        raise UnusableDocument(
            f"lastrevid is {lastrevid!r:.40}, not a revision id (a positive integer below 2**63)"
        )
    return lastrevid


def _modified(document: Mapping[str, Any]) -> datetime | None:
    modified = document.get("modified")
    if modified is None:
        return None
    problem = f"modified is {modified!r:.60}, not a date and time that can be stored"
    if not isinstance(modified, str):
        raise UnusableDocument(problem)
    try:
        moment = parse_datetime(modified)
        if moment is None:
            raise UnusableDocument(problem)
        # Wikidata writes UTC ("Z"); a time without a zone is taken as UTC too. Converting it is
        # what storing does, and a time near the ends of the calendar may not survive it.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise UnusableDocument(problem) from None


def _in_language(texts: Mapping[str, Any], language: str) -> str:
    """The text in ``language``, else in a fallback language, else in any language, else ''."""
    if not isinstance(texts, Mapping):
        return ""
    # The languages asked first, and sorted only when none has a text: an item may have hundreds.
    for codes in ((language, *FALLBACK_LANGUAGES), sorted(texts)):
        for code in codes:
            entry = texts.get(code)
            if isinstance(entry, Mapping) and isinstance(entry.get("value"), str):
                return str(entry["value"])
    return ""
