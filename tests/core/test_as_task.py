"""``@as_task`` in the embedded mode (no broker): the same message, the same checks, in process."""

# Some calls here are wrong on purpose, to test the run-time checks that mypy also makes.
# mypy: disable-error-code="call-arg, misc, arg-type"

from __future__ import annotations

import datetime
import gc
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import chain, chord, group
from django.contrib.auth.models import User
from django.dispatch import Signal

from core.importer import BaseImporter, as_task
from core.registry import registry
from core.sender import TaskSender
from core.tasks import call_importer_method
from tests.example_app.importers import (
    AbstractExample,
    BaseExample,
    ConcreteImporter,
    InheritingImporter,
    ManInTheMiddle,
    Recorder,
    UndecoratedOverride,
)
from tests.support.workers import CeleryWorker


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
    assert recorder.echo.__doc__ == Recorder.task_methods["echo"].func.__doc__


@pytest.mark.parametrize("name", ["add", "undeclared"])
def test_task_methods_and_plain_methods_are_pythons_own_bound_methods(name: str) -> None:
    recorder = Recorder()
    bound = getattr(recorder, name)
    assert inspect.ismethod(bound)
    assert bound.__self__ is recorder
    assert bound == getattr(recorder, name)
    assert hash(bound) == hash(getattr(recorder, name))
    assert bound != getattr(Recorder(), name)


def test_only_task_methods_are_changed_by_the_metaclass() -> None:
    assert Recorder.__dict__["undeclared"] is Recorder.undeclared  # the function as written
    assert not hasattr(Recorder.undeclared, "as_task")
    assert not hasattr(Recorder.undeclared, "task_method")
    assert set(Recorder.task_methods) == {"add", "echo", "fail"}


def test_a_plain_method_is_a_weak_signal_receiver_that_stays_connected(settings: Any) -> None:
    # A weak receiver is dropped when the object it refers to is collected: a bound method
    # made anew at each access would vanish at once.
    settings.DEBUG = False
    ping = Signal()
    recorder, concrete = Recorder(), ConcreteImporter()
    ping.connect(recorder.on_ping)
    ping.connect(concrete.do_something)  # a task method too
    gc.collect()
    responses = ping.send(sender="test")
    assert [receiver for receiver, _ in responses] == [recorder.on_ping, concrete.do_something]
    assert responses[0][1] == "pong"
    report: Any = responses[1][1]
    assert report["code"] == "ConcreteImporter"
    assert ("on_ping", "test") in Recorder.calls


def test_a_method_that_is_not_a_task_method_has_no_as_task() -> None:
    with pytest.raises(AttributeError, match="as_task"):
        Recorder().undeclared.as_task  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(Recorder()._private, "as_task")
    Recorder().undeclared()  # still an ordinary method
    assert ("undeclared", None) in Recorder.calls


def test_an_abstract_importer_refuses_to_send_before_anything_is_sent(
    published: list[dict[str, Any]],
) -> None:
    sender = AbstractExample().do_something.as_task
    for send in (sender, sender.delay, sender.s, sender.si, sender.apply_async, sender.apply):
        with pytest.raises(TypeError, match="AbstractExample is an abstract importer"):
            send()
    assert published == []


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


@pytest.mark.usefixtures("registry_snapshot")
def test_a_task_method_defined_later_is_dispatchable_immediately() -> None:
    class Late(BaseImporter):
        @as_task
        def hello(self, name: str) -> str:
            return f"hello {name}"

    assert registry["Late"] is Late  # registered as it was created; registry_snapshot removes it
    assert Late().hello.as_task("world").get() == "hello world"
    assert call_importer_method.delay("Late", "hello", ["you"], {}).get() == "hello you"


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


LATER = datetime.timedelta(hours=1)


@pytest.mark.parametrize(
    "send",
    [
        lambda: Recorder().add.as_task.s(1, 2).apply_async(countdown=61),
        lambda: Recorder().add.as_task.si(1, 2).apply_async(countdown=61),
        lambda: Recorder().add.as_task.s(1, 2).set(countdown=61).delay(),
        lambda: Recorder().add.as_task.si(1, 2).apply_async(eta=datetime.datetime.now(datetime.UTC) + LATER),
    ],
    ids=["s", "si", "set", "eta"],
)
def test_signatures_cannot_be_sent_with_a_delay_beyond_the_visibility_window_either(
    settings: Any, send: Callable[[], Any]
) -> None:
    settings.IMPORTER_MAX_COUNTDOWN = 60
    with pytest.raises(ValueError, match=r"^Recorder\.add: a delay of (61|3600) s is beyond IMPORTER_MAX_"):
        send()
    assert Recorder().add.as_task.s(1, 2).apply_async(countdown=60).get() == 3


@pytest.mark.parametrize(
    "send",
    [
        lambda: chain(Recorder().add.as_task.s(1, 2), Recorder().add.as_task.s(3)).apply_async(countdown=61),
        lambda: group([Recorder().add.as_task.si(1, 2)]).apply_async(countdown=61),
    ],
    ids=["chain", "group"],
)
def test_a_canvas_cannot_be_sent_with_a_delay_beyond_the_visibility_window(
    live: CeleryWorker, published: list[dict[str, Any]], settings: Any, send: Callable[[], Any]
) -> None:
    """With a broker: eagerly, a chain or group runs its tasks with apply(), where no delay applies."""
    settings.IMPORTER_MAX_COUNTDOWN = 60
    with pytest.raises(ValueError, match=r"^Recorder\.add: a delay of 61 s is beyond IMPORTER_MAX_COUNTDOWN"):
        send()
    assert published == []


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"eta": datetime.datetime(2030, 1, 1, 12)},
            ValueError,
            "Recorder.add: eta 2030-01-01T12:00:00 is naive: give it a timezone, "
            "e.g. datetime.now(UTC) + timedelta(minutes=5)",
        ),
        (
            {"eta": "2030-01-01T12:00:00+00:00"},
            TypeError,
            "Recorder.add: eta must be a datetime with a timezone, e.g. datetime.now(UTC) + "
            "timedelta(minutes=5), not str '2030-01-01T12:00:00+00:00'",
        ),
        ({"countdown": "10"}, TypeError, "Recorder.add: countdown must be a number of seconds, not str '10'"),
        ({"countdown": float("nan")}, ValueError, "Recorder.add: countdown must be a finite number"),
    ],
)
def test_a_countdown_or_eta_of_the_wrong_kind_is_refused_naming_the_problem(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    sends: list[Callable[[], Any]] = [
        lambda: Recorder().add.as_task.apply_async(args=(1, 2), **options),
        lambda: Recorder().add.as_task.s(1, 2).apply_async(**options),
    ]
    for send in sends:
        with pytest.raises(error) as caught:
            send()
        assert str(caught.value).startswith(message)


def test_an_importer_can_send_its_tasks_to_a_queue_of_its_own() -> None:
    from importers.importers import WikidataImporter

    signature = WikidataImporter().import_single.as_task.si("Q1022")
    assert signature.options["queue"] == WikidataImporter.queue
    assert "queue" not in Recorder().add.as_task.si(1, 2).options


def test_declared_options_are_in_every_signature_and_a_call_overrides_them() -> None:
    sender = Recorder().fail.as_task
    options = sender.si("x").options
    assert (options["priority"], options["expires"], options["shadow"]) == (9, 60, "Recorder.fail")
    assert sender.si("x").set(priority=1).options["priority"] == 1
    assert "priority" not in Recorder().add.as_task.si(1, 2).options


def test_per_method_options_go_to_celery_under_the_calls_own(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(call_importer_method, "apply_async", lambda message, **options: sent.append(options))
    Recorder().fail.as_task("x")
    Recorder().fail.as_task.apply_async(args=("x",), priority=1, queue="elsewhere")
    assert [(o["priority"], o["expires"], o.get("queue")) for o in sent] == [
        (9, 60, None),
        (1, 60, "elsewhere"),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": 256}, "priority=...) must be an int from 0 to 255"),
        ({"priority": True}, "priority=...) must be an int from 0 to 255"),
        ({"time_limit": 0}, "time_limit=...) must be a number of seconds above 0"),
        ({"expires": float("inf")}, "expires=...) must be a number of seconds above 0"),
        ({"queue": ""}, "queue=...) must be a queue name"),
        ({"retries": 3}, "unknown option 'retries'"),
        ({"soft_time_limit": 10, "time_limit": 10}, "soft_time_limit (10) must be below time_limit (10)"),
    ],
)
def test_bad_options_are_refused_where_the_method_is_declared(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError) as caught:
        as_task(**options)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Recorder().add.as_task("1", 2), "Recorder.add(): left is a str ('1'), expected int"),
        (lambda: Recorder().add.as_task(1, True), "Recorder.add(): right is a bool (True), expected int"),
        (lambda: Recorder().add.as_task.s("1"), "Recorder.add(): left is a str ('1'), expected int"),
        (lambda: Recorder().echo.as_task(1, kind=2), "Recorder.echo(): kind is an int (2), expected str"),
    ],
)
def test_arguments_are_checked_against_the_annotations_before_anything_is_sent(
    call: Any, message: str, published: list[dict[str, Any]]
) -> None:
    with pytest.raises(TypeError) as caught:
        call()
    assert message in str(caught.value)
    assert published == []


def test_a_class_whose_task_method_takes_what_cannot_travel_is_refused_when_created() -> None:
    with pytest.raises(TypeError, match=r"parameter 'when' is annotated datetime\.datetime"):

        class Untravelled(BaseImporter):
            @as_task
            def at(self, when: datetime.datetime) -> None: ...

    assert "Untravelled" not in registry


@pytest.mark.usefixtures("registry_snapshot")
def test_an_inherited_task_method_runs_the_same_code_and_super_still_works() -> None:
    class Parent(BaseImporter):
        @as_task
        def greet(self, name: str) -> str:
            return f"{type(self).__name__} greets {name}"

    class Child(Parent):
        @as_task
        def greet(self, name: str) -> str:
            return "child: " + super().greet(name)

    class GrandChild(Child):
        pass

    assert GrandChild.greet.__code__ is Child.__dict__["greet"].__code__
    assert GrandChild.greet is not Child.greet  # a copy of its own, sending as GrandChild
    assert GrandChild().greet("x") == "child: GrandChild greets x"
    assert GrandChild().greet.as_task("x").get() == "child: GrandChild greets x"
    assert Child.greet.as_task.label == "Child.greet"
    assert GrandChild.greet.as_task.label == "GrandChild.greet"


@pytest.mark.parametrize("threads", [1, 3])
def test_many_calls_run_here_are_each_reported_with_their_result_as_they_end(threads: int) -> None:
    ended: list[tuple[int, int]] = []
    calls = ({"left": n, "right": 1} for n in range(5))
    sent = Recorder().add.as_task.send_many(
        calls, threads=threads, ended=lambda kwargs, result: ended.append((kwargs["left"], result.result))
    )
    assert sent == 5
    assert sorted(ended) == [(n, n + 1) for n in range(5)]
