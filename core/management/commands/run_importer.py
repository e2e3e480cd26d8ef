"""``run_importer``: send (or run in process) any task method of any registered importer."""

from __future__ import annotations

import json
from typing import Any

from celery.result import EagerResult
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.exceptions import NotRegistered
from core.registry import registry


class Command(BaseCommand):
    help = "Send one task method of a registered importer to the workers, or run it here with --sync."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("importer", help="The importer's registry key, e.g. WikidataImporter.")
        parser.add_argument("method", help="A task method of that importer, e.g. import_single.")
        parser.add_argument(
            "arguments",
            nargs="*",
            metavar="ARG",
            help="Positional arguments, parsed as JSON where they parse.",
        )
        parser.add_argument(
            "--kwarg",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="A keyword argument, VALUE parsed as JSON where it parses; repeat for more.",
        )
        parser.add_argument(
            "--sync", action="store_true", help="Run in this process even when a broker is configured."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            importer = registry[options["importer"]]
            sender = getattr(importer, options["method"]).as_task
        except NotRegistered as error:
            raise CommandError(str(error)) from None
        except AttributeError:
            tasks = ", ".join(sorted(importer.task_methods)) or "none"
            raise CommandError(
                f"{importer.importer_name}.{options['method']} is not a task method "
                f"(task methods: {tasks}). See `manage.py list_importers`."
            ) from None
        call_args = [parse_value(value) for value in options["arguments"]]
        call_kwargs = dict(parse_kwarg(item) for item in options["kwarg"])
        try:
            if options["sync"]:
                result = sender.apply(call_args, call_kwargs)
            else:
                result = sender.apply_async(call_args, call_kwargs)
        except TypeError as error:
            raise CommandError(str(error)) from None
        self.report(sender.label, result, options["verbosity"])

    def report(self, label: str, result: Any, verbosity: int) -> None:
        """Say what became of the call: sent, or run here and returned or failed.

        A sent call's result is not asked for: without a result backend there is none to ask.

        Raises:
            CommandError: it ran here, and failed.
        """
        if not isinstance(result, EagerResult):
            message = f"Sent {label} as task {result.id}."
        elif result.failed():
            raise CommandError(f"{label} failed: {result.result!r}")
        else:
            # As it travels, JSON: an enum's value (unchanged), not its repr (Status.UNCHANGED).
            message = f"{label} returned: {json.dumps(result.result, default=repr, ensure_ascii=False)}"
        if verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(message))


def parse_value(text: str) -> Any:
    """Return ``text`` parsed as JSON, or ``text`` itself where it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_kwarg(item: str) -> tuple[str, Any]:
    """Split ``NAME=VALUE`` into the name and the parsed value.

    Raises:
        CommandError: there is no ``=`` or no name.
    """
    name, sep, value = item.partition("=")
    if not sep or not name.isidentifier():
        raise CommandError(f"--kwarg {item!r}: expected NAME=VALUE, e.g. --kwarg wikidata_id=Q1022")
    return name, parse_value(value)
