"""Arguments on the wire: what arrives equals what was sent, type included, or it is refused."""

from __future__ import annotations

import datetime
import decimal
import enum
import io
import math
import os
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings as configured
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from core.arguments import json_round_trip, pack, unpack
from tests.conftest import ROOT

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


WRAP: dict[str, Any] = {
    "list": lambda inner: [inner],
    "tuple": lambda inner: (inner,),
    "dict": lambda inner: {"k": inner},
}


def nested(depth: int, kind: str = "list") -> Any:
    """A value ``depth`` containers of ``kind`` deep, with an int at the bottom."""
    value: Any = 0
    for _ in range(depth):
        value = WRAP[kind](value)
    return value


@pytest.mark.parametrize("kind", ["list", "tuple", "dict"])
def test_an_argument_as_deep_as_the_limit_makes_the_round_trip(kind: str, settings: Any) -> None:
    value = nested(settings.IMPORTER_MAX_ARGUMENT_DEPTH, kind)
    args, kwargs = pack((value,), {})
    assert same(unpack(*json_round_trip([args, kwargs]))[0][0], value)


@pytest.mark.parametrize("kind", ["list", "tuple", "dict"])
def test_an_argument_nested_deeper_than_the_limit_is_refused_with_its_path(kind: str, settings: Any) -> None:
    settings.IMPORTER_MAX_ARGUMENT_DEPTH = 3
    with pytest.raises(TypeError) as caught:
        pack((), {"value": nested(4, kind)})
    step = "['k']" if kind == "dict" else "[0]"
    reason = "nests deeper than 3 levels (IMPORTER_MAX_ARGUMENT_DEPTH): send flatter data"
    assert str(caught.value) == f"kwargs['value']{step * 3} {reason}"


def test_a_set_counts_as_one_level_as_its_elements_do() -> None:
    pack(({nested(31, "tuple")},), {})
    with pytest.raises(TypeError, match=r"^args\[0\] \(an element\)(\[0\]){31} nests deeper"):
        pack(({nested(32, "tuple")},), {})


def test_a_list_nested_485_deep_is_refused_before_it_can_exhaust_the_stack() -> None:
    with pytest.raises(TypeError, match="IMPORTER_MAX_ARGUMENT_DEPTH"):
        pack((nested(485),), {})


def test_a_forged_argument_nested_deeper_than_the_limit_is_refused_on_unpacking(settings: Any) -> None:
    settings.IMPORTER_MAX_ARGUMENT_DEPTH = 3
    unpack([[[[1]]]], {"ok": {"__tuple__": [[{"k": 1}]]}})  # a tagged tuple is one level, as packed
    with pytest.raises(TypeError, match=r"^args\[0\]\[0\]\[0\]\[0\] nests deeper than 3 levels"):
        unpack([[[[[1]]]]], {})
    with pytest.raises(TypeError, match=r"^kwargs\['t'\]\[0\]\[0\]\['k'\] nests deeper"):
        unpack([], {"t": {"__tuple__": [[{"k": [1]}]]}})


def test_arguments_larger_than_a_message_may_carry_are_refused_naming_the_largest(settings: Any) -> None:
    settings.IMPORTER_MAX_MESSAGE_BYTES = 64 * 1024
    room = 64 * 1024 - 4096
    pack(("x" * (room - 100),), {})
    with pytest.raises(TypeError) as caught:
        pack(("small",), {"ids": ["Q1"] * 20_000})
    assert str(caught.value).startswith("kwargs['ids'] takes 120,000 bytes as JSON, and the arguments 120,")
    assert f"at most {room:,} (IMPORTER_MAX_MESSAGE_BYTES less 4,096" in str(caught.value)
    # Measured as it travels: escaped non-ASCII text takes six bytes a character.
    with pytest.raises(TypeError, match=r"^args\[0\] takes 72,002 bytes"):
        pack(("é" * 12_000,), {})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMPORTER_MAX_ARGUMENT_DEPTH", 0),
        ("IMPORTER_MAX_ARGUMENT_DEPTH", 485),
        ("IMPORTER_MAX_ARGUMENT_DEPTH", "32"),
        ("IMPORTER_MAX_MESSAGE_BYTES", 100),
    ],
)
def test_a_bound_set_outside_its_safe_range_stops_the_call(name: str, value: Any, settings: Any) -> None:
    setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        pack(([1],), {})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMPORTER_MAX_ARGUMENT_DEPTH", 485),
        ("IMPORTER_MAX_MESSAGE_BYTES", 100),
        ("IMPORTER_MAX_QUEUED_MESSAGES", 0),
        ("IMPORTER_MAX_WORKER_LOSSES", "3"),
    ],
)
def test_manage_py_check_names_a_bound_set_outside_its_range(name: str, value: Any, settings: Any) -> None:
    setattr(settings, name, value)
    with pytest.raises(SystemCheckError, match=rf"\(core\.E001\) {name} must be an int from"):
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


def test_a_worker_started_with_a_bound_outside_its_range_stops_at_once_naming_it() -> None:
    """Before: it started, and failed each message that needed the bound, one by one."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "CELERY_BROKER_URL": configured.TEST_REDIS_URL,
        "IMPORTER_MAX_MESSAGE_BYTES": "100",
    }
    command = [sys.executable, "-m", "celery", "-A", "config.celery_app", "worker", "--concurrency", "1",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1, done.stderr
    assert (
        "(core.E001) IMPORTER_MAX_MESSAGE_BYTES must be an int from 65536 to 67108864, not 100" in done.stderr
    )
