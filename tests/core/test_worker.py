"""The async path for real: as_task -> Redis -> a ``celery worker`` process -> the right method."""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Any

import pytest
from celery import chain, chord, group
from celery.result import EagerResult

from config.celery_app import app
from core.sender import in_process, runs_in_process
from tests.core.test_arguments import same
from tests.example_app.importers import (
    BaseExample,
    ConcreteImporter,
    InheritingImporter,
    ManInTheMiddle,
    Recorder,
    UndecoratedOverride,
)
from tests.support.workers import CeleryWorker

TIMEOUT = 15


@pytest.mark.parametrize(
    ("importer", "code"),
    [
        (BaseExample, "BaseExample"),
        (ManInTheMiddle, "ManInTheMiddle"),
        (ConcreteImporter, "ConcreteImporter"),
        (InheritingImporter, "ConcreteImporter"),
        (UndecoratedOverride, "UndecoratedOverride"),
    ],
)
def test_the_worker_runs_the_runtime_classs_method_on_an_instance_of_it(
    live: CeleryWorker, importer: type, code: str
) -> None:
    result = importer().do_something.as_task("Q1022", depth=3)
    assert result.get(timeout=TIMEOUT) == {
        "instance": importer.__name__,
        "code": code,
        "args": ["Q1022"],
        "kwargs": {"depth": 3},
    }


def test_sets_and_tuples_survive_the_broker(live: CeleryWorker) -> None:
    value = {"ids": ("Q1", "Q2"), "seen": {"Q3", ("P31", 5)}, "nested": [{"t": ()}]}
    result = Recorder().echo.as_task(value, kind="wire").get(timeout=TIMEOUT)
    assert result["type"] == "dict"
    assert same(ast.literal_eval(result["value"]), value)


def test_the_message_carries_only_key_method_and_json_arguments(
    live: CeleryWorker, published: list[dict[str, Any]]
) -> None:
    result = Recorder().echo.as_task.apply_async(args=[{"Q1"}], kwargs={"kind": "set"})
    assert result.get(timeout=TIMEOUT)["value"] == "{'Q1'}"
    (message,) = published
    args, kwargs, _embed = message["body"]
    assert message["headers"]["task"] == "core.call_importer_method"
    assert message["headers"]["shadow"] == "Recorder.echo"
    assert args == ("Recorder", "echo", [{"__set__": ["Q1"]}], {"kind": "set"})
    assert kwargs == {}


def test_celery_options_pass_through(live: CeleryWorker) -> None:
    started = time.monotonic()
    result = Recorder().add.as_task.apply_async(args=[20, 22], countdown=1, task_id="answer-" + str(started))
    assert result.id == "answer-" + str(started)
    assert result.get(timeout=TIMEOUT) == 42
    assert time.monotonic() - started >= 1


def test_signatures_compose_on_the_worker(live: CeleryWorker) -> None:
    recorder = Recorder()
    assert chain(recorder.add.as_task.s(1, 2), recorder.add.as_task.s(10))().get(timeout=TIMEOUT) == 13
    assert group(recorder.add.as_task.si(i, 1) for i in range(4))().get(timeout=TIMEOUT) == [1, 2, 3, 4]
    body = recorder.echo.as_task.s(kind="chord")
    result = chord([recorder.add.as_task.si(1, 1), recorder.add.as_task.si(2, 2)])(body)
    assert result.get(timeout=TIMEOUT) == {"type": "list", "value": "[2, 4]", "kind": "chord"}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (["NoSuchImporter", "echo", [1], {}], "No importer registered under 'NoSuchImporter'"),
        (["Recorder", "__init__", [], {}], "'__init__' is not a declared task method of Recorder"),
        (["Recorder", "undeclared", [], {}], "'undeclared' is not a declared task method of Recorder"),
        (["Recorder", "_private", [], {}], "'_private' is not a declared task method of Recorder"),
        (["Recorder", "add", "not a list", {}], "args must be a JSON list"),
        (["Recorder", "add", ["40", 2], {}], "Recorder.add(): left is a str ('40'), expected int"),
    ],
)
def test_forged_messages_are_refused_without_side_effects_and_the_worker_goes_on(
    live: CeleryWorker, recorder_log: Path, message: list[Any], reason: str
) -> None:
    before = recorder_log.read_text()
    forged = app.send_task("core.call_importer_method", args=message)
    with pytest.raises(Exception, match=r"not a declared|No importer|must be|expected int"):
        forged.get(timeout=TIMEOUT)
    assert forged.state == "FAILURE"
    assert reason in str(forged.result)
    assert recorder_log.read_text() == before  # no instance made, no method called
    assert Recorder().add.as_task(2, 3).get(timeout=TIMEOUT) == 5  # still working
    assert reason in live.log_text()  # and the refusal is in the worker's log


def test_in_process_runs_every_call_here_even_with_workers(live: CeleryWorker, recorder_log: Path) -> None:
    with in_process():
        assert runs_in_process()
        result = Recorder().echo.as_task("here", kind="scope")
        inherited = InheritingImporter().do_something.as_task.apply_async(("here",))
    assert isinstance(result, EagerResult)
    assert result.get()["kind"] == "scope"
    assert inherited.get()["instance"] == "InheritingImporter"
    assert ("echo", "here") in Recorder.calls  # ran in this process
    assert not runs_in_process()
    assert Recorder().echo.as_task("there").get(timeout=TIMEOUT)["value"] == "'there'"  # the worker
    assert "echo 'there'" in recorder_log.read_text()
    assert "echo 'here'" not in recorder_log.read_text()


def test_the_worker_log_says_which_call_a_task_ran(live: CeleryWorker) -> None:
    # Before, its lines named the method and the task id, never the arguments (the id imported).
    assert Recorder().echo.as_task({"which": ["Q1022"]}, kind="x" * 500).get(timeout=TIMEOUT)
    (line,) = [line for line in live.log_text().splitlines() if "runs Recorder.echo({'which'" in line]
    assert "Recorder.echo({'which': ['Q1022']}, kind='xxxx" in line
    assert len(line) < 500
