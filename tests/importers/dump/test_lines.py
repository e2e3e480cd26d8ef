"""Dump lines read without parsing them, the empty-map quirk, and the filters, against the parsed truth."""

from __future__ import annotations

import copy
import gzip
import json
from typing import Any

import orjson
import pytest

from bench.make_dump import entity_line
from importers.documents import MAX_DEPTH, UnusableDocument, check
from importers.dump.chunks import check_parsed, long_exponents, nests_within
from importers.dump.lines import Filters, Head, entity_text, head_of, main_values, with_maps_as_objects
from tests.support.shared import NEEDS_SHARED, SHARED


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"[\n", None),
        (b"]\n", None),
        (b"\n", None),
        (b"  \r\n", None),
        (b'{"id":"Q1"},\n', b'{"id":"Q1"}'),
        (b'{"id":"Q1"}\n', b'{"id":"Q1"}'),  # the last entity has no comma
        (b'{"id":"Q1"} , \r\n', b'{"id":"Q1"}'),
        (b'{"id":"Q1"}', b'{"id":"Q1"}'),  # no line end at the end of the file
    ],
)
def test_entity_text_cuts_the_comma_and_line_end_and_skips_the_brackets(
    line: bytes, text: bytes | None
) -> None:
    assert entity_text(line) == text


def test_the_head_of_a_line_ending_in_lastrevid_is_read_without_parsing() -> None:
    text = entity_line({"type": "item", "id": "Q42", "labels": {}, "lastrevid": 123})
    assert text.endswith(b'"lastrevid":123}')  # the dumps of 2016 to 2021
    assert head_of(text) == Head("item", "Q42", 123)


@NEEDS_SHARED
@pytest.mark.parametrize("name", ["Q42", "Q2112", "P279", "P8098", "L525", "L3354", "L3872"])
def test_the_head_of_todays_lines_is_read_from_their_two_ends(name: str) -> None:
    """Today's lines end with the page's fields: ``"title":"P279","lastrevid":N,"modified":"..."}``."""
    answer = json.loads((SHARED / f"{name}.json").read_text())
    document = next(iter(answer["entities"].values())) if "entities" in answer else answer
    text = entity_line(document)
    assert text.endswith(b',"modified":"' + document["modified"].encode() + b'"}')
    head = head_of(text)
    assert head == Head(document["type"], document["id"], document["lastrevid"])


MODIFIED = b'"modified":"2026-09-21T16:13:48Z"'
IN_A_STRING = json.dumps('"lastrevid":7,' + MODIFIED.decode() + "}").encode()


@pytest.mark.parametrize(
    ("text", "head"),
    [
        # 2015: the id is not the second key, and there is no lastrevid.
        (b'{"type":"item","aliases":{},"id":"Q1","claims":{}}', Head(None, None, None)),
        # A nested lastrevid is not the entity's: the line does not end with it.
        (b'{"type":"item","id":"Q1","x":{"lastrevid":5},"y":1}', Head("item", "Q1", None)),
        (b'{"type":"item","id":"Q1","lastrevid":7,"x":1}', Head("item", "Q1", None)),
        (b'{"type":"item","id":"Q1","x":{"lastrevid":5,' + MODIFIED + b"}}", Head("item", "Q1", None)),
        (b'{"type":"item","id":"Q1","lastrevid":7,' + MODIFIED + b',"x":1}', Head("item", "Q1", None)),
        (b'{"type":"item","id":"Q1","lastrevid":7,"modified":"yesterday"}', Head("item", "Q1", None)),
        # Within a string, the quotes are escaped: not the entity's revision.
        (b'{"type":"item","id":"Q1","x":' + IN_A_STRING + b"}", Head("item", "Q1", None)),
        (b'{"type":"property","datatype":"external-id","id":"P1","lastrevid":7}', Head("property", "P1", 7)),
        # Not an entity id: left to the parse, which records the line as bad.
        (b'{"type":"item","id":"Q01","lastrevid":7}', Head(None, None, 7)),
        (b'{"type":"item","id":"X1","lastrevid":7}', Head(None, None, 7)),
    ],
)
def test_a_head_is_read_only_where_the_dumps_put_it(text: bytes, head: Head) -> None:
    assert head_of(text) == head


def test_empty_maps_written_as_lists_become_objects_at_any_depth_and_lists_stay() -> None:
    document = {
        "type": "item",
        "id": "Q1",
        "labels": [],
        "aliases": [],
        "claims": {
            "P31": [{"mainsnak": {}, "qualifiers": [], "references": [{"snaks": [], "snaks-order": []}]}]
        },
        "sitelinks": {"enwiki": {"badges": []}},
    }
    text = orjson.dumps(document)
    assert with_maps_as_objects(document, text) is None  # turned in depth: to be encoded again
    assert document == {
        "type": "item",
        "id": "Q1",
        "labels": {},
        "aliases": {},
        "claims": {
            "P31": [{"mainsnak": {}, "qualifiers": {}, "references": [{"snaks": {}, "snaks-order": []}]}]
        },
        "sitelinks": {"enwiki": {"badges": []}},
    }


def test_the_top_level_maps_are_turned_in_the_text_too_where_each_is_found_once() -> None:
    document = {
        "type": "item",
        "id": "Q1",
        "labels": [],
        "aliases": [],
        "sitelinks": {"enwiki": {"badges": []}},
    }
    turned = with_maps_as_objects(document, orjson.dumps(document))
    assert (
        turned == b'{"type":"item","id":"Q1","labels":{},"aliases":{},"sitelinks":{"enwiki":{"badges":[]}}}'
    )
    assert orjson.loads(turned) == document
    # A second "labels":[] (in a value, say) could be the one the replacement turns: encoded again.
    odd = {"type": "item", "id": "Q1", "labels": [], "x": {"labels": []}}
    assert with_maps_as_objects(odd, orjson.dumps(odd)) is None
    assert odd == {"type": "item", "id": "Q1", "labels": {}, "x": {"labels": []}}


@pytest.mark.parametrize(
    "document",
    [
        {"type": "lexeme", "id": "L1", "claims": [], "forms": [{"claims": [], "representations": {}}]},
        {"type": "item", "id": "Q1", "labels": {"en": {"language": "en", "value": "x"}}, "aliases": ["x"]},
    ],
    ids=["a lexeme, whose empty maps the API sends as lists too", "a map that is not empty"],
)
def test_what_is_no_empty_map_of_an_item_or_property_is_left_as_it_is(document: dict[str, Any]) -> None:
    text = orjson.dumps(document)
    changed = copy.deepcopy(document)
    assert with_maps_as_objects(changed, text) == text
    assert changed == document


@pytest.mark.parametrize(
    "levels",
    [1, 2, MAX_DEPTH // 2, MAX_DEPTH // 2 + 1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 5],
)
@pytest.mark.parametrize("opening", ["[", "{", "mixed"])
def test_the_checks_of_a_parsed_line_agree_with_check_and_its_text_test_is_never_wrong(
    levels: int, opening: str
) -> None:
    value: Any = [] if opening == "[" else {}
    for level in range(levels - 2):
        array = opening == "[" or (opening == "mixed" and level % 2)
        value = [value] if array else {"k": value}
    document = {"type": "item", "x": value} if levels > 1 else {"type": "item"}
    text = orjson.dumps(document)
    try:
        check(document)
        passes = True
    except UnusableDocument:
        passes = False
    assert passes == (levels <= MAX_DEPTH)
    try:
        check_parsed(document, text)
        assert passes
    except UnusableDocument:
        assert not passes
    if nests_within(text, MAX_DEPTH):  # sure, then right
        assert passes
    if levels <= MAX_DEPTH // 2:  # sure within half the levels, where every real entity is
        assert nests_within(text, MAX_DEPTH)


def test_brackets_inside_strings_make_the_nesting_test_unsure_never_wrong() -> None:
    assert not nests_within(orjson.dumps({"type": "item", "format": "[0-9]{1,3"}), MAX_DEPTH)
    assert nests_within(orjson.dumps({"type": "item", "format": "[0-9]{1,3}"}), MAX_DEPTH)


def statement(value: Any, snaktype: str = "value") -> dict[str, Any]:
    snak: dict[str, Any] = {"snaktype": snaktype, "property": "P31"}
    if snaktype == "value":
        snak["datavalue"] = {"value": value, "type": "x"}
    return {"mainsnak": snak, "type": "statement", "rank": "normal"}


def test_main_values_of_every_kind_and_dump_age() -> None:
    statements = [
        statement({"entity-type": "item", "numeric-id": 5, "id": "Q5"}),
        statement({"entity-type": "item", "numeric-id": 515}),  # 2015: no "id"
        statement({"entity-type": "property", "numeric-id": 31}),
        statement("a string"),
        statement({"amount": "+12", "unit": "1"}),
        statement({"time": "+2001-01-01T00:00:00Z", "precision": 11}),
        statement({"text": "Hallo", "language": "de"}),
        statement(None, snaktype="novalue"),
        "junk",
    ]
    assert list(main_values(statements)) == [
        "Q5", "Q515", "P31", "a string", "+12", "+2001-01-01T00:00:00Z", "Hallo",
    ]  # fmt: skip
    assert list(main_values({"not": "a list"})) == []


def entity(claims: dict[str, list[Any]], entity_type: str = "item", entity_id: str = "Q1") -> dict[str, Any]:
    return {"type": entity_type, "id": entity_id, "claims": claims, "lastrevid": 1}


HUMAN = statement({"entity-type": "item", "numeric-id": 5, "id": "Q5"})
WRITER = statement({"entity-type": "item", "numeric-id": 36180, "id": "Q36180"})
HUMAN_WRITER = entity({"P31": [HUMAN], "P106": [WRITER]})
CITY = entity({"P31": [statement({"entity-type": "item", "numeric-id": 515})]}, entity_id="Q2")
PROPERTY = entity({}, entity_type="property", entity_id="P7")


@pytest.mark.parametrize(
    ("filters", "matching"),
    [
        (Filters(), {"Q1", "Q2", "P7"}),
        (Filters(types=frozenset({"item"})), {"Q1", "Q2"}),
        (Filters(types=frozenset({"property", "lexeme"})), {"P7"}),
        (Filters(where={"P31": frozenset({"Q5"})}), {"Q1"}),
        (Filters(where={"P31": frozenset({"Q5", "Q515"})}), {"Q1", "Q2"}),  # OR within a property
        (Filters(where={"P31": frozenset({"Q5"}), "P106": frozenset({"Q36180"})}), {"Q1"}),  # AND across
        (Filters(where={"P31": frozenset({"Q515"}), "P106": frozenset({"Q36180"})}), set()),
        (Filters(where={"P999": frozenset({"Q5"})}), set()),
        (Filters(ids=frozenset({"Q2", "P7"})), {"Q2", "P7"}),
        (Filters(types=frozenset({"item"}), ids=frozenset({"Q2", "P7"})), {"Q2"}),
    ],
)
def test_filters_match_as_documented_and_the_text_tests_never_drop_a_match(
    filters: Filters, matching: set[str]
) -> None:
    matched = set()
    for document in (HUMAN_WRITER, CITY, PROPERTY):
        text = entity_line(document)
        if filters.matches(document):
            matched.add(document["id"])
            assert filters.passes_head(head_of(text))
            assert filters.passes_text(text)
    assert matched == matching


@pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"{SHARED} is absent; its documents are not in the repository"
)
def test_on_real_dump_lines_the_text_tests_never_drop_an_entity_the_parsed_filter_keeps() -> None:
    with gzip.open(SHARED / "dump_sample_wdtk_20150815.json.gz", "rb") as sample:
        documents = json.load(sample)
    values = {value for document in documents for value in main_values(document.get("claims", {}).get("P31"))}
    assert len(values) > 20
    for value in values:
        filters = Filters(where={"P31": frozenset({value})})
        for document in documents:
            if filters.matches(document):
                assert filters.passes_text(orjson.dumps(document)), (value, document["id"])


@pytest.mark.parametrize(
    ("number", "stored"),
    [
        (b"1e-1000000", False),  # orjson reads 0.0; the database refuses it
        (b"-2.5E+200000", False),
        (b"3e131072", False),
        (b"1e-16383", True),  # the database's bounds
        (b"7E131071", True),
        (b'"Q5e-1000000"', True),  # in a string: no number
    ],
)
def test_a_number_whose_exponent_the_database_refuses_is_found_however_it_is_written(
    number: bytes, stored: bool
) -> None:
    text = b'{"type":"item","id":"Q1","claims":{"P1":[{"x":[0,' + number + b']}]},"lastrevid":1}'
    try:
        check_parsed({"type": "item", "id": "Q1"}, text)
        assert stored
    except UnusableDocument:
        assert not stored


@pytest.mark.parametrize(
    ("text", "exponents"),
    [
        (b'{"a":[0,1e-1000000]}', [b"-1000000"]),
        (b'{"a":-2.5E+200000,"b": [ 7E131071 ,0.5e00001]}', [b"+200000", b"131071", b"00001"]),
        (b'{"hash":"a3e45678b0e-12345","id":"Q5$855e-655584","n":1e+5}', []),  # in strings; short
        (b'{"a":"x",  "b":12e123456}', [b"123456"]),
    ],
)
def test_each_long_exponent_of_a_line_is_found_and_none_inside_a_string(
    text: bytes, exponents: list[bytes]
) -> None:
    assert sorted(long_exponents(text)) == sorted(exponents)
