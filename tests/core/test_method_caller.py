"""The method caller is an allow-list: only declared task methods of registered, concrete importers run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from core.exceptions import InvalidTaskCall
from core.tasks import call_importer_method
from tests.example_app.importers import Recorder


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
