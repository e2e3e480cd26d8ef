"""Polling until something is true: the one wait of the tests and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["TIMEOUT", "WaitTimeout", "wait_until"]

T = TypeVar("T")

# The longest a test waits for one thing before it fails, unless it says otherwise.
TIMEOUT = 30.0


class WaitTimeout(AssertionError, TimeoutError):
    """A wait gave up: a failed assertion to pytest, and a ``TimeoutError`` to any other caller."""


def wait_until(
    condition: Callable[[], T],
    timeout: float = TIMEOUT,
    why: Callable[[], str] = lambda: "",
    interval: float = 0.05,
) -> T:
    """Poll ``condition`` every ``interval`` seconds until it returns something true; return that.

    The condition is asked once more after the deadline, so that a slow last poll is not lost.

    Raises:
        WaitTimeout: it was still false after ``timeout`` seconds; the message names the condition
            and adds ``why()``, which should say what state things were left in.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            name = getattr(condition, "__qualname__", repr(condition))
            raise WaitTimeout(f"gave up after {timeout:g} s waiting for {name}\n{why()}".rstrip())
        time.sleep(interval)
