"""The method caller: the one Celery task that runs every importer task method."""

from __future__ import annotations

import inspect
from typing import Any

from celery import Task, shared_task
from celery.signals import task_postrun, task_prerun
from celery.utils.log import get_task_logger
from django.db import close_old_connections

from .arguments import unpack
from .exceptions import InvalidTaskCall, NotRegistered, TaskFailed
from .importer import ImporterMethod
from .registry import registry

__all__ = ("call_importer_method",)

logger = get_task_logger(__name__)


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


@shared_task(bind=True, name="core.call_importer_method", throws=(InvalidTaskCall, TaskFailed))
def call_importer_method(self: Task[Any, Any], *message: Any) -> Any:
    """Run ``importer_name.method_name(*args, **kwargs)`` on a new instance of the importer.

    The message is ``(importer_name, method_name, args, kwargs)``: a str, a str, a JSON
    list and a JSON object. In a chain, Celery puts the previous task's result in front;
    it becomes the method's first argument.

    Returns the method's return value.

    Raises:
        InvalidTaskCall: the message names an unknown or abstract importer, a method that
            is not a declared task method, or arguments that do not bind. Nothing runs.
    """
    try:
        importer, method, args, kwargs = _resolve(message)
    except InvalidTaskCall as error:
        logger.error("Refused %s[%s]: %s", self.name, self.request.id, error)
        raise
    return method.func(importer(), *args, **kwargs)


def _resolve(message: tuple[Any, ...]) -> tuple[type, ImporterMethod[..., Any], list[Any], dict[str, Any]]:
    """Check a message against the registry and the allow-list of task methods; nothing is called."""
    if len(message) not in (4, 5):
        raise InvalidTaskCall(
            f"expected (importer_name, method_name, args, kwargs), got {len(message)} arguments"
        )
    *chained, importer_name, method_name, args, kwargs = message
    if not (isinstance(importer_name, str) and isinstance(method_name, str)):
        raise InvalidTaskCall("importer_name and method_name must be strings")
    if not (isinstance(args, list) and isinstance(kwargs, dict)):
        raise InvalidTaskCall("args must be a JSON list and kwargs a JSON object")
    try:
        importer = registry[importer_name]
    except NotRegistered as error:
        raise InvalidTaskCall(str(error)) from None
    if importer.abstract:
        raise InvalidTaskCall(f"{importer_name} is an abstract importer and cannot run tasks")
    # The allow-list: only names the class declared as task methods, never any attribute.
    if method_name not in importer.task_methods:
        raise InvalidTaskCall(f"{importer_name}.{method_name!s:.80} is not a declared task method")
    method = inspect.getattr_static(importer, method_name)
    try:
        args, kwargs = unpack(args, kwargs)
        method.signature.bind(None, *chained, *args, **kwargs)
    except TypeError as error:
        raise InvalidTaskCall(f"{importer_name}.{method_name}(): {error}") from None
    return importer, method, [*chained, *args], kwargs
