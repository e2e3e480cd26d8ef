"""``@as_task`` in the embedded mode (no broker): the same message, the same checks, in process."""

# Some calls here are wrong on purpose, to test the run-time checks that mypy also makes.
# mypy: disable-error-code="call-arg, misc"

from __future__ import annotations

import datetime
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from celery import chain, chord, group
from django.contrib.auth.models import User

from core.importer import BaseImporter, TaskSender, as_task
from core.registry import registry
from core.tasks import call_importer_method
from tests.example_app.importers import (
    BaseExample,
    ConcreteImporter,
    InheritingImporter,
    ManInTheMiddle,
    Recorder,
    UndecoratedOverride,
)


@pytest.fixture(autouse=True)
def fresh_recorder() -> Iterator[None]:
    Recorder.calls.clear()
    yield
    Recorder.calls.clear()


@pytest.mark.parametrize("importer", [BaseExample, ManInTheMiddle, ConcreteImporter])
def test_each_level_of_the_hierarchy_runs_its_own_method_on_its_own_instance(importer: type) -> None:
    result = importer().do_something.as_task("Q1022", flag=True)
    assert result.get() == {
        "instance": importer.__name__,
        "code": importer.__name__,
        "args": ["Q1022"],
        "kwargs": {"flag": True},
    }


def test_a_subclass_that_inherits_a_task_method_dispatches_as_itself() -> None:
    result = InheritingImporter().do_something.as_task()
    assert result.get() == {
        "instance": "InheritingImporter",
        "code": "ConcreteImporter",
        "args": [],
        "kwargs": {},
    }


def test_an_undecorated_override_of_a_task_method_is_still_a_task_method() -> None:
    assert "do_something" in UndecoratedOverride.task_methods
    result = UndecoratedOverride().do_something.as_task()  # type: ignore[attr-defined]
    assert result.get()["code"] == "UndecoratedOverride"


def test_the_class_attribute_sends_for_that_class() -> None:
    assert ManInTheMiddle.do_something.as_task().get()["instance"] == "ManInTheMiddle"
    assert InheritingImporter.do_something.as_task().get()["instance"] == "InheritingImporter"


def test_a_task_method_still_runs_normally_when_called() -> None:
    recorder = Recorder()
    assert recorder.add(2, 3) == 5
    assert Recorder.add(recorder, 2, 3) == 5
    assert ConcreteImporter().do_something(1)["code"] == "ConcreteImporter"
    assert (
        str(inspect.signature(recorder.echo)) == "(value: 'Any', *, kind: 'str' = 'any') -> 'dict[str, Any]'"
    )
    assert recorder.echo.__name__ == "echo"
    assert recorder.echo.__doc__ == Recorder.__dict__["echo"].func.__doc__


def test_a_method_that_is_not_a_task_method_has_no_as_task() -> None:
    with pytest.raises(AttributeError, match=r"Recorder.undeclared is not a task method.*@as_task"):
        Recorder().undeclared.as_task  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(Recorder()._private, "as_task")
    Recorder().undeclared()  # still an ordinary method
    assert ("undeclared", None) in Recorder.calls


def test_as_task_only_decorates_functions() -> None:
    with pytest.raises(TypeError, match="plain method"):
        as_task(print)


# Each call is wrong on purpose; mypy sees most of them too (see the header of this file).
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Recorder().add.as_task(1), "Recorder.add(): missing a required argument: 'right'"),
        (lambda: Recorder().add.as_task(1, 2, 3), "Recorder.add(): too many positional arguments"),
        (
            lambda: Recorder().add.as_task(1, 2, rigth=2),
            "Recorder.add(): got an unexpected keyword argument 'rigth'",
        ),
        (lambda: Recorder().echo.as_task(1, "kind"), "Recorder.echo(): too many positional arguments"),
        (lambda: Recorder().echo.as_task.s(1, 2, 3), "Recorder.echo(): too many positional arguments"),
        (lambda: Recorder().echo.as_task.si(), "Recorder.echo(): missing a required argument: 'value'"),
        (
            lambda: Recorder().echo.as_task({"when": datetime.datetime(2024, 1, 1)}),
            "Recorder.echo(): args[0]['when'] is a datetime.datetime",
        ),
        (lambda: Recorder().echo.as_task(value=float("nan")), "Recorder.echo(): kwargs['value'] is nan"),
        (lambda: Recorder().echo.as_task(User(username="x")), "args[0] is a django.contrib.auth.models.User"),
        (lambda: Recorder().echo.as_task({3: "x"}), "args[0] has the key 3"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_sent(
    call: Any, message: str, published: list[dict[str, Any]]
) -> None:
    with pytest.raises(TypeError) as caught:
        call()
    assert message in str(caught.value)
    assert [event for event, _ in Recorder.calls] == ["__init__"]  # the caller's own instance
    assert published == []


def test_sets_and_tuples_arrive_as_sets_and_tuples() -> None:
    result = Recorder().echo.as_task({"ids": ("Q1", "Q2"), "seen": {"Q3"}}, kind="frozen")
    assert result.get() == {
        "type": "dict",
        "value": repr({"ids": ("Q1", "Q2"), "seen": {"Q3"}}),
        "kind": "frozen",
    }
    assert Recorder.calls[-1] == ("echo", {"ids": ("Q1", "Q2"), "seen": {"Q3"}})


def test_the_message_is_key_method_args_kwargs_in_json() -> None:
    signature = Recorder().echo.as_task.si((1, 2), kind="x")
    assert signature.task == "core.call_importer_method"
    assert list(signature.args) == ["Recorder", "echo", [{"__tuple__": [1, 2]}], {"kind": "x"}]
    assert signature.kwargs == {}
    assert signature.options["shadow"] == "Recorder.echo"


def test_a_failing_call_does_not_stop_the_callers_loop() -> None:
    results = [Recorder().add.as_task(1, 1), Recorder().fail.as_task("boom"), Recorder().add.as_task(2, 2)]
    assert [r.state for r in results] == ["SUCCESS", "FAILURE", "SUCCESS"]
    assert results[0].get() == 2
    assert results[2].get() == 4
    assert isinstance(results[1].result, RuntimeError)


def test_apply_runs_in_process_through_the_method_caller() -> None:
    result = Recorder().echo.as_task.apply([(1,)], {"kind": "sync"})
    assert result.get()["type"] == "tuple"
    failed = InheritingImporter.do_something.as_task.apply()
    assert failed.get()["instance"] == "InheritingImporter"


def test_apply_async_passes_celery_options_through() -> None:
    result = Recorder().add.as_task.apply_async(
        args=(1,), kwargs={"right": 2}, countdown=0, task_id="fixed-id"
    )
    assert result.id == "fixed-id"
    assert result.get() == 3
    assert isinstance(Recorder().add.as_task, TaskSender)
    assert Recorder().add.as_task.delay(5, 6).get() == 11


def test_signatures_work_in_chain_group_and_chord() -> None:
    recorder = Recorder()
    # In a chain, the previous result becomes the first argument of a mutable signature.
    assert chain(recorder.add.as_task.s(1, 2), recorder.add.as_task.s(10))().get() == 13
    assert chain(recorder.add.as_task.s(1, 2), recorder.add.as_task.si(5, 5))().get() == 10
    assert group(recorder.add.as_task.si(i, i) for i in range(3))().get() == [0, 2, 4]


def test_a_task_method_defined_later_is_dispatchable_immediately() -> None:
    class Late(BaseImporter):
        @as_task
        def hello(self, name: str) -> str:
            return f"hello {name}"

    try:
        assert Late().hello.as_task("world").get() == "hello world"
        assert call_importer_method.delay("Late", "hello", ["you"], {}).get() == "hello you"
    finally:
        registry.unregister("Late")


def test_chord_collects_results_into_the_body() -> None:
    # Eager chords need a result backend that supports them; Redis does, so the live tests
    # run the chord. Here the body just receives the header's results as its first argument.
    body = Recorder().echo.as_task.s(kind="sum")
    result = chord([Recorder().add.as_task.si(1, 1), Recorder().add.as_task.si(2, 2)])(body)
    assert result.get()["value"] == "[2, 4]"


def test_a_delay_beyond_the_visibility_window_is_refused(settings: Any) -> None:
    settings.IMPORTER_MAX_COUNTDOWN = 60
    sender = Recorder().add.as_task
    with pytest.raises(ValueError, match="beyond IMPORTER_MAX_COUNTDOWN"):
        sender.apply_async(args=(1, 2), countdown=61)
    with pytest.raises(ValueError, match="beyond IMPORTER_MAX_COUNTDOWN"):
        sender.apply_async(args=(1, 2), eta=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
    assert sender.apply_async(args=(1, 2), countdown=60).get() == 3


def test_an_importer_can_send_its_tasks_to_a_queue_of_its_own() -> None:
    from importers.importers import WikidataImporter

    signature = WikidataImporter().import_single.as_task.si("Q1022")
    assert signature.options["queue"] == WikidataImporter.queue
    assert "queue" not in Recorder().add.as_task.si(1, 2).options
