"""The lines of a Wikidata JSON dump: what is read without parsing them, the filters, and the dump's quirks.

A dump is one JSON array with one entity a line: ``[``, then ``{...},`` lines, the last without
its comma, then ``]``. Today each line starts ``{"type":"item","id":"Q42",`` (a property's
``{"type":"property","datatype":"string","id":"P31",``) and ends with the page's fields, which
Wikibase's dump writer appends after the entity's content:
``"pageid":123,"ns":0,"title":"Q42","lastrevid":2548173641,"modified":"2026-09-21T16:13:48Z"}``
(earlier dumps ended ``"lastrevid":123}``). The id, type and revision of such lines are read with
two anchored regular expressions, so that a line the filters or the stored revisions leave out
is never parsed. A line of another shape (the 2015 dumps, the API's key order) is parsed whole;
what decides is always the parsed document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..entity_ids import ENTITY_ID, ENTITY_ID_PATTERN

__all__ = ("Filters", "Head", "entity_text", "head_of", "main_values", "with_maps_as_objects")

# The first keys of a line of today's dumps (a property's datatype between them). Anchored
# at the line's first byte, they are the top-level object's own keys: a value nested deeper
# cannot come first.
HEAD = re.compile(
    rb'\{"type":"([a-z]{1,32})",(?:"datatype":"[A-Za-z-]{1,64}",)?"id":"('
    + ENTITY_ID_PATTERN.encode()
    + rb')"'
)
# A line's end since 2016: ``"lastrevid":N}``, or today ``"lastrevid":N,"modified":"<time>"}``.
# Between the revision and the line's last brace, which closes the top-level object, stands no
# brace and no quote but the key's and the time's own: this ``lastrevid`` is the top-level key
# (within a string, each of those quotes would be escaped, and the pattern would not match).
TAIL = re.compile(
    rb'"lastrevid":([1-9][0-9]{0,18})(?:,"modified":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")?\}\Z'
)
TAIL_WINDOW = 80
# Keys whose value is a map (a JSON object) in the items and properties the API sends. The dumps
# write an empty one as [] (PHP's json_encode of an empty array), the API as {} (Wikibase
# serializes maps as objects for it): the dump's is turned into the API's, so that both store
# equal documents. Lexemes are left as they are: the Lexeme extension serializes them alike for
# both, and its API answers hold [] too (the forms' "claims" of L3354 and L3872 in ../shared).
MAP_KEYS = frozenset({"labels", "descriptions", "aliases", "claims", "sitelinks", "qualifiers", "snaks"})
QUIRKY_TYPES = ("item", "property")
TOP_LEVEL_MARKS = tuple(
    (key, b'"' + key.encode() + b'":[]')
    for key in ("labels", "descriptions", "aliases", "claims", "sitelinks")
)
OBJECT_MARKS = {key: b'"' + key.encode() + b'":{}' for key, _ in TOP_LEVEL_MARKS}
QUALIFIERS_MARK, SNAKS_MARK = b'"qualifiers":[]', b'"snaks":[]'
# The entity type an entity-id value names, before its numeric id (dumps before 2016 had no "id").
ID_PREFIXES = {"item": "Q", "property": "P", "lexeme": "L"}
# Documents nest about 15 levels; the quirk's walk stops well past that (check() refuses deeper).
MAX_WALK_DEPTH = 64
STRUCTURAL = (b"", b"[", b"]")
# A value of a --where condition is looked for in the raw line only when it is written the same
# in every JSON encoder: ASCII letters, digits and a few marks (no slash, which PHP escapes).
PLAIN_VALUE = re.compile(r"[A-Za-z0-9 _.:+-]{1,200}")


@dataclass(frozen=True)
class Head:
    """What was read of a line without parsing it: its type, id and revision (None: not read)."""

    entity_type: str | None
    entity_id: str | None
    lastrevid: int | None


def entity_text(line: bytes) -> bytes | None:
    """Return the entity's JSON text of a dump line, comma and line end cut; None for ``[``, ``]``, blank."""
    text = line.rstrip()
    if text.endswith(b","):
        text = text[:-1].rstrip()
    return None if text in STRUCTURAL else text


def head_of(text: bytes) -> Head:
    """Read the type, id and revision of an entity's text where they stand where the dumps put them."""
    found = HEAD.match(text)
    tail = TAIL.search(text, max(0, len(text) - TAIL_WINDOW))
    revision = int(tail.group(1)) if tail is not None else None
    if found is None:
        return Head(None, None, revision)
    return Head(found.group(1).decode(), found.group(2).decode(), revision)


def with_maps_as_objects(document: dict[str, Any], text: bytes) -> bytes | None:
    """Make each empty map of ``document`` that the dump wrote as ``[]`` a ``{}``, as the API sends it.

    ``document`` is changed in place; ``text`` is the line it was parsed from. Returns the JSON
    text of the document as changed where it is had without encoding the document again: the
    line itself, or the line with its top-level ``"labels":[]`` and the like turned into
    ``"labels":{}`` (each found once, so surely that key's); else None.

    Only the keys of ``MAP_KEYS`` are turned, at any depth (a statement's qualifiers, a
    reference's snaks), and only an empty list: ``"badges": []`` stays a list. Lexemes are left
    alone (see ``MAP_KEYS``).
    """
    if document.get("type") not in QUIRKY_TYPES or b'":[]' not in text:
        return text
    # Most are the top-level maps of an entity without labels, aliases or sitelinks, turned here
    # without a walk; deeper, an item or a property has maps only in its statements.
    turned: bytes | None = text
    for key, mark in TOP_LEVEL_MARKS:
        value = document.get(key)
        if type(value) is list and not value:
            document[key] = {}
            if turned is not None:
                turned = turned.replace(mark, OBJECT_MARKS[key]) if turned.count(mark) == 1 else None
    if QUALIFIERS_MARK not in text and SNAKS_MARK not in text:
        return turned
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        container, depth = stack.pop()
        if depth >= MAX_WALK_DEPTH:
            continue
        if type(container) is dict:
            for key, value in container.items():
                if type(value) is list and not value and key in MAP_KEYS:
                    container[key] = {}
                elif type(value) is dict or type(value) is list:
                    stack.append((value, depth + 1))
        else:
            stack.extend(
                (value, depth + 1) for value in container if type(value) is dict or type(value) is list
            )
    return None


def main_values(statements: Any) -> Iterator[str]:
    """Yield the main value of each statement of one property: an entity id, a string, an amount, a time.

    A statement without a value (``somevalue``, ``novalue``) yields nothing; a monolingual text
    yields its text.
    """
    if type(statements) is not list:
        return
    for statement in statements:
        snak = statement.get("mainsnak") if type(statement) is dict else None
        if type(snak) is not dict or snak.get("snaktype") != "value":
            continue
        datavalue = snak.get("datavalue")
        value = datavalue.get("value") if type(datavalue) is dict else None
        if type(value) is str:
            yield value
        elif type(value) is dict:
            yield from _value_texts(value)


def _value_texts(value: dict[str, Any]) -> Iterator[str]:
    if type(value.get("id")) is str:
        yield value["id"]
    elif type(value.get("numeric-id")) is int and value.get("entity-type") in ID_PREFIXES:
        yield f"{ID_PREFIXES[value['entity-type']]}{value['numeric-id']}"
    for key in ("amount", "time", "text"):
        if type(value.get(key)) is str:
            yield value[key]


@dataclass(frozen=True)
class Filters:
    """Which entities of a dump to import: of these types, with these claims, with these ids.

    ``where`` maps a property to the values any of its statements' main value must have (OR
    within a property, AND across properties). Empty means no condition.
    """

    types: frozenset[str] = frozenset()
    where: Mapping[str, frozenset[str]] = field(default_factory=dict)
    ids: frozenset[str] | None = None

    def passes_head(self, head: Head) -> bool:
        """Whether an entity with this head may match; False only when it surely does not."""
        if self.types and head.entity_type is not None and head.entity_type not in self.types:
            return False
        return not (self.ids is not None and head.entity_id is not None and head.entity_id not in self.ids)

    def passes_text(self, text: bytes) -> bool:
        """Whether an entity's raw text may match the ``where`` conditions; False when it surely does not.

        A property with statements is a key followed by a list, ``"P31":[``; an entity-id value
        has its numeric id after ``"numeric-id":``, and a plain string value stands in quotes.
        """
        for prop, values in self.where.items():
            if b'"' + prop.encode() + b'":[' not in text:
                return False
            needles = [_needle(value) for value in values]
            if None not in needles and not any(needle in text for needle in needles if needle is not None):
                return False
        return True

    def matches(self, document: Mapping[str, Any]) -> bool:
        """Whether a parsed document passes every filter."""
        if self.types and document.get("type") not in self.types:
            return False
        if self.ids is not None and document.get("id") not in self.ids:
            return False
        if not self.where:
            return True
        claims = document.get("claims")
        if type(claims) is not dict:
            return False
        return all(
            not values.isdisjoint(main_values(claims.get(prop))) for prop, values in self.where.items()
        )

    def describe(self) -> dict[str, Any]:
        """The filters as JSON, as a dump import keeps them (the ids file is kept by its caller)."""
        return {
            "types": sorted(self.types),
            "where": {prop: sorted(values) for prop, values in sorted(self.where.items())},
        }


def _needle(value: str) -> bytes | None:
    """The bytes a line holding ``value`` as a main value surely contains, or None if it cannot be told."""
    if ENTITY_ID.fullmatch(value):
        return b'"numeric-id":' + value[1:].encode()
    if PLAIN_VALUE.fullmatch(value):
        return b'"' + value.encode() + b'"'
    return None
