"""The bounds on what a task message may carry and ask for, read from the settings and checked.

The sender checks them before anything is sent; a worker checks them again, since anything with
access to the broker can publish a message. ``settings.IMPORTER_MAX_ARGUMENT_DEPTH``,
``IMPORTER_MAX_MESSAGE_BYTES`` and ``IMPORTER_MAX_WORKER_LOSSES`` set them; each accessor refuses
a value outside the range it is safe in.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = (
    "ENVELOPE_BYTES",
    "ENVELOPE_DEPTH",
    "max_argument_depth",
    "max_message_bytes",
    "max_message_depth",
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
