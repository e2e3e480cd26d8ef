"""Importer classes, and methods that run as Celery tasks through one generic method caller.

``@as_task`` marks a method as a task method. Called, it runs as usual;
``obj.method.as_task(...)`` checks the arguments and sends the method caller
(``core.tasks.call_importer_method``) a message naming the registry key of ``type(obj)``,
the method and the arguments, so a subclass that inherits a task method dispatches as itself.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar

from celery.utils import uuid
from django.conf import settings
from django.db import transaction

from .arguments import json_round_trip, pack
from .registry import registry

if TYPE_CHECKING:
    from celery import Celery, Task
    from celery.canvas import Signature
    from celery.result import AsyncResult, EagerResult

__all__ = ("BaseImporter", "ImporterMeta", "TaskSender", "as_task")

P = ParamSpec("P")
R = TypeVar("R")


def as_task(func: Callable[Concatenate[Any, P], R]) -> ImporterMethod[P, R]:
    """Declare an importer method a task method: callable as usual, or sent with ``.as_task``."""
    if not inspect.isfunction(func):
        raise TypeError(f"@as_task decorates a plain method, not {func!r}")
    return ImporterMethod(func, is_task=True)


class ImporterMeta(abc.ABCMeta):
    """Registers each importer class in ``core.registry.registry`` as soon as it is created.

    The key is the class name, or the ``importer_name`` the class body sets. A class is
    abstract when its body sets ``abstract = True`` or it has abstract methods; an abstract
    importer is registered and listed, but cannot be dispatched. A method that overrides an
    inherited task method is a task method too, decorated or not.
    """

    importer_name: str
    abstract: bool
    task_methods: frozenset[str]

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> ImporterMeta:
        inherited = {task for base in bases for task in getattr(base, "task_methods", ())}
        for attr, value in namespace.items():
            if isinstance(value, ImporterMethod) or not inspect.isfunction(value):
                continue
            if attr.startswith("__") and attr.endswith("__"):
                continue  # dunders keep Python's own behaviour
            namespace[attr] = ImporterMethod(value, is_task=attr in inherited)

        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        # Set on every class, so that none inherits its parent's key or abstractness.
        cls.importer_name = namespace.get("importer_name", name)
        cls.abstract = bool(namespace.get("abstract", False)) or inspect.isabstract(cls)
        cls.task_methods = frozenset(
            attr
            for attr in dir(cls)
            if isinstance(method := inspect.getattr_static(cls, attr), ImporterMethod) and method.is_task
        )
        registry.register(cls.importer_name, cls)  # type: ignore[arg-type]
        return cls


class ImporterMethod(Generic[P, R]):
    """A method of an importer class; ``is_task`` says whether it may run as a task."""

    def __init__(self, func: Callable[Concatenate[Any, P], R], *, is_task: bool) -> None:
        self.func = func
        self.is_task = is_task
        self.signature = inspect.signature(func)
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __get__(self, instance: object | None, owner: type | None = None) -> BoundImporterMethod[P, R]:
        importer = type(instance) if instance is not None else owner
        assert importer is not None
        return BoundImporterMethod(self, importer, instance)


class BoundImporterMethod(Generic[P, R]):
    """What ``obj.method`` (or ``Class.method``) gives: callable as usual, plus ``.as_task``."""

    __name__: str
    __qualname__: str

    def __init__(self, method: ImporterMethod[P, R], importer: type, instance: object | None) -> None:
        self._method = method
        self._importer = importer
        self._instance = instance
        functools.update_wrapper(self, method.func, updated=())
        # inspect.signature() and help() follow __wrapped__ to the real (bound) function.
        self.__wrapped__ = method.func if instance is None else method.func.__get__(instance, importer)

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        # Called on the class, the instance comes first, as with a plain function.
        if self._instance is None:
            return self._method.func(*args, **kwargs)
        return self._method.func(self._instance, *args, **kwargs)

    @property
    def as_task(self) -> TaskSender[P]:
        """Send this method to a worker; see ``TaskSender``."""
        if not self._method.is_task:
            raise AttributeError(
                f"{self._importer.__qualname__}.{self._method.func.__name__} is not a task method, "
                "so it has no .as_task: decorate it with @as_task"
            )
        return TaskSender(self._importer, self._method)

    def __repr__(self) -> str:
        kind = "task method" if self._method.is_task else "method"
        return f"<{kind} {self._importer.__qualname__}.{self._method.func.__name__}>"


class TaskSender(Generic[P]):
    """Sends one task method of one importer class to the method caller.

    Every way of sending checks the arguments first (they must bind to the method's
    signature and survive the JSON trip unchanged) and raises ``TypeError`` before
    anything is sent.
    """

    def __init__(self, importer: type, method: ImporterMethod[P, Any]) -> None:
        self.importer_name: str = importer.importer_name  # type: ignore[attr-defined]
        self.queue: str | None = importer.queue  # type: ignore[attr-defined]
        self.method_name = method.func.__name__
        self._method = method

    @property
    def task(self) -> Task[Any, Any]:
        """The method caller, the one Celery task every call is sent as."""
        from .tasks import call_importer_method  # core.tasks imports this module

        return call_importer_method

    @property
    def app(self) -> Celery:
        """The Celery app the method caller belongs to."""
        return self.task.app

    @property
    def label(self) -> str:
        """``"<importer key>.<method>"``: how the call shows in worker logs and monitoring."""
        return f"{self.importer_name}.{self.method_name}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[Any]:
        """Send the call; return its ``AsyncResult``."""
        return self.apply_async(args, kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[Any]:
        """The same as calling the sender, named as Celery names it."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Send the call with Celery's options (``countdown``, ``queue``, ...); return its ``AsyncResult``."""
        call_importer_method = self.task
        message = self._message(tuple(args or ()), kwargs or {}, partial=False)
        options = self._options(options)
        # What monitoring shows of the arguments. The message holds only basic data, so plain
        # repr() is safe, and an order of magnitude cheaper than Celery's saferepr.
        options.setdefault("argsrepr", repr(message)[:1024])
        options.setdefault("kwargsrepr", "{}")
        eager = call_importer_method.app.conf.task_always_eager
        if not eager and transaction.get_connection().in_atomic_block:
            # A worker must not act on data the caller may still roll back: send after commit.
            # (An eager call runs inside the transaction, and rolls back with it.)
            task_id = options.setdefault("task_id", uuid())
            options.pop("producer", None)  # it may be released by the time of the commit
            transaction.on_commit(functools.partial(call_importer_method.apply_async, message, **options))
            return call_importer_method.AsyncResult(task_id)
        return call_importer_method.apply_async(message, **options)

    def apply(
        self, args: tuple[Any, ...] | list[Any] | None = None, kwargs: dict[str, Any] | None = None
    ) -> EagerResult[Any]:
        """Run the call in this process, even with a broker configured; return its ``EagerResult``.

        The message takes the same path as on a worker: JSON round trip, registry lookup,
        allow-list. A failure is kept in the result, not raised.
        """
        message = self._message(tuple(args or ()), kwargs or {}, partial=False)
        return self.task.apply(json_round_trip(message), shadow=self.label)  # type: ignore[call-arg]

    def s(self, *args: Any, **kwargs: Any) -> Signature[Any]:
        """Return a Celery signature of the call for ``chain``, ``group`` and ``chord``.

        In a chain, the previous task's result is passed as the first argument.
        """
        return self._signature(self._message(args, kwargs, partial=True), immutable=False)

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Signature[Any]:
        """Return an immutable signature: in a chain, the previous result is not passed."""
        return self._signature(self._message(args, kwargs, partial=False), immutable=True)

    def _message(self, args: tuple[Any, ...], kwargs: dict[str, Any], *, partial: bool) -> tuple[Any, ...]:
        # A mutable signature may be given the previous result of a chain as its first
        # argument, so only a partial bind can be checked now; the worker binds it fully.
        signature = self._method.signature
        bind = signature.bind_partial if partial else signature.bind
        try:
            bind(None, *args, **kwargs)
            packed_args, packed_kwargs = pack(args, kwargs)
        except TypeError as error:
            raise TypeError(f"{self.label}(): {error}") from None
        return (self.importer_name, self.method_name, packed_args, packed_kwargs)

    def _signature(self, message: tuple[Any, ...], *, immutable: bool) -> Signature[Any]:
        return self.task.signature(message, immutable=immutable, **self._options({}))

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Celery options with the importer's defaults (name shown in logs, queue) filled in.

        Raises:
            ValueError: a countdown or ETA beyond ``settings.IMPORTER_MAX_COUNTDOWN``, which could
                outlive the broker's visibility timeout and run the task twice.
        """
        delay = options.get("countdown") or 0
        if options.get("eta") is not None:
            delay = max(delay, (options["eta"] - datetime.now(UTC)).total_seconds())
        if delay > settings.IMPORTER_MAX_COUNTDOWN:
            raise ValueError(
                f"{self.label}: a delay of {delay:.0f} s is beyond IMPORTER_MAX_COUNTDOWN "
                f"({settings.IMPORTER_MAX_COUNTDOWN} s)"
            )
        options = {"shadow": self.label, **options}
        if self.queue is not None:
            options.setdefault("queue", self.queue)
        return options

    def __repr__(self) -> str:
        return f"<TaskSender {self.label}>"


class BaseImporter(metaclass=ImporterMeta):
    """Base class of every importer. Importers are built without arguments on the worker."""

    abstract: ClassVar[bool] = True
    importer_name: ClassVar[str]
    task_methods: ClassVar[frozenset[str]]
    #: The Celery queue its tasks go to; ``None`` for Celery's default queue.
    queue: ClassVar[str | None] = None
