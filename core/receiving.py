"""A worker's main process receiving a method-caller message: the checks it passes before the pool.

The main process decodes each message and pickles it for a pool process. Nothing in a message
can be trusted there: a body nested some 485 levels deep exhausts Python's stack while it is
pickled, which Celery treats as fatal; the worker exits, the message goes back to the queue, and
every worker that takes it dies in turn. So the method caller's strategy refuses, before Celery
decodes or builds anything, a message that is not safe to handle: a body larger than
``IMPORTER_MAX_MESSAGE_BYTES`` (left unread), one that does not decode or is not Celery's
``[args, kwargs, embed]``, headers or a body nested deeper than
``core.bounds.max_message_depth()``, or an ``eta`` further away than ``IMPORTER_MAX_COUNTDOWN``.
A refused message is logged in one line, its failure
stored for whoever waits on its result, and rejected without requeue: discarded, or
dead-lettered where the queue has a dead-letter exchange. The worker goes on.

A message that passes has two headers made safe before Celery reads them: ``shadow``, the name
Celery logs the task under, is quoted (``repr``) unless it is a dotted name, so that a forged one
cannot write lines of its own into the worker's log; and ``timelimit`` can only lower the time
limits, never lift them above the method's ``@as_task`` options or ``CELERY_TASK_TIME_LIMIT``
and ``CELERY_TASK_SOFT_TIME_LIMIT``.

Then, should the message's task kill the pool process running it (out of memory, ``os._exit``,
a crash in C), ``MethodCallRequest`` sees it happen, in the main process, and counts it. With
``task_reject_on_worker_lost`` Celery would put the message back as it was, and a message that
kills every process that runs it would come back forever. Instead the message is sent again with
the count in a header of its own, ``importer_worker_losses``, and the original acknowledged: the
count travels with the message, so it holds across workers and restarts, on any broker, with no
store to keep or expire. (RabbitMQ counts deliveries itself only in quorum queues, in
``x-delivery-count``, and counts every redelivery, not only lost workers; classic queues and
Redis say no more than ``redelivered``.) Once the count reaches ``IMPORTER_MAX_WORKER_LOSSES``
the method caller does not run the method but calls its importer's ``poisoned()`` hook, and the
message is discarded; should that kill its process too, the message is discarded at once.
A forged count can only make that happen sooner.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from billiard.einfo import ExceptionWithTraceback  # type: ignore[attr-defined]  # not in the stubs
from billiard.exceptions import WorkerLostError
from celery import states
from celery.worker import state  # type: ignore[attr-defined]  # not in the stubs
from celery.worker.request import Request

# The stubs do not have the default strategy.
from celery.worker.strategy import default as default_strategy  # type: ignore[attr-defined]
from django.conf import settings
from kombu import Producer

from .bounds import max_message_bytes, max_message_depth, max_worker_losses
from .exceptions import InvalidTaskCall, PoisonMessage
from .registry import registry

__all__ = ("LOSSES_HEADER", "MethodCallRequest", "method_caller_strategy", "worker_losses")

#: The header that counts the pool processes a message's task has killed.
LOSSES_HEADER = "importer_worker_losses"

logger = logging.getLogger(__name__)

# Celery's task ids are uuids; a caller may choose its own, but not one that could break a log line.
_TASK_ID = re.compile(r"[!-~]{1,255}")
# How the sender names a call in the shadow header: "Importer.method".
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII)


def method_caller_strategy(task: Any, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Return the method caller's handler of each message: Celery's default one, behind the checks.

    Celery calls it once per worker (``Task.Strategy``); the handler it returns runs in the
    worker's main process for every message of the task, before Celery's own handling, which
    decodes the body and builds a request for the pool. A strategy is the only hook that sees
    the message before that: a ``Task.Request`` class is built from the decoded body.
    """
    handle = default_strategy(task, app, consumer, **options)
    connection_errors = consumer.connection_errors

    def task_message_handler(message: Any, body: Any, ack: Any, reject: Any, *rest: Any, **more: Any) -> Any:
        try:
            reason = _refusal(message, body)
            if reason is None:
                _make_safe(message.headers, message.payload[0], app.conf)
        except Exception as error:  # never let a message stop the worker
            reason = f"it could not be checked: {type(error).__name__}"
        if reason is None:
            return handle(message, body, ack, reject, *rest, **more)
        task_id = message.headers.get("id") if isinstance(message.headers, dict) else None
        if not (isinstance(task_id, str) and _TASK_ID.fullmatch(task_id)):
            task_id = None
        logger.error("Refused %s[%s] before its pool: %s", task.name, task_id, reason)
        reject(logger, connection_errors, False)
        if task_id is not None and not task.ignore_result:
            _store_failure(task, task_id, InvalidTaskCall(reason))
        return None

    return task_message_handler


def _store_failure(task: Any, task_id: str, error: Exception) -> None:
    """Store the failure for whoever waits on the result; a result backend that fails is only logged."""
    try:
        # Only the id: a refused message's canvas (callbacks, chord) is not to be acted on.
        task.backend.store_result(task_id, error, states.FAILURE)
    except Exception as failure:
        logger.warning("Could not store the failure of %s[%s]: %r", task.name, task_id, failure)


def _refusal(message: Any, body: Any) -> str | None:
    """Why ``message`` is not safe to hand on to Celery, or None when it is."""
    headers = message.headers
    if body is not None or not isinstance(headers, dict):
        # The consumer decodes only a message of Celery's protocol 1 before its strategy.
        return "it is not a message of Celery's task protocol 2"
    task_id = headers.get("id")
    if not (isinstance(task_id, str) and _TASK_ID.fullmatch(task_id)):
        return f"its task id {task_id!r:.100} is not 1 to 255 printable ASCII characters"
    eta = _eta_refusal(headers.get("eta"))
    if eta is not None:
        return eta
    size, limit = len(message.body), max_message_bytes()
    if size > limit:
        return f"its body is {size:,} bytes, beyond IMPORTER_MAX_MESSAGE_BYTES ({limit:,})"
    try:
        payload = message.decode()  # kept in the message, where Celery finds it
    except Exception as error:  # a decoder's errors are many (RecursionError among them): all refuse
        return f"its body cannot be decoded: {type(error).__name__}: {str(error)[:200]!r}"
    if not (
        isinstance(payload, list)
        and len(payload) == 3
        and isinstance(payload[0], list)
        and isinstance(payload[1], dict)
        and isinstance(payload[2], dict)
    ):
        return "its body is not [args, kwargs, embed]"
    return _too_deep(headers, message.properties, payload)


# Clocks of the sender and the worker may disagree by this much.
_CLOCK_SKEW = 60.0


def _eta_refusal(eta: Any) -> str | None:
    """Why an ``eta`` header is refused: a worker holds such a message in memory until then.

    The sender refuses a delay beyond ``IMPORTER_MAX_COUNTDOWN`` (``core.bounds.check_delay``);
    a message published straight to the broker with an eta a year away would otherwise be held
    by a worker for a year, and delivered again by Redis after every visibility timeout.
    """
    if eta is None:
        return None
    try:
        when = datetime.fromisoformat(eta) if isinstance(eta, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        return f"its eta {eta!r:.60} is not an ISO 8601 time with a time zone"
    if (when - datetime.now(UTC)).total_seconds() > settings.IMPORTER_MAX_COUNTDOWN + _CLOCK_SKEW:
        return f"its eta is more than IMPORTER_MAX_COUNTDOWN ({settings.IMPORTER_MAX_COUNTDOWN} s) away"
    return None


def _make_safe(headers: dict[str, Any], args: list[Any], conf: Any) -> None:
    """Quote a forged ``shadow`` header, and bound the ``timelimit`` header, in place."""
    shadow = headers.get("shadow")
    if shadow and not (isinstance(shadow, str) and len(shadow) <= 200 and _DOTTED_NAME.fullmatch(shadow)):
        headers["shadow"] = f"{shadow!r:.200}"
    options = _declared_options(args)
    ceilings = (
        options.get("time_limit", conf.task_time_limit),
        options.get("soft_time_limit", conf.task_soft_time_limit),
    )
    asked = headers.get("timelimit")
    if not (isinstance(asked, (list, tuple)) and len(asked) == 2):
        asked = [None, None]
    headers["timelimit"] = [_lower(limit, ceiling) for limit, ceiling in zip(asked, ceilings, strict=True)]


def _declared_options(args: list[Any]) -> Mapping[str, Any]:
    """The ``@as_task`` options of the method the message calls; none for a message that names none.

    ``args`` is the method caller's: ``[importer, method, args, kwargs]``, after a chain's result.
    """
    if len(args) not in (4, 5):
        return {}
    importer_name, method_name = args[-4:-2]
    importer = registry.get(importer_name) if isinstance(importer_name, str) else None
    method = importer.task_methods.get(method_name) if importer and isinstance(method_name, str) else None
    return method.options if method is not None else {}


def _lower(asked: Any, ceiling: float | None) -> float | None:
    """The time limit ``asked`` for, if it is a number of seconds below ``ceiling``; else ``ceiling``."""
    if type(asked) not in (int, float) or not 0 < asked < math.inf:
        return ceiling
    return float(asked) if ceiling is None else min(float(asked), ceiling)


def _too_deep(*values: Any) -> str | None:
    """Why ``values`` are not safe to pickle: nested deeper than the limit; None if they are.

    Walked with a stack of its own, not recursion, since the depth is what is in question.
    """
    limit = max_message_depth()
    pending = [(value, 1) for value in values if isinstance(value, (dict, list, tuple))]
    while pending:
        value, depth = pending.pop()
        if depth > limit:
            return f"it nests deeper than {limit} levels (2 x IMPORTER_MAX_ARGUMENT_DEPTH + 32)"
        children = value.values() if isinstance(value, dict) else value
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return None


def worker_losses(headers: Mapping[str, Any] | None) -> int:
    """How many pool processes the message with ``headers`` has killed so far (0 for a forged count)."""
    count = (headers or {}).get(LOSSES_HEADER)
    return count if type(count) is int and count >= 0 else 0


class MethodCallRequest(Request):
    """A method-caller message in a worker's main process, which counts the pool processes it kills."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        """Celery's handling of a failed task, except for a pool process lost while running it.

        That is counted, and the message sent again with its count, or discarded once the
        count has reached ``IMPORTER_MAX_WORKER_LOSSES`` (see the module).
        """
        error = exc_info.exception
        if isinstance(error, ExceptionWithTraceback):
            error = error.exc
        counted = (
            isinstance(error, WorkerLostError)
            and self.task.acks_late
            and self.task.reject_on_worker_lost
            and not self.acknowledged
            and not state.should_terminate  # a cold shutdown is not the message's doing
        )
        if not counted:
            return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        state.task_ready(self)
        losses, limit = worker_losses(self.request_dict), max_worker_losses()
        if losses >= limit:  # its importer's hook was running: it killed its process too
            self._discard(PoisonMessage(f"its pool process was lost again ({error})", task_id=self.id))
            return None
        try:
            self._send_again(losses + 1)
        except Exception as failure:
            logger.warning(
                "%s[%s]: its pool process was lost (%s), and it could not be sent again with the count (%r): "
                "requeued as it was",
                self.task_name, self.id, error, failure,
            )  # fmt: skip
            self.reject(requeue=True)
            return None
        self.acknowledge()
        then = "for its importer to record the failure" if losses + 1 >= limit else "to run again"
        logger.warning(
            "%s[%s]: its pool process was lost (%s of %s, IMPORTER_MAX_WORKER_LOSSES: %s); sent again %s",
            self.task_name, self.id, losses + 1, limit, error, then,
        )  # fmt: skip
        return None

    def _send_again(self, losses: int) -> None:
        """Publish the message again as it came, with ``losses`` in its count header."""
        message, app = self.message, self.task.app
        properties = message.properties or {}
        # A connection of its own, not the app's pool: a pool process forked while a pooled
        # connection is open closes it, as its own, on start, and the broker drops it.
        with app.connection_for_write() as connection:
            Producer(connection).publish(
                message.body,
                exchange=self.delivery_info.get("exchange") or "",
                routing_key=self.delivery_info.get("routing_key"),
                headers={**message.headers, LOSSES_HEADER: losses},
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                retry=True,
                retry_policy=app.conf.task_publish_retry_policy,
                **{name: properties[name] for name in _KEPT_PROPERTIES if properties.get(name) is not None},
            )

    def _discard(self, error: PoisonMessage) -> None:
        logger.error("Discarded %s[%s]: %s", self.task_name, self.id, error)
        self.reject(requeue=False)
        if self.store_errors:
            _store_failure(self.task, self.id, error)


# The message's properties that a copy keeps; the others are the broker's, of this delivery.
_KEPT_PROPERTIES = ("priority", "correlation_id", "reply_to", "delivery_mode")
