"""Task arguments against their annotations: a value that travels must be of the type declared.

``ArgumentTypes(func)`` reads the annotations of a task method's parameters once, refuses those
whose values could not travel in a task message, and compiles each of the others into a small
check. ``check(bound)`` then runs them on the values of a call, at the call site and again on the
worker. Values are judged as ``core.arguments`` carries them: by exact type, so a bool is not an
int and a str subclass is not a str; an int is accepted where a float is expected (PEP 484).
"""

from __future__ import annotations

import collections.abc
import inspect
import reprlib
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple, Union

__all__ = ("ArgumentTypes",)

Check = Callable[[Any], None]

_SUPPORTED = (
    "str, int, float, bool, None, list[X], tuple[X, ...], set[X], dict[str, X], X | None or Literal[...]"
)
_NONE = type(None)
_STR_ONLY = frozenset({str})
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class ArgumentTypes:
    """The annotations of a task method's parameters, as checks of the values that travel."""

    def __init__(self, func: Callable[..., Any]) -> None:
        """Read ``func``'s annotations and compile a check for each annotated parameter.

        The first positional parameter (``self``) is neither read nor checked, nor is the
        return annotation. String annotations (``from __future__ import annotations``) are
        resolved in ``func``'s module, as ``typing.get_type_hints`` does.

        Raises:
            TypeError: an annotation that cannot be resolved, or that describes values which
                cannot travel in a task message; names the function and the parameter.
        """
        parameters = list(inspect.signature(func).parameters.values())
        if parameters and parameters[0].kind in _POSITIONAL:
            parameters = parameters[1:]  # self: what a task binds it to is the worker's business
        annotations: dict[str, Any] = getattr(func, "__annotations__", {})
        self._checks: dict[str, Check] = {}
        for parameter in parameters:
            if parameter.name not in annotations:
                continue
            where = f"{func.__qualname__}(): parameter {parameter.name!r}"
            annotation = _resolve(func, parameter.name, annotations[parameter.name], where)
            try:
                node = _compile(annotation)
            except _CannotTravel as error:
                raise TypeError(error.message(where, annotation)) from None
            if node.kinds is None:
                continue  # anything goes: nothing to run
            if parameter.kind is parameter.VAR_POSITIONAL:
                self._checks[parameter.name] = _each_extra_positional(node)
            elif parameter.kind is parameter.VAR_KEYWORD:
                self._checks[parameter.name] = _each_extra_keyword(node)
            else:
                self._checks[parameter.name] = node.check

    def check(self, bound: inspect.BoundArguments) -> None:
        """Check each argument in ``bound`` against its parameter's annotation.

        Only the arguments present are checked, so ``bound`` may come from ``Signature.bind``
        or ``Signature.bind_partial``; defaults are not, unless ``apply_defaults`` put them there.

        Raises:
            TypeError: a value is not of its annotated type; names the argument and the path
                inside it, e.g. ``wikidata_ids[3] is an int (4), expected str``.
        """
        checks = self._checks
        for name, value in bound.arguments.items():
            check = checks.get(name)
            if check is not None:
                try:
                    check(value)
                except _Mismatch as mismatch:
                    raise TypeError(mismatch.describe(name)) from None


class _Node(NamedTuple):
    """An annotation compiled: its check, its spelling, and what its check looks at."""

    check: Check
    #: The annotation as an error message spells it, e.g. ``list[str]`` or ``int | None``.
    expected: str
    #: The exact types the check can accept; None when it accepts anything (and checks nothing).
    kinds: frozenset[type] | None
    #: Whether the check is just ``type(value) in kinds``, which lets a container check all its
    #: elements with one pass in C instead of a call per element.
    shallow: bool


class _Mismatch(Exception):
    """A value that fails its check, on its way out to the argument it sits in.

    Each container it passes through adds its step (``[3]``, ``['key']``), so the path costs
    nothing unless a value fails.
    """

    def __init__(self, value: Any, expected: str, step: str | None = None, what: str | None = None) -> None:
        super().__init__()
        self.value = value
        self.expected = expected
        self.what = what
        #: The path from the argument to the value, innermost step first.
        self.steps: list[str] = [] if step is None else [step]
        #: The name the path starts from, when it is not the parameter's (an extra keyword's).
        self.root: str | None = None

    def describe(self, name: str) -> str:
        """Return the error message, the path starting from the argument ``name``."""
        path = (self.root or name) + "".join(reversed(self.steps))
        if self.value is None and self.what is None:
            return f"{path} is None, expected {self.expected}"
        what = self.what or _a(type(self.value))
        return f"{path} is {what} ({_short(self.value)}), expected {self.expected}"


class _CannotTravel(Exception):
    """An annotation, or a part of it, whose values cannot travel in a task message."""

    def __init__(self, part: Any, reason: str | None = None) -> None:
        super().__init__()
        self.part = part
        self.reason = reason

    def message(self, where: str, annotation: Any) -> str:
        """Return the error message for the whole ``annotation`` of the parameter ``where``."""
        spelled = _spell(annotation)
        why = self.reason or (f"{_spell(self.part)} cannot" if self.part is not annotation else None)
        because = f" ({why})" if why else ""
        return (
            f"{where} is annotated {spelled}, which cannot travel in a task message{because}: "
            f"annotate it with {_SUPPORTED}"
        )


def _resolve(func: Callable[..., Any], name: str, annotation: Any, where: str) -> Any:
    """Return ``annotation`` evaluated as ``typing.get_type_hints(func)`` would.

    One parameter at a time, so that an error can name the parameter whose annotation failed.

    Raises:
        TypeError: the annotation cannot be evaluated (a name not defined, a syntax error).
    """
    # get_type_hints finds the names of a decorated function in the module of the function inside.
    unwrapped = inspect.unwrap(func)
    holder = types.SimpleNamespace(__annotations__={name: annotation})
    try:
        resolved = typing.get_type_hints(holder, globalns=getattr(unwrapped, "__globals__", {}))[name]
    except Exception as error:  # evaluating an annotation runs arbitrary code: any error means "cannot"
        raise TypeError(
            f"{where} is annotated {_spell(annotation)}, which cannot be resolved: "
            f"{type(error).__name__}: {error}"
        ) from None
    return resolved


# Exact types as they arrive, by annotation.
_SCALARS: dict[Any, frozenset[type]] = {
    str: frozenset({str}),
    int: frozenset({int}),
    float: frozenset({float, int}),  # PEP 484's numeric tower; an int still arrives as an int
    bool: frozenset({bool}),
    _NONE: frozenset({_NONE}),
}

# Containers, by the origin of their annotation: what they accept, and how they are spelled.
_SEQUENCES: dict[Any, tuple[frozenset[type], str]] = {
    list: (frozenset({list}), "list"),
    set: (frozenset({set}), "set"),
    frozenset: (frozenset({frozenset}), "frozenset"),
    # What travels is a list; a method called directly may also be given these.
    collections.abc.Sequence: (frozenset({list, tuple}), "Sequence"),
    collections.abc.Collection: (frozenset({list, tuple, set, frozenset}), "Collection"),
    collections.abc.Iterable: (frozenset({list, tuple, set, frozenset}), "Iterable"),
}
_MAPPINGS: dict[Any, str] = {dict: "dict", collections.abc.Mapping: "Mapping"}
# The bare forms of tuple: any other tuple annotation without arguments is tuple[()].
_BARE_TUPLES = (tuple, typing.Tuple)  # noqa: UP006 - the typing alias is what is recognised here


def _compile(annotation: Any) -> _Node:
    """Return the check of the values ``annotation`` describes.

    Recursion follows the annotation, never a value: an annotation is finite, so a value nested
    however deep can only be walked as deep as its annotation goes.

    Raises:
        _CannotTravel: the annotation, or a part of it, describes values that cannot travel.
    """
    if annotation is Any or annotation is object:
        return _ANYTHING
    if isinstance(annotation, typing.ForwardRef):  # left by get_type_hints in a recursive alias
        raise _CannotTravel(annotation, f"{annotation.__forward_arg__!r} cannot be resolved")
    kinds = _SCALARS.get(annotation)
    if kinds is not None:
        return _exact(kinds, _spell(annotation))
    origin = typing.get_origin(annotation) or annotation
    args = typing.get_args(annotation)
    if origin is Union or origin is types.UnionType or origin is Literal:
        if not args:  # bare: no value would do
            raise _CannotTravel(annotation)
        return _literal(args) if origin is Literal else _union([_compile(member) for member in args])
    if origin in _SEQUENCES:
        container_kinds, name = _SEQUENCES[origin]
        if not args:
            return _exact(container_kinds, name)
        return _sequence(container_kinds, name, _compile(args[0]))
    if origin is tuple:
        if annotation in _BARE_TUPLES:
            return _exact(frozenset({tuple}), "tuple")
        if len(args) == 2 and args[1] is Ellipsis:
            return _sequence(frozenset({tuple}), "tuple", _compile(args[0]), variadic="...")
        return _fixed_tuple([_compile(arg) for arg in args])
    if origin in _MAPPINGS:
        name = _MAPPINGS[origin]
        if not args:
            return _exact(frozenset({dict}), name)
        if args[0] is not str and args[0] is not Any:
            raise _CannotTravel(annotation, "dict keys travel as str")
        return _mapping(name, args[0] is str, _compile(args[1]))
    raise _CannotTravel(annotation)


def _accept_anything(value: Any) -> None:
    pass


_ANYTHING = _Node(_accept_anything, "Any", None, True)


def _exact(kinds: frozenset[type], expected: str) -> _Node:
    """Return the node of a value that must be of one of ``kinds``, and nothing more."""
    if len(kinds) == 1:
        (kind,) = kinds

        def check_one(value: Any) -> None:
            if type(value) is not kind:
                raise _Mismatch(value, expected)

        return _Node(check_one, expected, kinds, True)

    def check_any_of(value: Any) -> None:
        if type(value) not in kinds:
            raise _Mismatch(value, expected)

    return _Node(check_any_of, expected, kinds, True)


def _step(container: Any, index: int) -> str:
    # A set's elements have no index to show; the order one would give is arbitrary.
    return " (an element)" if type(container) in (set, frozenset) else f"[{index}]"


def _each(item: _Node) -> Check | None:
    """Return the check of every element of a list, tuple or set; None if any element goes."""
    kinds, check, expected = item.kinds, item.check, item.expected
    if kinds is None:
        return None
    if item.shallow:

        def check_types(values: Iterable[Any]) -> None:
            # issuperset walks the types in C and stops at the first stranger.
            if not kinds.issuperset(map(type, values)):
                for index, value in enumerate(values):
                    if type(value) not in kinds:
                        raise _Mismatch(value, expected, _step(values, index))

        return check_types

    def check_each(values: Iterable[Any]) -> None:
        try:
            for index, value in enumerate(values):  # noqa: B007 - the index names a failure
                check(value)
        except _Mismatch as mismatch:
            mismatch.steps.append(_step(values, index))
            raise

    return check_each


def _sequence(container_kinds: frozenset[type], name: str, item: _Node, variadic: str = "") -> _Node:
    """Return the node of a list, tuple, set or frozenset (or an abstract one) of ``item``."""
    expected = f"{name}[{item.expected}{', ' + variadic if variadic else ''}]"
    each = _each(item)
    if each is None:
        return _exact(container_kinds, expected)
    if len(container_kinds) == 1:
        (kind,) = container_kinds

        def check_one(value: Any) -> None:
            if type(value) is not kind:
                raise _Mismatch(value, expected)
            each(value)

        return _Node(check_one, expected, container_kinds, False)

    def check_any_of(value: Any) -> None:
        if type(value) not in container_kinds:
            raise _Mismatch(value, expected)
        each(value)

    return _Node(check_any_of, expected, container_kinds, False)


def _fixed_tuple(items: list[_Node]) -> _Node:
    """Return the node of a tuple of ``len(items)`` elements, each of its own type."""
    expected = f"tuple[{', '.join(item.expected for item in items)}]" if items else "tuple[()]"
    length = len(items)
    positions = [(index, item.check) for index, item in enumerate(items) if item.kinds is not None]

    def check(value: Any) -> None:
        if type(value) is not tuple:
            raise _Mismatch(value, expected)
        if len(value) != length:
            raise _Mismatch(value, expected, what=f"a tuple of length {len(value)}")
        for index, check_item in positions:
            try:
                check_item(value[index])
            except _Mismatch as mismatch:
                mismatch.steps.append(f"[{index}]")
                raise

    return _Node(check, expected, frozenset({tuple}), False)


def _mapping(name: str, str_keys: bool, item: _Node) -> _Node:
    """Return the node of a dict whose values are of ``item``, and keys str if ``str_keys``."""
    expected = f"{name}[{'str' if str_keys else 'Any'}, {item.expected}]"
    kinds, check_item = item.kinds, item.check
    if kinds is None and not str_keys:
        return _exact(frozenset({dict}), expected)

    def check(value: Any) -> None:
        if type(value) is not dict:
            raise _Mismatch(value, expected)
        # core.arguments refuses other keys, but a check at the call site may come before it.
        if str_keys and not _STR_ONLY.issuperset(map(type, value)):
            key = next(key for key in value if type(key) is not str)
            raise _Mismatch(key, "str", " (a key)")
        if kinds is None:
            return
        if item.shallow:
            if kinds.issuperset(map(type, value.values())):
                return
            key, bad = next((key, bad) for key, bad in value.items() if type(bad) not in kinds)
            raise _Mismatch(bad, item.expected, f"[{_short(key)}]")
        for key, element in value.items():
            try:
                check_item(element)
            except _Mismatch as mismatch:
                mismatch.steps.append(f"[{_short(key)}]")
                raise

    return _Node(check, expected, frozenset({dict}), False)


def _union(members: list[_Node]) -> _Node:
    """Return the node of a value that any of ``members`` accepts."""
    expected = " | ".join(member.expected for member in members)
    if any(member.kinds is None for member in members):
        return _ANYTHING._replace(expected=expected)
    kinds = frozenset().union(*(member.kinds for member in members if member.kinds is not None))
    if all(member.shallow for member in members):
        return _exact(kinds, expected)
    # The value's type picks the members worth trying, so that int | list[str] never runs the
    # list check on an int, and an error in the one candidate can point inside the value.
    candidates: dict[type, tuple[Check, ...]] = {
        kind: tuple(member.check for member in members if member.kinds and kind in member.kinds)
        for kind in kinds
    }

    def check(value: Any) -> None:
        checks = candidates.get(type(value))
        if checks is None:
            raise _Mismatch(value, expected)
        if len(checks) == 1:
            try:
                checks[0](value)
            except _Mismatch as mismatch:
                if not mismatch.steps:  # the value itself failed: say all it could have been
                    mismatch.expected = expected
                raise
            return
        for candidate in checks:
            try:
                candidate(value)
            except _Mismatch:
                continue
            return
        raise _Mismatch(value, expected)

    return _Node(check, expected, kinds, False)


def _literal(values: tuple[Any, ...]) -> _Node:
    """Return the node of a value equal to one of ``values`` and of the same exact type."""
    for value in values:
        if type(value) not in (str, int, bool, _NONE):
            raise _CannotTravel(Literal[values], "Literal values travel only as str, int, bool or None")
    expected = f"Literal[{', '.join(repr(value) for value in values)}]"
    kinds = frozenset(type(value) for value in values)
    # Pairs, because 1 == True: Literal[1] must refuse True.
    allowed = frozenset((type(value), value) for value in values)

    def check(value: Any) -> None:
        kind = type(value)
        if kind not in kinds or (kind, value) not in allowed:
            raise _Mismatch(value, expected)

    return _Node(check, expected, kinds, False)


def _each_extra_positional(item: _Node) -> Check:
    """Return the check of ``*args``: the tuple of extra positional arguments."""
    each = _each(item)
    assert each is not None  # callers skip annotations that accept anything
    return each


def _each_extra_keyword(item: _Node) -> Check:
    """Return the check of ``**kwargs``: the dict of extra keyword arguments, named as given."""
    check_item = item.check

    def check(values: dict[str, Any]) -> None:
        for name, value in values.items():
            try:
                check_item(value)
            except _Mismatch as mismatch:
                mismatch.root = name  # the caller wrote depth="x", not kwargs['depth']
                raise

    return check


def _spell(annotation: Any) -> str:
    """Return ``annotation`` as a person would write it: ``None``, ``int``, ``datetime.datetime``."""
    if annotation is _NONE or annotation is None:
        return "None"
    if isinstance(annotation, type):
        if annotation.__module__ == "builtins":
            return annotation.__qualname__
        return f"{annotation.__module__}.{annotation.__qualname__}"
    return repr(annotation)


def _a(kind: type) -> str:
    """Return ``kind`` with its article: ``an int``, ``a str``, ``a datetime.datetime``."""
    name = _spell(kind)
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


class _ShortRepr(reprlib.Repr):
    """reprlib with limits that keep a message short whatever the size or depth of the value."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 5
        self.maxdict = 3
        self.maxstring = self.maxother = 60

    def repr_int(self, x: int, level: int) -> str:
        # A huge int has no decimal repr under Python's digit limit, and would take long to make.
        if x.bit_length() > 200:
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_SHORT_REPR = _ShortRepr()
_SHORT_LENGTH = 60


def _short(value: Any) -> str:
    """Return a repr of ``value`` of at most about 60 characters; never the whole of a big value."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= _SHORT_LENGTH else text[: _SHORT_LENGTH - 3] + "..."
