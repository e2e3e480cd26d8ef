"""``list_importers``: the registered importers and their task methods."""

from __future__ import annotations

import inspect
import io
import json
from typing import Any

from celery import current_app
from django.apps import apps
from django.core.management.base import BaseCommand
from rich.console import Console
from rich.table import Table
from rich.text import Text

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
        # Where its tasks go: its own queue, or Celery's default one.
        "queue": importer.queue or current_app.conf.task_default_queue,
        "task_methods": {
            name: {
                "signature": f"{name}{signature_without_self(method.signature)}",
                "options": dict(method.options),
            }
            for name, method in sorted(importer.task_methods.items())
        },
    }


class _Written(str):
    """An annotation as its module wrote it: shown as is, not quoted as a string (``'list[str]'``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _as_written(annotation: Any) -> Any:
    return _Written(annotation) if isinstance(annotation, str) else annotation


def signature_without_self(signature: inspect.Signature) -> inspect.Signature:
    """Return the signature of a task method as a caller of ``.as_task`` sees it, annotations as written."""
    parameters = [
        parameter.replace(annotation=_as_written(parameter.annotation))
        for parameter in list(signature.parameters.values())[1:]
    ]
    return signature.replace(
        parameters=parameters, return_annotation=_as_written(signature.return_annotation)
    )


def method_line(method: dict[str, Any]) -> str:
    """A task method's signature, followed by its declared options, if any."""
    options = ", ".join(f"{name}={value!r}" for name, value in method["options"].items())
    return f"{method['signature']}  [{options}]" if options else str(method["signature"])


WIDE = 10_000


def render_table(rows: list[dict[str, Any]]) -> str:
    """Return the rows as a text table."""
    table = Table("key", "class", "app", "abstract", "task methods", box=None, pad_edge=False)
    for row in rows:
        methods = "\n".join(method_line(method) for method in row["task_methods"].values()) or "-"
        cells = (row["key"], row["class"], row["app"] or "-", "yes" if row["abstract"] else "no", methods)
        # Text, not markup: "list[str]" and "[queue='x']" are not Rich's style tags.
        table.add_row(*(Text(cell) for cell in cells))
    # As wide as the rows need: a fixed width wraps long signatures; a pipe has no width at all.
    console = Console(file=io.StringIO(), width=WIDE, color_system=None)
    console.print(table)
    output: str = console.file.getvalue()  # type: ignore[attr-defined]
    return "".join(f"{line.rstrip()}\n" for line in output.splitlines())
