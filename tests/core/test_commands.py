"""``list_importers`` and ``run_importer``: output for people, errors as CommandError."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from core.importer import BaseImporter, as_task
from tests.example_app.importers import Recorder


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_list_importers_prints_a_table_of_every_importer() -> None:
    output = run("list_importers")
    lines = output.splitlines()
    assert lines[0].split() == ["key", "class", "app", "abstract", "task", "methods"]
    recorder = next(line for line in lines if line.startswith("Recorder "))
    assert recorder.split()[:4] == ["Recorder", "tests.example_app.importers.Recorder", "example_app", "no"]
    assert "add(left: int, right: int) -> int" in recorder
    assert "echo(value: Any, *, kind: str = 'any')" in output
    assert "fail(message: str) -> None  [priority=9, expires=60]" in output  # options, not markup
    assert "import_batch(wikidata_ids: list[str]" in output
    abstract = next(line for line in lines if line.startswith("AbstractExample "))
    assert abstract.split()[3] == "yes"


@pytest.mark.usefixtures("registry_snapshot")
def test_list_importers_never_wraps_a_long_signature_nor_eats_brackets() -> None:
    class LongWinded(BaseImporter):
        @as_task
        def run(
            self,
            first_list_of_identifiers: list[str],
            second_list_of_identifiers: list[str],
            mapping_of_labels_by_language: dict[str, str] | None = None,
        ) -> None: ...

    (line,) = [line for line in run("list_importers").splitlines() if line.startswith("LongWinded ")]
    assert line.endswith("mapping_of_labels_by_language: dict[str, str] | None = None) -> None")


def test_list_importers_json_has_the_same_facts() -> None:
    rows = {row["key"]: row for row in json.loads(run("list_importers", "--json"))}
    assert rows["Recorder"] == {
        "key": "Recorder",
        "class": "tests.example_app.importers.Recorder",
        "app": "example_app",
        "abstract": False,
        "queue": settings.CELERY_TASK_DEFAULT_QUEUE,  # Celery's default: it names none of its own
        "task_methods": {
            "add": {"signature": "add(left: int, right: int) -> int", "options": {}},
            "echo": {
                "signature": "echo(value: Any, *, kind: str = 'any') -> dict[str, Any]",
                "options": {},
            },
            "fail": {
                "signature": "fail(message: str) -> None",
                "options": {"priority": 9, "expires": 60},
            },
        },
    }
    assert rows["BaseImporter"]["abstract"] is True
    assert rows["BaseImporter"]["app"] == "core"


@pytest.mark.parametrize("sync", [[], ["--sync"]])
def test_run_importer_runs_a_task_method_with_json_arguments(sync: list[str]) -> None:
    assert "Recorder.add returned: 5" in run("run_importer", "Recorder", "add", "2", "3", *sync)
    output = run(
        "run_importer", "Recorder", "echo", "--kwarg", 'value={"a": [1]}', "--kwarg", "kind=raw", *sync
    )
    assert '"type": "dict"' in output  # printed as JSON, as it travels
    assert '"kind": "raw"' in output
    assert '"type": "str"' in run("run_importer", "Recorder", "echo", "not json", *sync)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Recordr", "add"], "No importer registered under 'Recordr'. Did you mean 'Recorder'?"),
        (
            ["Recorder", "undeclared"],
            "Recorder.undeclared is not a task method (task methods: add, echo, fail)",
        ),
        (["Recorder", "nothing"], "Recorder.nothing is not a task method"),
        (["Recorder", "add", "1"], "Recorder.add(): missing a required argument: 'right'"),
        (["Recorder", "echo", "--kwarg", "novalue"], "expected NAME=VALUE"),
        (["Recorder", "fail", "boom", "--sync"], "Recorder.fail failed: RuntimeError('boom')"),
        (["AbstractExample", "do_something"], "abstract importer"),
        # Typed: a str is not a list of ids, nor an int an id.
        (
            ["WikidataImporter", "import_bulk", "Q42"],
            "WikidataImporter.import_bulk(): wikidata_ids is a str ('Q42'), expected Iterable[str]",
        ),
        (
            ["WikidataImporter", "import_single", "42"],
            "WikidataImporter.import_single(): wikidata_id is an int (42), expected str",
        ),
        (
            ["WikidataImporter", "import_single", "Q42", "--kwarg", 'run_id="7"'],
            "run_id is a str ('7'), expected int | None",
        ),
        # Nested deep enough to stop a worker that tried to hand it to its pool.
        (
            ["WikidataImporter", "import_single", "[" * 485 + "]" * 485],
            "WikidataImporter.import_single(): wikidata_id is a list ([[[[...]]]]), expected str",
        ),
        (
            ["Recorder", "echo", "[" * 485 + "]" * 485],
            f"Recorder.echo(): args[0]{'[0]' * 32} nests deeper than 32 levels (IMPORTER_MAX_ARGUMENT_DEPTH)",
        ),
        (
            ["Recorder", "echo", json.dumps(["Q1"] * 200_000)],
            "Recorder.echo(): args[0] takes 1,200,000 bytes as JSON",
        ),
    ],
)
def test_run_importer_turns_mistakes_into_command_errors(args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as caught:
        run("run_importer", *args)
    assert message in str(caught.value)


def test_run_importer_with_verbosity_0_prints_nothing_but_still_fails_loudly() -> None:
    assert run("run_importer", "Recorder", "add", "2", "3", "-v", "0") == ""
    with pytest.raises(CommandError, match="boom"):
        run("run_importer", "Recorder", "fail", "boom", "--sync", "-v", "0")


def test_run_importer_sends_to_the_broker_when_workers_run(live: Any) -> None:
    output = run("run_importer", "Recorder", "add", "40", "2")
    assert output.startswith("Sent Recorder.add as task ")
    Recorder.calls.clear()


@pytest.mark.django_db
def test_run_importer_prints_a_returned_status_as_its_value_not_the_enums_repr(wikidata: Any) -> None:
    """Before: ``WikidataImporter.import_single returned: Status.IMPORTED``."""
    from tests.importers.entities import item

    wikidata.add_entity(item("Q1", "Item Q1"))
    output = run("run_importer", "WikidataImporter", "import_single", "--kwarg", "wikidata_id=Q1", "--sync")
    assert 'WikidataImporter.import_single returned: "imported"' in output
