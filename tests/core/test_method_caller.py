"""The method caller is an allow-list: only declared task methods of registered, concrete importers run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from core.exceptions import InvalidTaskCall, PoisonMessage
from core.importer import BaseImporter, as_task
from core.message import Message
from core.receiving import LOSSES_HEADER
from core.tasks import call_importer_method
from tests.example_app.importers import Recorder, record


@pytest.fixture(autouse=True)
def fresh_recorder() -> Iterator[None]:
    Recorder.calls.clear()
    yield
    Recorder.calls.clear()


REFUSED: list[tuple[tuple[Any, ...], str]] = [
    (("Nope", "echo", [1], {}), "No importer registered under 'Nope'"),
    (("Recorderr", "echo", [1], {}), "Did you mean 'Recorder'?"),
    (("AbstractExample", "do_something", [], {}), "AbstractExample is an abstract importer"),
    (("BaseImporter", "__init__", [], {}), "BaseImporter is an abstract importer"),
    (("Recorder", "__init__", [], {}), "'__init__' is not a declared task method of Recorder"),
    (("Recorder", "__class__", [], {}), "'__class__' is not a declared task method of Recorder"),
    (("Recorder", "__reduce__", [], {}), "not a declared task method"),
    (("Recorder", "_private", [], {}), "'_private' is not a declared task method of Recorder"),
    (("Recorder", "undeclared", [], {}), "'undeclared' is not a declared task method of Recorder"),
    (("Recorder", "calls", [], {}), "'calls' is not a declared task method of Recorder"),
    (("Recorder", "mro", [], {}), "'mro' is not a declared task method of Recorder"),
    (("Recorder", "add", [1], {}), "Recorder.add(): missing a required argument: 'right'"),
    (("Recorder", "add", [1, True], {}), "Recorder.add(): right is a bool (True), expected int"),
    (("Recorder", "echo", [1], {"kind": None}), "Recorder.echo(): kind is None, expected str"),
    (("Recorder", "add", [1, 2], {"extra": 1}), "unexpected keyword argument 'extra'"),
    (("Recorder", "echo", [{"__set__": [[1]]}], {}), "unhashable"),
    (("Recorder", "echo", {"value": 1}, {}), "args must be a JSON list"),
    (("Recorder", "echo", [1], [1]), "kwargs a JSON object"),
    ((1, "echo", [1], {}), "must be strings"),
    (("Recorder", "echo", [1]), "expected (importer_name, method_name, args, kwargs), got 3"),
    ((), "got 0 arguments"),
]


@pytest.mark.parametrize(("message", "reason"), REFUSED, ids=[repr(m) for m, _ in REFUSED])
def test_a_message_that_must_not_run_fails_clearly_and_changes_nothing(
    message: tuple[Any, ...], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="core.tasks"):
        result = call_importer_method.delay(*message)
    assert result.failed()
    assert isinstance(result.result, InvalidTaskCall)
    assert reason in str(result.result)
    assert Recorder.calls == []  # not even an instance was made
    assert any(reason in record.getMessage() for record in caplog.records)


def test_invalid_calls_are_not_retried() -> None:
    result = call_importer_method.delay("Recorder", "undeclared", [], {})
    assert result.failed()
    assert not getattr(call_importer_method, "autoretry_for", ())
    # Expected errors: logged by the caller as one line, not as a traceback by Celery.
    assert InvalidTaskCall in call_importer_method.throws


def test_a_valid_message_makes_an_instance_and_calls_the_method() -> None:
    result = call_importer_method.delay("Recorder", "echo", [{"__tuple__": [1, 2]}], {"kind": "raw"})
    assert result.get() == {"type": "tuple", "value": "(1, 2)", "kind": "raw"}
    assert Recorder.calls == [("__init__", None), ("echo", (1, 2))]


def count(losses: Any) -> Any:
    """The headers of a message that has killed ``losses`` pool processes (Celery's stubs want str values)."""
    return {LOSSES_HEADER: losses}


def test_a_call_that_killed_its_pool_process_too_often_runs_its_importers_hook_instead() -> None:
    # As the worker's main process sends it again after the third lost pool process.
    result = call_importer_method.apply(("Misbehaving", "stall", [0], {}), headers=count(3))
    assert result.failed()
    assert isinstance(result.result, PoisonMessage)
    assert str(result.result) == (
        "its task killed the pool process running it 3 times (IMPORTER_MAX_WORKER_LOSSES)"
    )
    assert (result.result.task_id, result.result.losses) == (result.id, 3)
    assert Recorder.calls == [("poisoned", ("Misbehaving.stall", (0,), 3, result.id))]  # and stall never ran


@pytest.mark.parametrize("losses", [2, -5, "9", True, None, [3]])
def test_a_count_below_the_limit_or_not_a_count_runs_the_method(losses: Any) -> None:
    result = call_importer_method.apply(("Recorder", "add", [2, 3], {}), headers=count(losses))
    assert result.get() == 5


def test_an_importer_whose_hook_fails_has_the_call_discarded_all_the_same(
    registry_snapshot: None, caplog: pytest.LogCaptureFixture
) -> None:
    class FailingHook(BaseImporter):
        @as_task
        def run(self) -> None:
            record("run", None)

        @classmethod
        def poisoned(cls, message: Message, error: PoisonMessage) -> None:
            raise RuntimeError("the hook failed")

    with caplog.at_level(logging.ERROR, logger="core.tasks"):
        result = call_importer_method.apply(("FailingHook", "run", [], {}), headers=count(5))
    assert isinstance(result.result, PoisonMessage)
    assert Recorder.calls == []
    assert [record.getMessage() for record in caplog.records] == [
        f"Discarded FailingHook.run[{result.id}]: its task killed the pool process running it 5 times "
        "(IMPORTER_MAX_WORKER_LOSSES)",
        f"FailingHook.run[{result.id}]: the importer's poisoned() failed",
    ]
    assert "RuntimeError: the hook failed" in caplog.text
