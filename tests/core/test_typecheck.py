"""Argument types: a value is checked against its parameter's annotation, or the annotation refused."""

from __future__ import annotations

import datetime
import enum
import inspect
import sys
import timeit
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Literal, Optional, TypeVar, Union

import pytest

from core.typecheck import ArgumentTypes

SUPPORTED = (
    "annotate it with str, int, float, bool, None, list[X], tuple[X, ...], set[X], dict[str, X], "
    "X | None or Literal[...]"
)


class Colour(enum.Enum):
    RED = "red"


class Label(str):
    pass


class Place:
    pass


T = TypeVar("T")
Json = list["Json"]  # get_type_hints leaves the inner name unresolved, to end the recursion


class Recorder:
    def echo(self, when: datetime.datetime) -> None: ...


class Importer:
    def fetch(self, wikidata_ids: list[str], depth: int, options: dict[str, int] | None = None) -> None: ...

    def many(self, *ids: int, **labels: str) -> None: ...

    def anything(self, *args, **kwargs) -> None: ...

    def unannotated(self, value, other: Any, third: object) -> None: ...

    def typed_self(self: Importer, value: int) -> datetime.datetime: ...  # type: ignore[empty-body]


def method(annotation: Any) -> Callable[..., None]:
    """Return a method whose one parameter, ``value``, is annotated with ``annotation``."""

    def echo(self: Any, value: Any) -> None: ...

    echo.__annotations__ = {"value": annotation}
    return echo


def check(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Check a call of ``func`` (``self`` bound to None, as a task does) against its annotations."""
    ArgumentTypes(func).check(inspect.signature(func).bind(None, *args, **kwargs))


def deeply_nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (Any, datetime.date(2024, 1, 1)),
        (object, [1, {"a": None}]),
        (str, "Q42"),
        (int, -(2**70)),
        (float, 1.5),
        (float, 3),  # PEP 484's numeric tower
        (bool, False),
        (None, None),
        (type(None), None),
        (list, [1, "a", None]),
        (list[str], ["Q1", "Q2"]),
        (list[str], []),
        (list[Any], [datetime.time()]),
        (typing.List[int], [1]),  # noqa: UP006 - the typing alias is the point
        (tuple, (1, "a")),
        (tuple[int, ...], (1, 2, 3)),
        (tuple[int, ...], ()),
        (tuple[int, str], (1, "a")),
        (tuple[int, Any], (1, [2])),
        (tuple[()], ()),
        (typing.Tuple[int, ...], (1,)),  # noqa: UP006
        (set, {1, "a"}),
        (set[int], {1, 2}),
        (frozenset, frozenset()),
        (frozenset[str], frozenset({"a"})),
        (typing.FrozenSet[int], frozenset({1})),  # noqa: UP006
        (dict, {"a": [1]}),
        (dict[str, int], {"a": 1, "b": 2}),
        (dict[str, Any], {"a": datetime.time()}),
        (dict[Any, int], {"a": 1}),
        (typing.Dict[str, list[int]], {"a": [1]}),  # noqa: UP006
        (Iterable[int], [1, 2]),
        (Iterable[int], (1, 2)),
        (Iterable[int], {1, 2}),
        (Iterable[int], frozenset({1})),
        (Sequence[str], ["a"]),
        (Sequence[str], ("a",)),
        (Collection[str], {"a"}),
        (Sequence, [1, "a"]),
        (typing.Iterable[int], [1]),
        (typing.Sequence[int], (1,)),
        (typing.Collection[int], frozenset({1})),
        (Mapping[str, int], {"a": 1}),
        (typing.Mapping[str, int], {"a": 1}),
        (Mapping, {"a": 1}),
        (int | None, None),
        (int | None, 3),
        (Optional[str], "a"),  # noqa: UP045 - the typing spelling is the point
        (Union[int, str], "a"),  # noqa: UP007
        (int | list[str], 3),
        (int | list[str], ["a"]),
        (list[int] | list[str], ["a"]),
        (bool | int, True),
        (Literal["a", "b", 3], "b"),
        (Literal["a", "b", 3], 3),
        (Literal[True], True),
        (Literal[None], None),
        (Literal["a"] | int, 7),
        (list[dict[str, list[int]]], [{"a": [1, 2]}, {"b": []}]),
        (list[int | str], [1, "a"]),
        (dict[str, tuple[int, str] | None], {"a": (1, "a"), "b": None}),
        (set[frozenset[int]], {frozenset({1})}),
        (list[Literal["a", "b"]], ["a", "b", "a"]),
    ],
    ids=repr,
)
def test_a_value_of_the_annotated_type_is_accepted(annotation: Any, value: Any) -> None:
    check(method(annotation), value)


@pytest.mark.parametrize(
    ("annotation", "value", "message"),
    [
        (int, True, "value is a bool (True), expected int"),
        (int, 1.0, "value is a float (1.0), expected int"),
        (float, True, "value is a bool (True), expected float"),
        (str, None, "value is None, expected str"),
        (str, Label("Q1"), "value is a tests.core.test_typecheck.Label ('Q1'), expected str"),
        (
            str,
            datetime.date(2024, 1, 1),
            "value is a datetime.date (datetime.date(2024, 1, 1)), expected str",
        ),
        (bool, 1, "value is an int (1), expected bool"),
        (None, 0, "value is an int (0), expected None"),
        (list, (1,), "value is a tuple ((1,)), expected list"),
        (list[str], "Q42", "value is a str ('Q42'), expected list[str]"),
        (list[str], ("Q42",), "value is a tuple (('Q42',)), expected list[str]"),
        (list[str], ["Q1", "Q2", "Q3", 4], "value[3] is an int (4), expected str"),
        (list[Any], {"a": 1}, "value is a dict ({'a': 1}), expected list[Any]"),
        (tuple[int, ...], [1], "value is a list ([1]), expected tuple[int, ...]"),
        (tuple[int, ...], (1, "a"), "value[1] is a str ('a'), expected int"),
        (tuple[int, str], (1, 2), "value[1] is an int (2), expected str"),
        (tuple[int, str], (1,), "value is a tuple of length 1 ((1,)), expected tuple[int, str]"),
        (tuple[()], (1,), "value is a tuple of length 1 ((1,)), expected tuple[()]"),
        (set[int], {"a"}, "value (an element) is a str ('a'), expected int"),
        (set[int], frozenset({1}), "value is a frozenset (frozenset({1})), expected set[int]"),
        (frozenset[int], {1}, "value is a set ({1}), expected frozenset[int]"),
        (dict, ["a"], "value is a list (['a']), expected dict"),
        (dict[str, int], {"depth": "x"}, "value['depth'] is a str ('x'), expected int"),
        (dict[str, int], {"a": 1, 2: 1}, "value (a key) is an int (2), expected str"),
        (dict[str, Any], {1: "a"}, "value (a key) is an int (1), expected str"),
        (Mapping[str, int], {"a": 1.5}, "value['a'] is a float (1.5), expected int"),
        (Mapping[str, int], [("a", 1)], "value is a list ([('a', 1)]), expected Mapping[str, int]"),
        (Sequence[int], {1}, "value is a set ({1}), expected Sequence[int]"),
        (Iterable[str], "abc", "value is a str ('abc'), expected Iterable[str]"),
        (Iterable[int], {"a"}, "value (an element) is a str ('a'), expected int"),
        (Iterable[int], (1, "a"), "value[1] is a str ('a'), expected int"),
        (Collection[int], {"a": 1}, "value is a dict ({'a': 1}), expected Collection[int]"),
        (int | None, "x", "value is a str ('x'), expected int | None"),
        (Optional[int], 1.5, "value is a float (1.5), expected int | None"),  # noqa: UP045
        (Union[int, str], None, "value is None, expected int | str"),  # noqa: UP007
        (list[int] | None, [1, "a"], "value[1] is a str ('a'), expected int"),
        (int | list[str], ["a", 1], "value[1] is an int (1), expected str"),
        (list[int] | list[str], [1, "a"], "value is a list ([1, 'a']), expected list[int] | list[str]"),
        (
            tuple[int, str] | None,
            (1, "a", 3),
            "value is a tuple of length 3 ((1, 'a', 3)), expected tuple[int, str] | None",
        ),
        (Literal["a", "b", 3], "c", "value is a str ('c'), expected Literal['a', 'b', 3]"),
        (Literal["a", "b", 3], "3", "value is a str ('3'), expected Literal['a', 'b', 3]"),
        (Literal[1], True, "value is a bool (True), expected Literal[1]"),
        (Literal[1], 1.0, "value is a float (1.0), expected Literal[1]"),
        (Literal[True], 1, "value is an int (1), expected Literal[True]"),
        (Literal["a"] | int, "b", "value is a str ('b'), expected Literal['a'] | int"),
        (list[Literal["a", "b"]], ["a", "c"], "value[1] is a str ('c'), expected Literal['a', 'b']"),
        (
            list[dict[str, list[int]]],
            [{"a": [1]}, {"b": [2, "x"]}],
            "value[1]['b'][1] is a str ('x'), expected int",
        ),
        (dict[str, set[int]], {"a": {1}, "b": {"x"}}, "value['b'] (an element) is a str ('x'), expected int"),
        (tuple[int, list[str]], (1, ["a", 2]), "value[1][1] is an int (2), expected str"),
    ],
    ids=repr,
)
def test_a_value_of_another_type_is_refused_with_its_path(annotation: Any, value: Any, message: str) -> None:
    with pytest.raises(TypeError) as error:
        check(method(annotation), value)
    assert str(error.value) == message


def test_a_bool_is_not_accepted_for_int_but_an_int_is_for_float() -> None:
    check(method(float), 1)
    with pytest.raises(TypeError, match=r"^value is a bool \(True\), expected int$"):
        check(method(int), True)


def test_an_annotation_that_cannot_travel_is_refused_naming_the_function_and_the_parameter() -> None:
    with pytest.raises(TypeError) as error:
        ArgumentTypes(Recorder.echo)
    assert str(error.value) == (
        "Recorder.echo(): parameter 'when' is annotated datetime.datetime, which cannot travel in a task "
        f"message: {SUPPORTED}"
    )


@pytest.mark.parametrize(
    ("annotation", "spelled"),
    [
        (datetime.datetime, "datetime.datetime, which cannot travel in a task message: "),
        (Place, "tests.core.test_typecheck.Place, which cannot travel in a task message: "),
        (Colour, "tests.core.test_typecheck.Colour, which cannot travel"),
        (bytes, "bytes, which cannot travel"),
        (complex, "complex, which cannot travel"),
        (T, "~T, which cannot travel"),
        (Callable[[int], str], "collections.abc.Callable[[int], str], which cannot travel"),
        (type[int], "type[int], which cannot travel"),
        (typing.Hashable, "typing.Hashable, which cannot travel"),
        (dict[int, str], "dict[int, str], which cannot travel in a task message (dict keys travel as str): "),
        (Mapping[int, str], "(dict keys travel as str)"),
        (
            list[datetime.date],
            "list[datetime.date], which cannot travel in a task message (datetime.date cannot): ",
        ),
        (dict[str, Place] | None, "(tests.core.test_typecheck.Place cannot)"),
        (tuple[int, bytes], "(bytes cannot)"),
        (Literal[b"x"], "(Literal values travel only as str, int, bool or None)"),
        (Literal[Colour.RED], "(Literal values travel only as str, int, bool or None)"),
        (Literal, "typing.Literal, which cannot travel in a task message: "),
        (Union, "typing.Union, which cannot travel in a task message: "),
    ],
    ids=repr,
)
def test_an_annotation_that_cannot_travel_is_refused(annotation: Any, spelled: str) -> None:
    with pytest.raises(TypeError) as error:
        ArgumentTypes(method(annotation))
    message = str(error.value)
    assert message.startswith("method.<locals>.echo(): parameter 'value' is annotated ")
    assert spelled in message
    assert message.endswith(SUPPORTED)


@pytest.mark.parametrize(
    ("annotation", "reason"),
    [
        ("Missing", "'Missing', which cannot be resolved: NameError: name 'Missing' is not defined"),
        (
            "list[Missing]",
            "'list[Missing]', which cannot be resolved: NameError: name 'Missing' is not defined",
        ),
        ("list[", "'list[', which cannot be resolved: SyntaxError: "),
        ("datetime.nothing", "'datetime.nothing', which cannot be resolved: AttributeError: module"),
    ],
)
def test_an_annotation_that_cannot_be_resolved_is_refused(annotation: str, reason: str) -> None:
    with pytest.raises(TypeError) as error:
        ArgumentTypes(method(annotation))
    assert str(error.value).startswith(f"method.<locals>.echo(): parameter 'value' is annotated {reason}")


def test_a_name_known_only_inside_a_function_cannot_be_resolved() -> None:
    class Local:
        pass

    class Holder:
        def echo(self, value: Local) -> None: ...

    with pytest.raises(TypeError, match=r"parameter 'value' is annotated 'Local', which cannot be resolved"):
        ArgumentTypes(Holder.echo)


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(TypeError, match=r"\('Json' cannot be resolved\)"):
        ArgumentTypes(method("Json"))


def test_string_annotations_are_resolved_in_the_module_of_the_function() -> None:
    # This module's annotations are strings (from __future__ import annotations) naming its imports.
    assert inspect.signature(Importer.fetch).parameters["wikidata_ids"].annotation == "list[str]"
    check(Importer.fetch, ["Q1"], 2, {"a": 1})
    with pytest.raises(TypeError, match=r"^options\['a'\] is a str \('x'\), expected int$"):
        check(Importer.fetch, ["Q1"], 2, {"a": "x"})
    check(method("Sequence[int] | None"), (1,))


def test_the_messages_name_the_argument_and_the_path_inside_it() -> None:
    types = ArgumentTypes(Importer.fetch)
    signature = inspect.signature(Importer.fetch)
    cases = [
        (signature.bind(None, "Q42", 1), "wikidata_ids is a str ('Q42'), expected list[str]"),
        (signature.bind(None, ["Q1", "Q2", "Q3", 4], 1), "wikidata_ids[3] is an int (4), expected str"),
        (signature.bind(None, [], "1"), "depth is a str ('1'), expected int"),
        (
            signature.bind(None, [], depth=1, options=[]),
            "options is a list ([]), expected dict[str, int] | None",
        ),
        (signature.bind(None, [], 1, {"depth": "x"}), "options['depth'] is a str ('x'), expected int"),
    ]
    for bound, message in cases:
        with pytest.raises(TypeError) as error:
            types.check(bound)
        assert str(error.value) == message


def test_bind_partial_checks_only_the_arguments_given() -> None:
    types = ArgumentTypes(Importer.fetch)
    signature = inspect.signature(Importer.fetch)
    types.check(signature.bind_partial())
    types.check(signature.bind_partial(None))
    types.check(signature.bind_partial(None, depth=2))
    with pytest.raises(TypeError, match=r"^depth is a bool \(True\), expected int$"):
        types.check(signature.bind_partial(None, depth=True))


def test_each_extra_positional_and_keyword_argument_is_checked() -> None:
    check(Importer.many)
    check(Importer.many, 1, 2, 3, en="Stuttgart", de="Stuttgart")
    with pytest.raises(TypeError, match=r"^ids\[1\] is a str \('2'\), expected int$"):
        check(Importer.many, 1, "2")
    with pytest.raises(TypeError, match=r"^de is an int \(1\), expected str$"):
        check(Importer.many, 1, en="Stuttgart", de=1)


def test_unannotated_any_and_object_parameters_take_any_value() -> None:
    check(Importer.anything, 1, datetime.time(), name=Place())
    check(Importer.unannotated, Place(), Place(), Place())


def test_the_first_parameter_and_the_return_annotation_are_neither_read_nor_checked() -> None:
    # self is annotated with a class, the return with a datetime: neither could travel.
    check(Importer.typed_self, 1)
    with pytest.raises(TypeError, match=r"^value is a str \('1'\), expected int$"):
        check(Importer.typed_self, "1")


@pytest.mark.parametrize("annotation", [Any, list, list[Any], Sequence, list[list[Any]], Iterable[list[Any]]])
def test_a_value_nested_deeper_than_the_recursion_limit_is_not_walked_past_its_annotation(
    annotation: Any,
) -> None:
    check(method(annotation), deeply_nested(sys.getrecursionlimit() * 5))


def test_a_value_nested_deeper_than_the_recursion_limit_is_refused_with_a_short_message() -> None:
    with pytest.raises(TypeError) as error:
        check(method(list[list[int]]), deeply_nested(sys.getrecursionlimit() * 5))
    assert str(error.value) == "value[0][0] is a list ([[[[...]]]]), expected int"


@pytest.mark.parametrize(
    "value",
    [
        "x" * 10_000_000,
        ["x" * 1000] * 100_000,
        {str(index): index for index in range(100_000)},
        10**10_000,  # beyond Python's limit for turning an int into digits
    ],
    ids=["a long str", "a long list", "a big dict", "a huge int"],
)
def test_the_repr_of_a_big_value_in_a_message_is_short(value: Any) -> None:
    with pytest.raises(TypeError) as error:
        check(method(Literal["a"]), value)
    assert len(str(error.value)) < 150


def test_a_list_of_ten_thousand_strings_is_checked_quickly() -> None:
    values: list[Any] = [f"Q{index}" for index in range(10_000)]
    types = ArgumentTypes(Importer.fetch)
    bound = inspect.signature(Importer.fetch).bind(None, values, 1)
    types.check(bound)
    # The measured time is about 0.15 ms; the bound leaves room for a slow machine.
    assert min(timeit.repeat(lambda: types.check(bound), number=10, repeat=5)) / 10 < 0.005
    values[-1] = 9999
    with pytest.raises(TypeError, match=r"^wikidata_ids\[9999\] is an int \(9999\), expected str$"):
        types.check(bound)
