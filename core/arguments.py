"""Task arguments on the wire: basic data only, so that what arrives equals what was sent.

JSON carries None, bool, int, finite float, str, list and dict with str keys as they are.
Tuples, sets and frozensets have no JSON form, so they travel as one-key tagged objects,
``{"__tuple__": [...]}``, ``{"__set__": [...]}`` and ``{"__frozenset__": [...]}``, and are
rebuilt on the worker. Anything else (a datetime, a model instance, a float NaN, a subclass
of a basic type, a dict with a non-str key) is refused where the call is made, and so are
arguments nested deeper than ``IMPORTER_MAX_ARGUMENT_DEPTH`` or larger, as JSON, than a message
may be (``IMPORTER_MAX_MESSAGE_BYTES``, less the room the rest of the message takes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from kombu import serialization

from .bounds import ENVELOPE_BYTES, max_argument_depth, max_message_bytes

__all__ = ("json_round_trip", "pack", "unpack")

JSONValue = Any  # what json.loads can return

_COLLECTION_TAGS: dict[type, str] = {tuple: "__tuple__", set: "__set__", frozenset: "__frozenset__"}
_TAG_TYPES: dict[str, Callable[[list[Any]], Any]] = {tag: kind for kind, tag in _COLLECTION_TAGS.items()}
_CONTAINERS = frozenset({list, tuple, dict, *_COLLECTION_TAGS})
# Dicts shaped like a tag, or like kombu's own typed values, would come back as something else.
_RESERVED_KEY_SETS = [{tag} for tag in _TAG_TYPES] + [{"__type__", "__value__"}]


def pack(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[JSONValue], dict[str, JSONValue]]:
    """Return ``args`` and ``kwargs`` in their JSON form.

    Raises:
        TypeError: a value cannot make the trip unchanged, nests deeper than
            ``IMPORTER_MAX_ARGUMENT_DEPTH``, or makes the message too large; names its path,
            e.g. ``kwargs['ids'][3]``.
    """
    depth = max_argument_depth()
    packed_args = [_pack(value, f"args[{index}]", depth) for index, value in enumerate(args)]
    packed_kwargs = {name: _pack(value, f"kwargs[{name!r}]", depth) for name, value in kwargs.items()}
    _check_size(packed_args, packed_kwargs)
    return packed_args, packed_kwargs


def unpack(args: list[JSONValue], kwargs: dict[str, JSONValue]) -> tuple[list[Any], dict[str, Any]]:
    """Return the arguments ``pack`` was given, rebuilt from their JSON form.

    Raises:
        TypeError: the JSON holds a tagged value that cannot be rebuilt, or nests deeper than
            ``IMPORTER_MAX_ARGUMENT_DEPTH`` (a forged message); names the path.
    """
    depth = max_argument_depth()
    return (
        [_unpack(value, f"args[{index}]", depth) for index, value in enumerate(args)],
        {name: _unpack(value, f"kwargs[{name!r}]", depth) for name, value in kwargs.items()},
    )


def json_round_trip(message: Any) -> Any:
    """Return ``message`` as a worker receives it: through kombu's JSON serializer and back."""
    content_type, encoding, data = serialization.dumps(message, serializer="json")
    return serialization.loads(data, content_type, encoding, accept=[content_type])


def _pack(value: Any, path: str, depth: int) -> JSONValue:
    """``depth`` is how many more levels of containers ``value`` may hold, itself included."""
    kind = type(value)  # exact types: a subclass (an enum, a lazy string) would arrive as its base
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        if not math.isfinite(value):
            raise TypeError(f"{path} is {value!r}: JSON has no NaN or infinity")
        return value
    if kind not in _CONTAINERS:
        raise TypeError(
            f"{path} is a {kind.__module__}.{kind.__qualname__}, which cannot travel in a task "
            "message: send basic data (str, int, float, bool, None, list, tuple, set, dict) instead"
        )
    if depth <= 0:
        raise TypeError(_too_deep(path))
    depth -= 1
    if kind is list:
        return [_pack(item, f"{path}[{index}]", depth) for index, item in enumerate(value)]
    if kind is tuple:
        return {"__tuple__": [_pack(item, f"{path}[{index}]", depth) for index, item in enumerate(value)]}
    if kind is dict:
        return _pack_dict(value, path, depth)
    items = [_pack(item, f"{path} (an element)", depth) for item in value]  # a set or frozenset
    return {_COLLECTION_TAGS[kind]: items}


def _pack_dict(value: dict[Any, Any], path: str, depth: int) -> dict[str, JSONValue]:
    for key in value:
        if type(key) is not str:
            raise TypeError(f"{path} has the key {key!r}: dict keys must be str to travel as JSON")
    if set(value) in _RESERVED_KEY_SETS:
        raise TypeError(f"{path} has the keys {sorted(value)}, which are reserved for tagged values")
    return {key: _pack(item, f"{path}[{key!r}]", depth) for key, item in value.items()}


def _too_deep(path: str) -> str:
    return (
        f"{path} nests deeper than {max_argument_depth()} levels (IMPORTER_MAX_ARGUMENT_DEPTH): "
        "send flatter data"
    )


def _check_size(args: list[JSONValue], kwargs: dict[str, JSONValue]) -> None:
    """Raise ``TypeError`` naming the largest argument when the arguments, as JSON, are too large."""
    room = max_message_bytes() - ENVELOPE_BYTES
    # As kombu encodes basic data (escaping non-ASCII): one character is one byte on the wire.
    size = len(json.dumps([args, kwargs]))
    if size <= room:
        return
    sizes = {f"args[{index}]": len(json.dumps(value)) for index, value in enumerate(args)}
    sizes |= {f"kwargs[{name!r}]": len(json.dumps(value)) for name, value in kwargs.items()}
    largest = max(sizes, key=sizes.__getitem__)
    raise TypeError(
        f"{largest} takes {sizes[largest]:,} bytes as JSON, and the arguments {size:,}: a task "
        f"message carries at most {room:,} (IMPORTER_MAX_MESSAGE_BYTES less {ENVELOPE_BYTES:,} for "
        "the rest of the message); send the data in several calls, or store it and send its key"
    )


def _unpack(value: JSONValue, path: str, depth: int) -> Any:
    # Counted as pack counts: a tagged collection is one level, as the collection it stands for.
    if not isinstance(value, (list, dict)):
        return value
    if depth <= 0:
        raise TypeError(_too_deep(path))
    depth -= 1
    if isinstance(value, list):
        return [_unpack(item, f"{path}[{index}]", depth) for index, item in enumerate(value)]
    if len(value) == 1:
        ((tag, items),) = value.items()
        rebuild = _TAG_TYPES.get(tag)
        if rebuild is not None:
            if not isinstance(items, list):
                raise TypeError(f"{path}: {tag} must hold a list, not {type(items).__name__}")
            return rebuild([_unpack(item, f"{path}[{index}]", depth) for index, item in enumerate(items)])
    return {key: _unpack(item, f"{path}[{key!r}]", depth) for key, item in value.items()}
