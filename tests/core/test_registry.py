"""The registry: filled by the metaclass, read-only, helpful when a key is wrong."""

from __future__ import annotations

import abc
from collections.abc import Iterator

import pytest

from core.exceptions import AlreadyRegistered, ImporterError
from core.importer import BaseImporter, ImporterMeta, as_task
from core.registry import NotRegistered, registry
from tests.example_app.importers import AbstractExample, ConcreteImporter, Recorder


@pytest.fixture
def cleanup() -> Iterator[list[str]]:
    """Keys to unregister after the test, so throw-away importers do not leak."""
    keys: list[str] = []
    yield keys
    for key in keys:
        if key in registry:
            registry.unregister(key)


def test_every_importer_class_is_registered_under_its_class_name() -> None:
    assert registry["ConcreteImporter"] is ConcreteImporter
    assert registry["Recorder"] is Recorder
    assert "ManInTheMiddle" in registry
    assert {"BaseImporter", "BaseExample", "ManInTheMiddle", "ConcreteImporter"} <= set(registry)
    assert len(registry) == len(list(registry))
    assert isinstance(ConcreteImporter, ImporterMeta)
    assert issubclass(ImporterMeta, abc.ABCMeta)


def test_class_body_can_choose_its_key(cleanup: list[str]) -> None:
    class Renamed(BaseImporter):
        importer_name = "custom-key"

    class ChildOfRenamed(Renamed):
        pass

    cleanup += ["custom-key", "ChildOfRenamed"]
    assert registry["custom-key"] is Renamed
    assert "Renamed" not in registry
    # The key is not inherited: the child registers under its own class name.
    assert registry["ChildOfRenamed"] is ChildOfRenamed


def test_unknown_key_raises_not_registered_with_a_suggestion() -> None:
    with pytest.raises(NotRegistered) as caught:
        registry["ConcreteImporterr"]
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, ImporterError)
    assert (
        str(caught.value)
        == "No importer registered under 'ConcreteImporterr'. Did you mean 'ConcreteImporter'?"
    )
    assert registry.get("Nope") is None


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        registry["Recorder"] = ConcreteImporter  # type: ignore[index]
    with pytest.raises(TypeError):
        del registry["Recorder"]  # type: ignore[attr-defined]


def test_a_different_class_under_a_taken_key_is_refused_at_creation() -> None:
    with pytest.raises(AlreadyRegistered) as caught:

        class Recorder(BaseImporter):
            pass

    message = str(caught.value)
    assert "tests.example_app.importers.Recorder" in message
    assert (
        "tests.core.test_registry.test_a_different_class_under_a_taken_key_is_refused_at_creation" in message
    )
    from tests.example_app import importers

    assert registry["Recorder"] is importers.Recorder  # the original stays


def test_the_same_class_imported_twice_is_not_an_error(cleanup: list[str]) -> None:
    def define() -> type[BaseImporter]:
        class Reloaded(BaseImporter):
            pass

        return Reloaded

    first, second = define(), define()  # same module and qualified name, as a reload gives
    cleanup.append("Reloaded")
    assert first is not second
    assert registry["Reloaded"] is second


def test_abstract_importers_are_registered_and_marked(cleanup: list[str]) -> None:
    class WithAbstractMethod(BaseImporter):
        @abc.abstractmethod
        def fetch(self) -> None: ...

    class Implementation(WithAbstractMethod):
        def fetch(self) -> None:
            pass

    cleanup += ["WithAbstractMethod", "Implementation"]
    assert registry["WithAbstractMethod"].abstract
    assert registry["AbstractExample"] is AbstractExample
    assert AbstractExample.abstract
    assert registry["BaseImporter"].abstract
    # Abstractness is not inherited: a subclass that sets nothing is concrete.
    assert not Implementation.abstract
    assert not ConcreteImporter.abstract


def test_task_methods_are_declared_per_class(cleanup: list[str]) -> None:
    class Declares(BaseImporter):
        @as_task
        def run(self) -> None: ...

        def helper(self) -> None: ...

    cleanup.append("Declares")
    assert Declares.task_methods == frozenset({"run"})
    assert Recorder.task_methods == frozenset({"add", "echo", "fail"})
