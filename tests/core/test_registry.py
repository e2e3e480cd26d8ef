"""The registry: filled by the metaclass, read-only, helpful when a key is wrong."""

from __future__ import annotations

import abc

import pytest

from core.exceptions import AlreadyRegistered, ImporterError
from core.importer import BaseImporter, ImporterMeta, as_task
from core.registry import NotRegistered, registry
from tests.conftest import registry_restored
from tests.example_app.importers import AbstractExample, ConcreteImporter, Recorder

# Throw-away importers defined in these tests are gone from the registry after each one.
pytestmark = pytest.mark.usefixtures("registry_snapshot")


def test_every_importer_class_is_registered_under_its_class_name() -> None:
    assert registry["ConcreteImporter"] is ConcreteImporter
    assert registry["Recorder"] is Recorder
    assert "ManInTheMiddle" in registry
    assert {"BaseImporter", "BaseExample", "ManInTheMiddle", "ConcreteImporter"} <= set(registry)
    assert len(registry) == len(list(registry))
    assert isinstance(ConcreteImporter, ImporterMeta)
    assert issubclass(ImporterMeta, abc.ABCMeta)


def test_class_body_can_choose_its_key() -> None:
    class Renamed(BaseImporter):
        importer_name = "custom-key"

    class ChildOfRenamed(Renamed):
        pass

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


def test_the_same_class_imported_twice_is_not_an_error() -> None:
    def define() -> type[BaseImporter]:
        class Reloaded(BaseImporter):
            pass

        return Reloaded

    first, second = define(), define()  # same module and qualified name, as a reload gives
    assert first is not second
    assert registry["Reloaded"] is second


def test_abstract_importers_are_registered_and_marked() -> None:
    class WithAbstractMethod(BaseImporter):
        @abc.abstractmethod
        def fetch(self) -> None: ...

    class Implementation(WithAbstractMethod):
        def fetch(self) -> None:
            pass

    assert registry["WithAbstractMethod"].abstract
    assert registry["AbstractExample"] is AbstractExample
    assert AbstractExample.abstract
    assert registry["BaseImporter"].abstract
    # Abstractness is not inherited: a subclass that sets nothing is concrete.
    assert not Implementation.abstract
    assert not ConcreteImporter.abstract


def test_task_methods_are_declared_per_class() -> None:
    class Declares(BaseImporter):
        @as_task
        def run(self) -> None: ...

        def helper(self) -> None: ...

    assert set(Declares.task_methods) == {"run"}
    assert set(Recorder.task_methods) == {"add", "echo", "fail"}


def test_the_registry_is_restored_after_a_test_adds_replaces_or_removes_importers() -> None:
    before = list(registry.items())
    with registry_restored():

        class ThrowAway(BaseImporter):
            pass

        # The same module and qualified name: a reload, which replaces the class under its key.
        reloaded = ImporterMeta(
            "ConcreteImporter", (BaseImporter,), {"__module__": ConcreteImporter.__module__}
        )
        registry.unregister("Recorder")
        assert registry["ThrowAway"] is ThrowAway
        assert registry["ConcreteImporter"] is reloaded
        assert "Recorder" not in registry
    assert list(registry.items()) == before
