"""Task arguments on the wire: basic data only, so that what arrives equals what was sent.

JSON carries None, bool, int, finite float, str, list and dict with str keys as they are.
Tuples, sets and frozensets have no JSON form, so they travel as one-key tagged objects,
``{"__tuple__": [...]}``, ``{"__set__": [...]}`` and ``{"__frozenset__": [...]}``, and are
rebuilt on the worker. Anything else (a datetime, a model instance, a float NaN, a subclass
of a basic type, a dict with a non-str key) is refused where the call is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from kombu import serialization

__all__ = ("json_round_trip", "pack", "unpack")

JSONValue = Any  # what json.loads can return

_COLLECTION_TAGS: dict[type, str] = {tuple: "__tuple__", set: "__set__", frozenset: "__frozenset__"}
_TAG_TYPES: dict[str, Callable[[list[Any]], Any]] = {tag: kind for kind, tag in _COLLECTION_TAGS.items()}
# Dicts shaped like a tag, or like kombu's own typed values, would come back as something else.
_RESERVED_KEY_SETS = [{tag} for tag in _TAG_TYPES] + [{"__type__", "__value__"}]


def pack(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[JSONValue], dict[str, JSONValue]]:
    """Return ``args`` and ``kwargs`` in their JSON form.

    Raises:
        TypeError: a value cannot make the trip unchanged; names its path, e.g. ``kwargs['ids'][3]``.
    """
    packed_args = [_pack(value, f"args[{index}]") for index, value in enumerate(args)]
    packed_kwargs = {name: _pack(value, f"kwargs[{name!r}]") for name, value in kwargs.items()}
    return packed_args, packed_kwargs


def unpack(args: list[JSONValue], kwargs: dict[str, JSONValue]) -> tuple[list[Any], dict[str, Any]]:
    """Return the arguments ``pack`` was given, rebuilt from their JSON form.

    Raises:
        TypeError: the JSON holds a tagged value that cannot be rebuilt (a forged message).
    """
    return [_unpack(value) for value in args], {name: _unpack(value) for name, value in kwargs.items()}


def json_round_trip(message: Any) -> Any:
    """Return ``message`` as a worker receives it: through kombu's JSON serializer and back."""
    content_type, encoding, data = serialization.dumps(message, serializer="json")
    return serialization.loads(data, content_type, encoding, accept=[content_type])


def _pack(value: Any, path: str) -> JSONValue:
    kind = type(value)  # exact types: a subclass (an enum, a lazy string) would arrive as its base
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        if not math.isfinite(value):
            raise TypeError(f"{path} is {value!r}: JSON has no NaN or infinity")
        return value
    if kind is list:
        return [_pack(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if kind is tuple:
        return {"__tuple__": [_pack(item, f"{path}[{index}]") for index, item in enumerate(value)]}
    if kind in (set, frozenset):
        items = [_pack(item, f"{path} (an element)") for item in value]
        return {_COLLECTION_TAGS[kind]: items}
    if kind is dict:
        return _pack_dict(value, path)
    raise TypeError(
        f"{path} is a {kind.__module__}.{kind.__qualname__}, which cannot travel in a task "
        "message: send basic data (str, int, float, bool, None, list, tuple, set, dict) instead"
    )


def _pack_dict(value: dict[Any, Any], path: str) -> dict[str, JSONValue]:
    for key in value:
        if type(key) is not str:
            raise TypeError(f"{path} has the key {key!r}: dict keys must be str to travel as JSON")
    if set(value) in _RESERVED_KEY_SETS:
        raise TypeError(f"{path} has the keys {sorted(value)}, which are reserved for tagged values")
    return {key: _pack(item, f"{path}[{key!r}]") for key, item in value.items()}


def _unpack(value: JSONValue) -> Any:
    if isinstance(value, list):
        return [_unpack(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, items),) = value.items()
            rebuild = _TAG_TYPES.get(tag)
            if rebuild is not None:
                if not isinstance(items, list):
                    raise TypeError(f"{tag} must hold a list, not {type(items).__name__}")
                return rebuild([_unpack(item) for item in items])
        return {key: _unpack(item) for key, item in value.items()}
    return value
