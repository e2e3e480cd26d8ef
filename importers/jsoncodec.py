"""JSON encoding and decoding of entity documents: orjson, else the standard library."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ("TooManyValues", "check_values", "dumps", "loads")


class TooManyValues(ValueError):
    """A JSON text holds more values than a decoded document may have (see ``check_values``)."""


def check_values(data: bytes, limit: int) -> None:
    """Refuse ``data`` when it may hold more than ``limit`` JSON values, before it is decoded.

    Bytes alone do not bound memory: 16 MiB of ``[],`` decode into 5.6 million lists, close to a
    gigabyte of Python objects. Every value but a container's first is preceded by a comma, and
    every container opens with a bracket, so their count bounds the values (commas inside
    strings count too: real documents hold one value per 50 bytes or so, far from any limit).

    Raises:
        TooManyValues: the bound is over ``limit``.
    """
    values = data.count(b",") + data.count(b"[") + data.count(b"{")
    if values > limit:
        raise TooManyValues(f"it may hold {values:,} JSON values, more than the {limit:,} allowed")


def dumps(value: Any) -> bytes:
    """JSON-encode ``value`` with orjson, or the standard library where orjson cannot (huge ints)."""
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, ensure_ascii=False).encode()


def loads(data: bytes | str) -> Any:
    """Decode JSON with orjson, or the standard library where orjson cannot (a byte order mark, NaN).

    The standard library also decodes NaN, Infinity and lone surrogates, which no database
    stores as they are: each document is checked for them before it is stored
    (``importers.documents.check``), so that one such document fails alone, not its batch.

    Raises:
        ValueError: ``data`` is not JSON, or nests too deep to decode.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deep to decode") from None
