"""The method caller: the one Celery task that runs every importer task method."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.result import AsyncResult
from celery.signals import task_postrun, task_prerun
from celery.utils.log import get_task_logger
from django.conf import settings
from django.db import close_old_connections

from .bounds import check_delay, max_worker_losses
from .database import UNAVAILABLE
from .exceptions import InvalidTaskCall, PoisonMessage, TaskFailed
from .message import Message
from .receiving import worker_losses

__all__ = ("call_importer_method",)

logger = get_task_logger(__name__)

# Line breaks and other control characters, escaped as repr() escapes them.
_ESCAPES = {code: repr(chr(code))[1:-1] for code in (*range(32), *range(127, 160), 0x2028, 0x2029)}


def one_line(text: str) -> str:
    """Return ``text`` fit for one line of a log: its control characters escaped (``\\n`` for a newline).

    What a message says goes into the worker's log; it must not be able to write lines of its own.
    """
    return text.translate(_ESCAPES)


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(task: Task[Any, Any] | None = None, **kwargs: Any) -> None:
    """Drop database connections that are broken or past CONN_MAX_AGE, as Django does per request.

    Workers keep their connection between tasks (CELERY_DB_REUSE_MAX); this keeps a connection
    broken by a database restart from failing the tasks that follow. An eager task runs inside
    its caller's transaction, whose connection is not ours to close.
    """
    if task is not None and not getattr(task.request, "is_eager", False):
        close_old_connections()


class MethodCaller(Task):  # type: ignore[type-arg]
    """The method caller's class: Celery's task, behind the checks of ``core.receiving`` on the worker."""

    #: What a worker's main process does with each message (see ``core.receiving``).
    Strategy = "core.receiving:method_caller_strategy"
    #: And with a pool process lost while running it.
    Request = "core.receiving:MethodCallRequest"

    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: str | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Celery's ``apply_async``, after checking the ``countdown`` and ``eta``.

        Every way of sending ends here: ``as_task``, a signature (``.s()``, ``.si()``, ``.set()``)
        and a chain, group or chord of them, a retry.

        Raises:
            TypeError, ValueError: see ``core.bounds.check_delay``.
        """
        check_delay(shadow or self.name, options)
        return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow, **options)


@shared_task(
    bind=True,
    base=MethodCaller,
    name="core.call_importer_method",
    throws=(InvalidTaskCall, TaskFailed, PoisonMessage),
)
def call_importer_method(self: Task[Any, Any], *body: Any) -> Any:
    """Run ``importer_name.method_name(*args, **kwargs)`` on a new instance of the importer.

    ``body`` is a ``core.message.Message`` as it travels: ``(importer_name, method_name, args,
    kwargs)``, with a chain's previous result in front when there is one.

    Returns the method's return value.

    When the database is unavailable (the method could not even record its failure), the call
    is sent again with a growing countdown, up to ``IMPORTER_DATABASE_RETRIES`` times, rather than
    acknowledged and lost.

    A call whose task has killed the pool process running it ``IMPORTER_MAX_WORKER_LOSSES``
    times (``core.receiving`` counts them) does not run: its importer's ``poisoned()`` hook does.

    Raises:
        InvalidTaskCall: the message names an unknown or abstract importer, a method that
            is not a declared task method, or arguments that do not bind. Nothing runs.
        PoisonMessage: the call killed its pool process too often; the hook ran instead.
        celery.exceptions.Retry: the database is unavailable; the call was sent again.
    """
    try:
        message = Message.decode(body)
    except InvalidTaskCall as error:
        logger.error("Refused %s[%s]: %s", self.name, self.request.id, one_line(str(error)))
        raise
    losses = worker_losses(self.request.headers)
    try:
        if losses >= max_worker_losses():
            poison = PoisonMessage(
                f"its task killed the pool process running it {losses} times (IMPORTER_MAX_WORKER_LOSSES)",
                task_id=self.request.id, losses=losses,
            )  # fmt: skip
            _poisoned(message, poison)
            raise poison
        logger.info("runs %s", message.call())  # which call: the id a task imports, for one
        return message.run(task_id=self.request.id)
    except UNAVAILABLE as error:
        if self.request.is_eager:
            raise  # in process, the caller is right here to see it
        close_old_connections()
        countdown = min(2**self.request.retries, settings.IMPORTER_DATABASE_RETRY_MAX_COUNTDOWN)
        logger.warning(
            "%s[%s]: the database is unavailable (%s); sending it again in %s s",
            message.label, self.request.id, error, countdown,
        )  # fmt: skip
        raise self.retry(
            exc=error, countdown=countdown, max_retries=settings.IMPORTER_DATABASE_RETRIES
        ) from error


def _poisoned(message: Message, error: PoisonMessage) -> None:
    """Log ``error``, and give the importer its chance to record the failure of the call.

    Raises:
        UNAVAILABLE: the database is unavailable to the hook; the caller sends the call again.
    """
    logger.error("Discarded %s[%s]: %s", message.label, error.task_id, error)
    try:
        message.importer.poisoned(message, error)
    except UNAVAILABLE:
        raise
    except Exception:  # the importer had its chance; the message is discarded all the same
        logger.exception("%s[%s]: the importer's poisoned() failed", message.label, error.task_id)
