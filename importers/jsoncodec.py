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
    """Decode JSON with orjson, or the standard library where orjson cannot (huge ints)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
