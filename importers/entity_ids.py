"""Wikidata entity ids: validation, and reading them from command-line arguments or a file."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ("InvalidEntityId", "SourcedId", "normalize", "read_ids")

# Items (Q), properties (P) and lexemes (L): what Special:EntityData serves for an import.
ENTITY_ID = re.compile(r"[QPL][1-9][0-9]{0,11}")


class InvalidEntityId(ValueError):
    """Not a Wikidata entity id."""


@dataclass(frozen=True)
class SourcedId:
    """A raw id and where it came from, e.g. ``line 12`` of a file."""

    raw: str
    origin: str


def normalize(raw: str) -> str:
    """Return the canonical form of an entity id: ``q1022`` becomes ``Q1022``.

    Raises:
        InvalidEntityId: ``raw`` is not an item, property or lexeme id.
    """
    candidate = raw.strip().upper()
    if not ENTITY_ID.fullmatch(candidate):
        raise InvalidEntityId(f"{raw!r} is not a Wikidata id (Q, P or L and a number, e.g. Q1022)")
    return candidate


def read_ids(lines: Iterable[str], origin: str = "line") -> Iterator[SourcedId]:
    """Yield the ids in ``lines``, one a line, skipping blank lines and ``#`` comments.

    Streams: a file of a million ids is never held in memory.
    """
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            yield SourcedId(text, f"{origin} {number}")
