"""``list_importers``: the registered importers and their task methods."""

from __future__ import annotations

import inspect
import io
import json
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from rich.console import Console
from rich.table import Table

from core.importer import BaseImporter
from core.registry import registry


class Command(BaseCommand):
    help = "List the registered importers: key, class, app, abstract or not, and their task methods."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print the listing as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = [describe(key, importer) for key, importer in sorted(registry.items())]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
        else:
            self.stdout.write(render_table(rows), ending="")


def describe(key: str, importer: type[BaseImporter]) -> dict[str, Any]:
    """Return what the listing shows of one importer, as JSON-ready data."""
    app_config = apps.get_containing_app_config(importer.__module__)
    return {
        "key": key,
        "class": f"{importer.__module__}.{importer.__qualname__}",
        "app": app_config.label if app_config else None,
        "abstract": importer.abstract,
        "task_methods": {
            name: f"{name}{signature_without_self(importer, name)}" for name in sorted(importer.task_methods)
        },
    }


def signature_without_self(importer: type[BaseImporter], name: str) -> inspect.Signature:
    """Return the signature of a task method as a caller of ``.as_task`` sees it."""
    signature: inspect.Signature = inspect.getattr_static(importer, name).signature
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def render_table(rows: list[dict[str, Any]]) -> str:
    """Return the rows as a text table."""
    table = Table("key", "class", "app", "abstract", "task methods", box=None, pad_edge=False)
    for row in rows:
        table.add_row(
            row["key"],
            row["class"],
            row["app"] or "-",
            "yes" if row["abstract"] else "no",
            "\n".join(row["task_methods"].values()) or "-",
        )
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(table)
    output: str = console.file.getvalue()  # type: ignore[attr-defined]
    return output
