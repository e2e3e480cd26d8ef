"""The bounds on what a task message may carry and ask for, read from the settings and checked.

The sender checks them before anything is sent; a worker checks them again, since anything with
access to the broker can publish a message. ``settings.IMPORTER_MAX_ARGUMENT_DEPTH``,
``IMPORTER_MAX_MESSAGE_BYTES``, ``IMPORTER_MAX_WORKER_LOSSES`` and ``IMPORTER_MAX_COUNTDOWN``
set them; each accessor refuses a value outside the range it is safe in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = (
    "ENVELOPE_BYTES",
    "ENVELOPE_DEPTH",
    "check_delay",
    "max_argument_depth",
    "max_message_bytes",
    "max_message_depth",
    "max_queued_messages",
    "max_worker_losses",
)

#: The room a message's own parts take around its arguments: the importer's and method's names,
#: Celery's fields, and the signatures a chain or chord carries along. Arguments get the rest.
ENVELOPE_BYTES = 4096
#: The levels a message nests around an argument: the body, the method caller's arguments, and a
#: chord inside a chain inside a group (each signature is a dict holding lists).
ENVELOPE_DEPTH = 32
# A worker's main process pickles a message's decoded arguments for its pool; Python's stack
# gives out at about 485 levels, and the pool's own frames need their share.
_DEEPEST_ARGUMENT = 100


def _bounded(name: str, low: int, high: float) -> int:
    value = getattr(settings, name)
    if type(value) is not int or not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be an int from {low} to {high}, not {value!r}")
    return value


def max_argument_depth() -> int:
    """How deep an argument may nest: ``[[1]]`` is two levels (a tuple, set or dict is one, too).

    Raises:
        ImproperlyConfigured: ``IMPORTER_MAX_ARGUMENT_DEPTH`` is not an int from 1 to 100.
    """
    return _bounded("IMPORTER_MAX_ARGUMENT_DEPTH", 1, _DEEPEST_ARGUMENT)


def max_queued_messages() -> int:
    """How many messages of a queue may wait before a sender of many calls waits for the workers.

    Raises:
        ImproperlyConfigured: ``IMPORTER_MAX_QUEUED_MESSAGES`` is not an int from 10 to 10,000,000.
    """
    return _bounded("IMPORTER_MAX_QUEUED_MESSAGES", 10, 10_000_000)


def max_message_depth() -> int:
    """How deep a message's headers and body may nest as JSON, before a worker even looks inside.

    A tuple, set or frozenset travels as two JSON levels (a tagged object around a list), so an
    argument takes up to twice its depth; the envelope takes ``ENVELOPE_DEPTH`` more.

    Raises:
        ImproperlyConfigured: see ``max_argument_depth``.
    """
    return 2 * max_argument_depth() + ENVELOPE_DEPTH


def max_message_bytes() -> int:
    """How long a message body may be, in bytes of JSON; a worker refuses a longer one unread.

    Raises:
        ImproperlyConfigured: ``IMPORTER_MAX_MESSAGE_BYTES`` is not an int from 64 KiB to 64 MiB.
    """
    return _bounded("IMPORTER_MAX_MESSAGE_BYTES", 64 * 1024, 64 * 1024 * 1024)


def max_worker_losses() -> int:
    """How many times a message may kill the pool process running it before it is discarded.

    Raises:
        ImproperlyConfigured: ``IMPORTER_MAX_WORKER_LOSSES`` is not an int from 1 to 100.
    """
    return _bounded("IMPORTER_MAX_WORKER_LOSSES", 1, 100)


def check_delay(label: str, options: Mapping[str, Any]) -> None:
    """Check the ``countdown`` and ``eta`` of Celery ``options`` for the call ``label``.

    A delay longer than ``IMPORTER_MAX_COUNTDOWN`` could outlive the broker's visibility timeout,
    and the task would run twice.

    Raises:
        TypeError: ``countdown`` is not a number of seconds, or ``eta`` not a datetime.
        ValueError: ``countdown`` is not finite, ``eta`` is naive (without a timezone), or the
            delay is beyond ``IMPORTER_MAX_COUNTDOWN``.
    """
    delay = 0.0
    countdown = options.get("countdown")
    if countdown is not None:
        if type(countdown) not in (int, float):
            raise TypeError(
                f"{label}: countdown must be a number of seconds, not {type(countdown).__name__} "
                f"{countdown!r:.60}"
            )
        if not math.isfinite(countdown):
            raise ValueError(f"{label}: countdown must be a finite number of seconds, not {countdown!r}")
        delay = countdown
    eta = options.get("eta")
    if eta is not None:
        if not isinstance(eta, datetime):
            raise TypeError(
                f"{label}: eta must be a datetime with a timezone, e.g. datetime.now(UTC) + "
                f"timedelta(minutes=5), not {type(eta).__name__} {eta!r:.60}"
            )
        if eta.utcoffset() is None:
            raise ValueError(
                f"{label}: eta {eta.isoformat()} is naive: give it a timezone, e.g. "
                f"datetime.now(UTC) + timedelta(minutes=5)"
            )
        delay = max(delay, (eta - datetime.now(UTC)).total_seconds())
    if delay > settings.IMPORTER_MAX_COUNTDOWN:
        raise ValueError(
            f"{label}: a delay of {delay:.0f} s is beyond IMPORTER_MAX_COUNTDOWN "
            f"({settings.IMPORTER_MAX_COUNTDOWN} s)"
        )
