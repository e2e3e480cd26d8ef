"""Django system checks of the settings ``core.bounds`` reads: a value out of its range stops start-up.

Registered at start-up (``core.apps``): ``manage.py check``, ``migrate`` and ``runserver`` run them,
and so does a worker as it starts (``core.worker.check_settings_at_start``): a bad value is named
once, before any message is read, rather than when the first message needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

from .bounds import max_argument_depth, max_message_bytes, max_queued_messages, max_worker_losses

__all__ = ("BOUNDS", "check_bounds")

BOUNDS = "importer_bounds"  # the checks' tag
ACCESSORS: tuple[Callable[[], int], ...] = (
    max_argument_depth,
    max_message_bytes,
    max_queued_messages,
    max_worker_losses,
)


@register(BOUNDS)
def check_bounds(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """One error for each bound set outside its range, naming the setting and the range."""
    errors: list[CheckMessage] = []
    for accessor in ACCESSORS:
        try:
            accessor()
        except ImproperlyConfigured as error:
            errors.append(Error(str(error), id="core.E001"))
    return errors
