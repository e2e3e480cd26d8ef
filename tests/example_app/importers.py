"""Importers the tests dispatch, in the process and on a real worker.

The hierarchy is the original design's: each level defines ``do_something`` as a task
method, and ``Concrete`` adds levels that inherit or override without the decorator.
Each method reports which class's code ran on which instance, so a test can tell.
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, Any, ClassVar

from celery.exceptions import SoftTimeLimitExceeded

from core.importer import BaseImporter, as_task
from importers.importers import WikidataImporter

if TYPE_CHECKING:
    from core.exceptions import PoisonMessage
    from core.message import Message


def report(importer: BaseImporter, code: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"instance": type(importer).__name__, "code": code, "args": list(args), "kwargs": kwargs}


class BaseExample(BaseImporter):
    @as_task
    def do_something(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return report(self, "BaseExample", *args, **kwargs)


class ManInTheMiddle(BaseExample):
    @as_task
    def do_something(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return report(self, "ManInTheMiddle", *args, **kwargs)


class ConcreteImporter(ManInTheMiddle):
    @as_task
    def do_something(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return report(self, "ConcreteImporter", *args, **kwargs)


class InheritingImporter(ConcreteImporter):
    """Does not override ``do_something``: dispatches as itself, runs the inherited code."""


class UndecoratedOverride(ConcreteImporter):
    # mypy sees a plain function replace a task method; the metaclass keeps it a task method.
    def do_something(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return report(self, "UndecoratedOverride", *args, **kwargs)


class Recorder(BaseImporter):
    """Task methods with fixed signatures and side effects a test can look for.

    Every call is appended to ``Recorder.calls`` and, where ``RECORDER_LOG`` names a file
    (as it does for the test worker), to that file, one line each.
    """

    calls: ClassVar[list[tuple[str, Any]]] = []

    def __init__(self) -> None:
        record("__init__", None)

    @as_task
    def echo(self, value: Any, *, kind: str = "any") -> dict[str, Any]:
        record("echo", value)
        return {"type": type(value).__name__, "value": repr(value), "kind": kind}

    @as_task
    def add(self, left: int, right: int) -> int:
        return left + right

    @as_task(priority=9, expires=60)
    def fail(self, message: str) -> None:
        raise RuntimeError(message)

    def undeclared(self) -> None:
        record("undeclared", None)

    def on_ping(self, sender: Any, **kwargs: Any) -> str:
        """A signal receiver."""
        record("on_ping", sender)
        return "pong"

    def _private(self) -> None:
        record("_private", None)


class AbstractExample(BaseImporter):
    abstract = True

    @as_task
    def do_something(self) -> str:
        return "abstract code ran"


def record(event: str, value: Any) -> None:
    Recorder.calls.append((event, value))
    log = os.environ.get("RECORDER_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as file:
            file.write(f"{event} {value!r}\n")


class Misbehaving(BaseImporter):
    """Task methods that misbehave on purpose: outstay their time limits, kill their own process."""

    @as_task
    def stall(self, seconds: float) -> str:
        """Sleep ``seconds``, ignoring the soft time limit: only the hard one stops it."""
        return stall(seconds)

    @as_task(soft_time_limit=1, time_limit=2)
    def stall_briefly(self, seconds: float) -> str:
        """``stall``, with time limits of its own."""
        return stall(seconds)

    @as_task
    def die(self, marker: str) -> None:
        """Kill the process running it, as the out-of-memory killer would."""
        record("die", marker)
        os.kill(os.getpid(), signal.SIGKILL)

    @classmethod
    def poisoned(cls, message: Message, error: PoisonMessage) -> None:
        record("poisoned", (message.label, message.args, error.losses, error.task_id))


class LethalWikidataImporter(WikidataImporter):
    """The Wikidata importer, whose imports kill the process running them."""

    # mypy sees plain functions replace task methods; the metaclass keeps them task methods.
    def import_single(self, wikidata_id: str, run_id: int | None = None) -> str:  # type: ignore[override]
        os.kill(os.getpid(), signal.SIGKILL)
        return "never"

    def import_batch(self, wikidata_ids: list[str], run_id: int | None = None) -> dict[str, str]:  # type: ignore[override]
        os.kill(os.getpid(), signal.SIGKILL)
        return {}


def stall(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            record("soft time limit", None)
    return "done"
