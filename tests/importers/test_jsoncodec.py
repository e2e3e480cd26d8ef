"""The JSON codec of entity documents: orjson's speed, the standard library's reach, one error type."""

from __future__ import annotations

import math

import pytest

from importers.jsoncodec import dumps, loads


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"id": "Q1022"}', {"id": "Q1022"}),
        (b'\xef\xbb\xbf{"id": "Q1022"}', {"id": "Q1022"}),  # a byte order mark: orjson refuses it
        ('{"label": "Stuttgart"}', {"label": "Stuttgart"}),
    ],
    ids=["bytes", "a-byte-order-mark", "text"],
)
def test_json_decodes_whichever_decoder_takes_it(data: bytes | str, expected: object) -> None:
    assert loads(data) == expected


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"<html>", b'{"id": "Q1\xff"}', b"[" * 100_000 + b"]" * 100_000],
    ids=["empty", "truncated", "html", "not-utf-8", "nested-too-deep"],
)
def test_anything_that_is_not_json_raises_value_error_and_nothing_else(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the type is the contract: callers catch only this
        loads(data)


def test_nan_decodes_for_the_document_check_to_refuse_it_alone() -> None:
    assert math.isnan(loads(b'{"amount": NaN}')["amount"])


def test_an_integer_beyond_64_bits_is_encoded_exactly() -> None:
    assert dumps({"n": 2**70}) == b'{"n": 1180591620717411303424}'
