"""JSON encoding and decoding of entity documents: orjson, else the standard library."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ("dumps", "loads")


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
