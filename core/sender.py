"""Sending task method calls: to the workers through the broker, or run here, in process.

Transport is the core's business, not the importers': an importer sends with ``.as_task``
(``send_many`` for many calls through one broker connection), and whoever starts the work
decides where it runs, with the ``in_process()`` scope rather than a parameter of every method.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec

from celery import current_app
from celery.result import allow_join_result
from celery.utils import uuid
from django.db import connections, transaction
from kombu.exceptions import OperationalError

from .arguments import json_round_trip
from .backlog import QueueBound
from .bounds import check_delay
from .exceptions import EnqueueFailed
from .message import Message
from .redis_urls import safe_url
from .tasks import call_importer_method

if TYPE_CHECKING:
    from celery.canvas import Signature
    from celery.result import AsyncResult, EagerResult

    from .importer import BaseImporter, TaskMethod

__all__ = ("TaskSender", "in_process", "run_on_threads", "runs_in_process")

P = ParamSpec("P")

_in_process: contextvars.ContextVar[bool] = contextvars.ContextVar("in_process", default=False)


@contextlib.contextmanager
def in_process() -> Iterator[None]:
    """Within this scope, every call sent with ``.as_task`` runs here, even with a broker configured.

    It runs through the method caller, as on a worker (JSON round trip, registry, allow-list),
    and so do the calls it sends in turn.
    """
    token = _in_process.set(True)
    try:
        yield
    finally:
        _in_process.reset(token)


def runs_in_process() -> bool:
    """Whether calls sent now run in this process: inside ``in_process()``, or with no broker."""
    return _in_process.get() or bool(current_app.conf.task_always_eager)


def run_on_threads(
    call: Callable[[dict[str, Any]], Any], calls: Iterable[Mapping[str, Any]], threads: int
) -> int:
    """Call ``call`` with each item of ``calls`` on ``threads`` threads, in this context; return how many.

    ``calls`` is consumed as the threads take them, never more than ``threads`` ahead. Each
    thread closes its database connections when it ends. After a call raises, no other starts,
    and the first error is raised once the running ones have ended.
    """
    stop = object()
    work: queue.Queue[Any] = queue.Queue(maxsize=threads)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            while (item := work.get()) is not stop:
                if not errors:
                    try:
                        call(item)
                    except BaseException as error:
                        errors.append(error)
        finally:
            connections.close_all()

    # Each thread runs in a copy of this context: in_process() holds there too.
    workers = [
        threading.Thread(target=contextvars.copy_context().run, args=(serve,), daemon=True)
        for _ in range(threads)
    ]
    given = 0
    # Celery runs each eager call in denied_join_result(), which saves and restores a global flag:
    # calls ending out of order on threads can leave it set, and then every later AsyncResult.get()
    # in this process raises "Never call result.get() within a task!". Restored once all ended.
    with allow_join_result():
        for worker in workers:
            worker.start()
        try:
            for kwargs in calls:
                if errors:
                    break
                work.put(dict(kwargs))
                given += 1
        finally:
            for _ in workers:
                work.put(stop)
            for worker in workers:
                worker.join()
    if errors:
        raise errors[0]
    return given


class TaskSender(Generic[P]):
    """Sends one task method of one importer class to the method caller.

    What ``obj.method.as_task`` is. Every way of sending checks the call first (a concrete
    importer; arguments that bind to the method's signature, match its annotations and survive
    the JSON trip unchanged) and raises ``TypeError`` before anything is sent.
    """

    def __init__(self, importer: type[BaseImporter], method_name: str) -> None:
        self.importer = importer
        self.method_name = method_name
        # What every call of this sender has in common: its label and declaration.
        self._call = Message(importer, method_name)

    @property
    def label(self) -> str:
        """``"<importer key>.<method>"``: how the call shows in worker logs and monitoring."""
        return self._call.label

    @property
    def method(self) -> TaskMethod:
        """The task method's declaration: signature, argument types, default options."""
        return self._call.method

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
        """Send the call with Celery's options (``countdown``, ``queue``, ...); return its ``AsyncResult``.

        Options override the method's declared defaults. Inside ``in_process()`` the call runs
        here (see ``apply``), where Celery's options have no meaning. Inside a transaction it is
        sent when the transaction commits.

        Raises:
            TypeError: the call cannot be sent (see the class), or ``countdown`` or ``eta`` is
                not a number of seconds or a datetime.
            ValueError: a naive ``eta``, or a countdown or ETA beyond ``IMPORTER_MAX_COUNTDOWN``.
            kombu.exceptions.OperationalError: the broker could not be reached.
        """
        if _in_process.get():
            return self.apply(args, kwargs)
        message = self._encode(args, kwargs)
        options = self._options(options)
        # What monitoring shows of the arguments. The message holds only basic data, so plain
        # repr() is safe, and an order of magnitude cheaper than Celery's saferepr.
        options.setdefault("argsrepr", repr(message)[:1024])
        options.setdefault("kwargsrepr", "{}")
        if not current_app.conf.task_always_eager and transaction.get_connection().in_atomic_block:
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
        allow-list. A failure is kept in the result, not raised. Calls it sends run here too.
        """
        message = json_round_trip(self._encode(args, kwargs))
        with in_process():
            return call_importer_method.apply(message, shadow=self.label)  # type: ignore[call-arg]

    def send_many(
        self,
        calls: Iterable[Mapping[str, Any]],
        threads: int = 1,
        ended: Callable[[Mapping[str, Any], AsyncResult[Any]], None] | None = None,
    ) -> int:
        """Send one call per item of ``calls``, each the keyword arguments of a call; return how many.

        ``calls`` is consumed lazily, so a stream of a million calls needs no memory for them.
        They go out through one broker connection, rather than one per call, and while
        ``IMPORTER_MAX_QUEUED_MESSAGES`` wait in the queue, this waits for the workers to take
        some (``core.backlog``): any number of calls fits a small Redis. When they run in
        this process, up to ``threads`` run at once, each thread with a database connection of
        its own (for calls that mostly wait, on requests say); but one at a time inside a
        transaction, whose rows other connections would not see; ``ended``, when given, is called
        with each call's keyword arguments and its ``EagerResult`` as it ends, on the thread that
        ran it (read ``.result``: Celery may refuse ``.get()`` there while other calls run).

        Raises:
            TypeError: an item cannot be sent (see the class); the ones before it were.
            EnqueueFailed: the broker could not be reached; ``sent`` says how many went out.
        """
        if runs_in_process():

            def run(kwargs: Mapping[str, Any]) -> None:
                result = self.apply_async(kwargs=dict(kwargs))
                if ended is not None:
                    ended(kwargs, result)

            if threads > 1 and not transaction.get_connection().in_atomic_block:
                return run_on_threads(run, calls, threads)
            sent = 0
            for kwargs in calls:
                run(kwargs)
                sent += 1
            return sent
        sent = 0
        # mypy: the stubs do not know producer_or_acquire.
        pool: Any = current_app
        with pool.producer_or_acquire() as producer:
            bound = QueueBound(
                producer, self._options({}).get("queue") or current_app.conf.task_default_queue
            )
            try:
                for kwargs in calls:
                    bound.take()
                    self.apply_async(kwargs=dict(kwargs), producer=producer)
                    sent += 1
            # OperationalError: a publish failed after Celery's retries; a connection error: asking
            # how many messages wait did (it is not retried: the publish after it would fail too).
            except (OperationalError, *producer.connection.connection_errors) as error:
                raise EnqueueFailed(sent, error, safe_url(current_app.conf.broker_url)) from error
        return sent

    def s(self, *args: Any, **kwargs: Any) -> Signature[Any]:
        """Return a Celery signature of the call for ``chain``, ``group`` and ``chord``.

        In a chain, the previous task's result is passed as the first argument.
        """
        return self._signature(self._encode(args, kwargs, partial=True), immutable=False)

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Signature[Any]:
        """Return an immutable signature: in a chain, the previous result is not passed."""
        return self._signature(self._encode(args, kwargs), immutable=True)

    def _encode(
        self, args: tuple[Any, ...] | list[Any] | None, kwargs: dict[str, Any] | None, partial: bool = False
    ) -> tuple[Any, ...]:
        message = Message(self.importer, self.method_name, tuple(args or ()), kwargs or {})
        return message.encode(partial=partial)

    def _signature(self, message: tuple[Any, ...], *, immutable: bool) -> Signature[Any]:
        return call_importer_method.signature(message, immutable=immutable, **self._options({}))

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Celery options: the call's, over the method's declared ones, over the importer's queue.

        Raises:
            TypeError, ValueError: a countdown or ETA that is not a number of seconds or an aware
                datetime, or beyond ``IMPORTER_MAX_COUNTDOWN`` (see ``core.bounds.check_delay``).
        """
        options = {"shadow": self.label, **self.method.options, **options}
        if self.importer.queue is not None:
            options.setdefault("queue", self.importer.queue)
        # Here as well as in the method caller's apply_async: a call sent at commit is checked now.
        check_delay(self.label, options)
        return options

    def __repr__(self) -> str:
        return f"<TaskSender {self.label}>"
