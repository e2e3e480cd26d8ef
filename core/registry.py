"""The registry of importer classes: a read-only mapping from key (class name) to class."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from .exceptions import AlreadyRegistered, NotRegistered

if TYPE_CHECKING:
    from .importer import BaseImporter

__all__ = ("ImporterRegistry", "NotRegistered", "registry")


class ImporterRegistry(Mapping[str, "type[BaseImporter]"]):
    """Importer classes by key; filled by ``ImporterMeta`` as each class is created."""

    def __init__(self) -> None:
        self._importers: dict[str, type[BaseImporter]] = {}

    def __getitem__(self, key: str) -> type[BaseImporter]:
        """Return the importer class registered under ``key``.

        Raises:
            NotRegistered: no such key; the message suggests the closest registered one.
        """
        try:
            return self._importers[key]
        except (KeyError, TypeError):
            raise NotRegistered(self._unknown_key_message(key)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._importers)

    def __len__(self) -> int:
        return len(self._importers)

    def register(self, key: str, importer: type[BaseImporter]) -> None:
        """Register ``importer`` under ``key``; called by the metaclass.

        The same class imported again (same module and qualified name, as a reload does)
        replaces the old entry.

        Raises:
            AlreadyRegistered: a different class already holds ``key``.
        """
        existing = self._importers.get(key)
        if existing is not None and _path(existing) != _path(importer):
            raise AlreadyRegistered(
                f"Importer key '{key}' is taken by {_path(existing)}; "
                f"cannot register {_path(importer)} under it. Rename one class "
                "or give it its own key with `importer_name = '...'`."
            )
        self._importers[key] = importer

    def unregister(self, key: str) -> None:
        """Remove ``key``; for tests that define throw-away importers.

        Raises:
            NotRegistered: no such key.
        """
        self[key]
        del self._importers[key]

    def _unknown_key_message(self, key: object) -> str:
        message = f"No importer registered under {key!r}."
        close = difflib.get_close_matches(str(key), self._importers, n=1)
        if close:
            message += f" Did you mean '{close[0]}'?"
        elif self._importers:
            message += f" Registered: {', '.join(sorted(self._importers))}."
        return message


def _path(importer: type) -> str:
    return f"{importer.__module__}.{importer.__qualname__}"


registry = ImporterRegistry()
