"""Importer classes, and their task methods, which run on workers through one method caller.

``@as_task`` declares a task method and leaves the function a function: calling it, binding it
and introspecting it stay Python's own. The metaclass registers each importer class and gives it
its own copy of every task method it has, own or inherited, whose ``as_task`` attribute sends for
that class. A bound method looks up attributes it lacks on its function, so
``obj.method.as_task(...)`` sends the registry key of ``type(obj)``: a subclass that inherits a
task method dispatches as itself. Plain methods are left alone. (So a test that patches a task
method must patch it on the class whose instances it calls: a subclass has its own copy.)
"""

from __future__ import annotations

import abc
import functools
import inspect
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, ParamSpec, Protocol, TypeVar, cast, overload

from .registry import registry
from .sender import TaskSender
from .typecheck import ArgumentTypes

if TYPE_CHECKING:
    from .exceptions import PoisonMessage
    from .message import Message

__all__ = ("BaseImporter", "ImporterMeta", "TaskMethod", "as_task")

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True)
class TaskMethod:
    """A task method's declaration: its signature, its argument types and its Celery options."""

    func: Callable[..., Any]
    signature: inspect.Signature
    types: ArgumentTypes
    #: Defaults for every call (``queue``, ``priority``, time limits, ``expires``); a call's own win.
    options: Mapping[str, Any]

    @classmethod
    def declare(cls, func: Callable[..., Any], options: Mapping[str, Any]) -> TaskMethod:
        """Return the declaration of ``func`` as a task method.

        Raises:
            TypeError: a parameter's annotation describes a value that cannot travel.
        """
        return cls(func, inspect.signature(func), ArgumentTypes(func), types.MappingProxyType(dict(options)))


class BoundTaskMethod(Protocol[P, R_co]):
    """What type checkers see of ``obj.method``: a bound method with ``as_task``."""

    __self__: Any
    __func__: Callable[..., Any]
    __name__: str
    __qualname__: str
    as_task: TaskSender[P]
    task_method: TaskMethod

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...


class TaskFunction(Protocol[P, R_co]):
    """What type checkers see of a task method on its class: a function with ``as_task``."""

    __name__: str
    __qualname__: str
    __code__: types.CodeType
    as_task: TaskSender[P]
    task_method: TaskMethod

    def __call__(self, importer: Any, /, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    @overload
    def __get__(self, instance: None, owner: type, /) -> TaskFunction[P, R_co]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None, /) -> BoundTaskMethod[P, R_co]: ...


@overload
def as_task(func: Callable[Concatenate[Any, P], R], /) -> TaskFunction[P, R]: ...
@overload
def as_task(
    *,
    queue: str | None = None,
    priority: int | None = None,
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
    expires: float | None = None,
) -> Callable[[Callable[Concatenate[Any, P], R]], TaskFunction[P, R]]: ...
def as_task(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare an importer method a task method: callable as usual, or sent with ``.as_task``.

    Used bare (``@as_task``) or with Celery options that every call gets unless it says
    otherwise: ``@as_task(queue="slow", priority=5, soft_time_limit=60, time_limit=90, expires=3600)``
    (priority 0 to 255, times in seconds).

    Raises:
        TypeError: not a plain function, an unknown or ill-typed option, or a parameter annotated
            with a type whose values cannot travel in a task message.
    """
    if func is not None:
        return _declare(func, {})
    checked = _check_options(options)
    return functools.partial(_declare, options=checked)


def _declare(func: Callable[..., Any], options: Mapping[str, Any]) -> Any:
    if not inspect.isfunction(func):
        raise TypeError(f"@as_task decorates a plain method, not {func!r}")
    func.task_method = TaskMethod.declare(func, options)  # type: ignore[attr-defined]
    return func


def _seconds(value: Any) -> bool:
    return type(value) in (int, float) and 0 < value < float("inf")


# Each option, and the check of its value.
_OPTIONS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "queue": (lambda value: type(value) is str and bool(value), "a queue name"),
    "priority": (lambda value: type(value) is int and 0 <= value <= 255, "an int from 0 to 255"),
    "soft_time_limit": (_seconds, "a number of seconds above 0"),
    "time_limit": (_seconds, "a number of seconds above 0"),
    "expires": (_seconds, "a number of seconds above 0"),
}


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    checked = {}
    for name, value in options.items():
        if name not in _OPTIONS:
            raise TypeError(f"@as_task() got an unknown option {name!r}; options: {', '.join(_OPTIONS)}")
        if value is None:
            continue
        valid, expected = _OPTIONS[name]
        if not valid(value):
            raise TypeError(f"@as_task({name}=...) must be {expected}, not {value!r}")
        checked[name] = value
    soft, hard = checked.get("soft_time_limit"), checked.get("time_limit")
    if soft is not None and hard is not None and soft >= hard:
        raise TypeError(f"@as_task(): soft_time_limit ({soft}) must be below time_limit ({hard})")
    return checked


class ImporterMeta(abc.ABCMeta):
    """Registers each importer class in ``core.registry.registry`` as soon as it is created.

    The key is the class name, or the ``importer_name`` the class body sets. A class is
    abstract when its body sets ``abstract = True`` or it has abstract methods; an abstract
    importer is registered and listed, but its task methods cannot be sent. A method that
    overrides an inherited task method is a task method too, decorated or not, with the
    same options.
    """

    importer_name: str
    abstract: bool
    task_methods: Mapping[str, TaskMethod]

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> ImporterMeta:
        for attr, value in namespace.items():
            if inspect.isfunction(value) and "task_method" not in value.__dict__:
                inherited = _inherited_declaration(bases, attr)
                if inherited is not None:
                    _declare(value, inherited.options)

        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        # Set on every class, so that none inherits its parent's key or abstractness.
        cls.importer_name = namespace.get("importer_name", name)
        cls.abstract = bool(namespace.get("abstract", False)) or inspect.isabstract(cls)
        declared = {}
        for attr in dir(cls):
            function = inspect.getattr_static(cls, attr)
            declaration = getattr(function, "task_method", None) if inspect.isfunction(function) else None
            if not isinstance(declaration, TaskMethod):
                continue
            declared[attr] = declaration
            if namespace.get(attr) is not function or "as_task" in function.__dict__:
                # Inherited (or shared): a copy of its own, so that as_task sends for this class.
                function = _copy(function)
                setattr(cls, attr, function)
            function.as_task = TaskSender(cast(type[BaseImporter], cls), attr)
        cls.task_methods = types.MappingProxyType(declared)
        registry.register(cls.importer_name, cls)  # type: ignore[arg-type]
        return cls


def _inherited_declaration(bases: tuple[type, ...], attr: str) -> TaskMethod | None:
    for base in bases:
        declaration = getattr(base, "task_methods", {}).get(attr)
        if declaration is not None:
            return cast(TaskMethod, declaration)
    return None


def _copy(function: types.FunctionType) -> types.FunctionType:
    """A new function object with the same code, defaults, closure and attributes."""
    copy = types.FunctionType(
        function.__code__,
        function.__globals__,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    functools.update_wrapper(copy, function)
    # The same function, not a wrapper (signature() must not follow it), and no sender yet.
    copy.__dict__.pop("__wrapped__")
    copy.__dict__.pop("as_task", None)
    return copy


class BaseImporter(metaclass=ImporterMeta):
    """Base class of every importer. Importers are built without arguments on the worker."""

    abstract: ClassVar[bool] = True
    importer_name: ClassVar[str]
    task_methods: ClassVar[Mapping[str, TaskMethod]]
    #: The Celery queue its tasks go to; ``None`` for Celery's default queue.
    queue: ClassVar[str | None] = None
    #: The id of the Celery task running the current call; ``None`` when called directly.
    task_id: str | None = None

    @classmethod
    def poisoned(cls, message: Message, error: PoisonMessage) -> None:
        """Called on a worker instead of a task method whose call has killed its pool process too often.

        ``message`` is the call (``message.method_name``, ``message.args``, ``message.kwargs``),
        whose task killed the pool process running it ``IMPORTER_MAX_WORKER_LOSSES`` times (out
        of memory, say); it is not run again, and is discarded once this returns. Override it to
        record the failure of what the call was for; ``error`` says what happened, and
        ``error.task_id`` is the task's id. This one does nothing. An exception it raises is
        logged, and the message discarded all the same; but an unavailable database sends the
        call again, as it does for a task method, so that the hook can run once it is back.
        """
