"""Arguments on the wire: what arrives equals what was sent, type included, or it is refused."""

from __future__ import annotations

import datetime
import decimal
import enum
import math
from typing import Any

import pytest

from core.arguments import json_round_trip, pack, unpack

SAMPLES: list[Any] = [
    None,
    True,
    0,
    -(2**70),
    1.5,
    -0.0,
    1e308,
    "",
    "Stuttgart \u00e9\U0001f600 \ud800",  # a lone surrogate survives too
    [1, "a", [None]],
    {"ids": ["Q1", "Q2"], "nested": {"deep": [1, 2.5]}},
    (1, "a", (2, None)),
    (),
    {1, 2, 3},
    {"Q1", ("tuple", 1)},
    frozenset({1, frozenset({2})}),
    set(),
    {"__set__": [1], "other": 2},  # only the exact tag shapes are reserved
]


def same(left: Any, right: Any) -> bool:
    """Equal, and of the same type all the way down."""
    if type(left) is not type(right):
        return False
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, float):
        return math.copysign(1, left) == math.copysign(1, right) and left == right
    return bool(left == right)


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_basic_data_makes_the_round_trip_unchanged(value: Any) -> None:
    args, kwargs = pack((value,), {"value": value})
    wire_args, wire_kwargs = json_round_trip([args, kwargs])
    got_args, got_kwargs = unpack(wire_args, wire_kwargs)
    assert same(got_args[0], value)
    assert same(got_kwargs["value"], value)


class Colour(enum.IntEnum):
    RED = 1


class Label(str):
    pass


@pytest.mark.parametrize(
    ("value", "path", "reason"),
    [
        (datetime.datetime(2024, 1, 1), "kwargs['value']", "datetime.datetime"),
        (datetime.date(2024, 1, 1), "kwargs['value']", "datetime.date"),
        (decimal.Decimal("1.5"), "kwargs['value']", "decimal.Decimal"),
        (b"bytes", "kwargs['value']", "builtins.bytes"),
        (float("nan"), "kwargs['value']", "JSON has no NaN"),
        (float("inf"), "kwargs['value']", "JSON has no NaN or infinity"),
        (Colour.RED, "kwargs['value']", "Colour"),
        (Label("x"), "kwargs['value']", "Label"),
        ({1: "a"}, "kwargs['value']", "dict keys must be str"),
        ({"ids": ["Q1", "Q2", "Q3", datetime.time()]}, "kwargs['value']['ids'][3]", "datetime.time"),
        ([{"a": (1, {2: 3})}], "kwargs['value'][0]['a'][1]", "key 2"),
        ({"__tuple__": [1]}, "kwargs['value']", "reserved"),
        ({"__type__": "datetime", "__value__": "2024-01-01"}, "kwargs['value']", "reserved"),
        ({1.5, float("nan")}, "kwargs['value'] (an element)", "NaN"),
        (object(), "kwargs['value']", "builtins.object"),
    ],
)
def test_values_that_would_not_arrive_unchanged_are_refused_with_their_path(
    value: Any, path: str, reason: str
) -> None:
    with pytest.raises(TypeError) as caught:
        pack((), {"value": value})
    assert str(caught.value).startswith(path + " ")
    assert reason in str(caught.value)


def test_positional_paths_are_named_by_index() -> None:
    with pytest.raises(TypeError, match=r"^args\[1\]\[0\] is a datetime.datetime"):
        pack(("fine", [datetime.datetime.now()]), {})


def test_a_forged_tag_that_cannot_be_rebuilt_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unhashable"):
        unpack([{"__set__": [[1]]}], {})
    with pytest.raises(TypeError, match="must hold a list"):
        unpack([{"__tuple__": "abc"}], {})
