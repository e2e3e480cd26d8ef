"""``import_wikidata`` in the embedded mode: per-id output, invalid input, exit status."""

from __future__ import annotations

import contextlib
import io
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

import importers.wikidata_api
from importers.models import ImportOutcome, ImportRun, WikidataEntity
from tests.importers.conftest import import_wikidata
from tests.support.wikidata_server import StandInWikidata

pytestmark = pytest.mark.django_db


def test_each_id_is_printed_with_its_outcome_and_label(served: StandInWikidata) -> None:
    output = import_wikidata("Q1022", "Q7259", "P31", "L7", "Q99999")
    assert output.splitlines() == [
        "Q1022   imported    Stuttgart",
        "Q7259   imported    Ada Lovelace",
        "P31     imported    instance of",
        "L7      imported    cat",
        "Q99999  redirected  Stuttgart",
        f"Run {ImportRun.objects.get().pk}: 4 imported, 1 redirected.",
        "Every id was imported.",
    ]
    assert ImportRun.objects.get().origin == "command"


def test_any_id_that_was_not_imported_makes_the_command_fail_naming_it(served: StandInWikidata) -> None:
    with pytest.raises(CommandError) as caught:
        import_wikidata("Q1022", "Q404")
    assert str(caught.value) == "1 id was not imported:\n  Q404: missing: no such entity (HTTP 404)"
    assert ImportOutcome.objects.get(pk="Q1022").status == "imported"  # the rest went ahead


def test_a_second_run_reports_unchanged(served: StandInWikidata) -> None:
    import_wikidata("Q1022")
    assert import_wikidata("Q1022").splitlines()[0] == "Q1022  unchanged   Stuttgart"


@pytest.mark.parametrize("bad", ["Q0", "q-1", "foo", "Q1;DROP", "", "P", "Q01"])
def test_invalid_ids_are_rejected_before_anything_is_sent(served: StandInWikidata, bad: str) -> None:
    with pytest.raises(CommandError) as caught:
        import_wikidata("Q1022", bad)
    assert f"argument 2: {bad!r} is not a Wikidata id" in str(caught.value)
    assert "nothing was imported" in str(caught.value)
    assert served.requests == []
    assert not ImportOutcome.objects.exists()
    assert not ImportRun.objects.exists()


def test_ids_from_a_file_are_streamed_and_invalid_lines_are_named(
    served: StandInWikidata, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# cities\nQ1022\n\nq7259  # lower case is fine\nQ0\nP31\nnope\n")
    with pytest.raises(CommandError) as caught:
        import_wikidata("--file", str(ids))
    assert str(caught.value).splitlines()[1:] == [
        "  line 5: 'Q0' is not a Wikidata id (Q, P or L and a number, e.g. Q1022)",
        "  line 7: 'nope' is not a Wikidata id (Q, P or L and a number, e.g. Q1022)",
    ]
    assert served.requests == []
    output = import_wikidata("--file", str(ids), "--skip-invalid")
    assert [line.split()[:2] for line in output.splitlines()[:3]] == [
        ["Q1022", "imported"],
        ["Q7259", "imported"],
        ["P31", "imported"],
    ]


def test_ids_can_come_from_standard_input(served: StandInWikidata, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Q1022\nL7\n"))
    output = import_wikidata("--file", "-")
    assert output.splitlines()[:2] == ["Q1022  imported    Stuttgart", "L7     imported    cat"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Give at least one id"),
        (["Q1", "--file", "ids.txt"], "not both"),
        (["--file", "/no/such/file"], "no such file"),
    ],
)
def test_usage_mistakes_are_command_errors(served: StandInWikidata, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        import_wikidata(*args)
    assert not WikidataEntity.objects.exists()


def test_waiting_gives_up_after_the_timeout_saying_what_is_missing() -> None:
    from importers.management.commands.import_wikidata import Command

    run = ImportRun.objects.create(requested=3)
    run.request([("Q1", "argument 1"), ("Q2", "argument 2"), ("Q3", "argument 3")])
    run.outcomes.filter(wikidata_id="Q1").update(status="imported")  # two tasks never report back
    with pytest.raises(CommandError) as caught:
        Command(stdout=io.StringIO(), stderr=io.StringIO()).wait_for(run, 3, timeout=0.2)
    assert str(caught.value).startswith(f"Gave up waiting after 0.2 s: 2 of 3 ids of run {run.pk}")


def test_verbosity_0_prints_nothing_and_still_fails_on_a_missing_id(served: StandInWikidata) -> None:
    assert import_wikidata("Q1022", "-v", "0") == ""
    with pytest.raises(CommandError, match="Q404: missing"):
        import_wikidata("Q1022", "Q404", "--verbosity", "0")


def test_the_progress_bar_goes_to_the_commands_stderr(served: StandInWikidata) -> None:
    from importers.management.commands.import_wikidata import Command

    err = io.StringIO()
    run = ImportRun.objects.create(requested=2)
    run.request([("Q1", "argument 1"), ("Q2", "argument 2")])
    run.outcomes.update(status="imported")
    Command(stdout=io.StringIO(), stderr=err).wait_for(run, 2)
    assert "importing" in err.getvalue()
    assert "2/2" in err.getvalue()
    quiet = io.StringIO()
    command = Command(stdout=io.StringIO(), stderr=quiet)
    command.verbosity = 0
    command.wait_for(run, 2)
    assert quiet.getvalue() == ""


@contextlib.contextmanager
def database_settings(**changes: Any) -> Iterator[None]:
    """This process's connection reopened with ``changes`` to its settings, and put back afterwards."""
    saved = connection.settings_dict.copy()
    connection.close()
    connection.settings_dict.update(changes)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


@contextlib.contextmanager
def locked_by_another_writer(tmp_path: Path) -> Iterator[None]:
    """Another process holds the write lock; this one waits for it for 0.2 s."""
    holder = sqlite3.connect(connection.settings_dict["NAME"])
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with database_settings(OPTIONS={**connection.settings_dict["OPTIONS"], "timeout": 0.2}):
            yield
    finally:
        holder.close()


def not_migrated(tmp_path: Path) -> contextlib.AbstractContextManager[None]:
    return database_settings(NAME=str(tmp_path / "empty.sqlite3"))


def cannot_be_opened(tmp_path: Path) -> contextlib.AbstractContextManager[None]:
    return database_settings(NAME=str(tmp_path / "no such directory" / "db.sqlite3"))


if connection.vendor == "sqlite":  # faults of an SQLite file; PostgreSQL has no such lock wait

    @pytest.mark.django_db(transaction=True)  # the test's own transaction would hold the write lock
    @pytest.mark.parametrize(
        ("fault", "says", "never_says"),
        [
            (
                locked_by_another_writer,
                "The database is locked: another process has been writing to it for longer than the 0.2 s "
                "this command waits (SQLITE_TIMEOUT). Try again when it is done, or set SQLITE_TIMEOUT to "
                "wait longer. (database is locked)",
                "migrate",
            ),
            (
                not_migrated,
                "The database has no tables yet (no such table: importers_importrun): "
                "run `python manage.py migrate` first.",
                "locked",
            ),
            (
                cannot_be_opened,
                "The database cannot be used (unable to open database file): "
                "check DATABASE_URL, and that the database is up.",
                "migrate",
            ),
        ],
        ids=["locked", "not migrated", "cannot be opened"],
    )
    def test_a_database_that_cannot_start_a_run_is_reported_as_locked_unmigrated_or_unusable(
        tmp_path: Path,
        fault: Callable[[Path], contextlib.AbstractContextManager[None]],
        says: str,
        never_says: str,
    ) -> None:
        with fault(tmp_path), pytest.raises(CommandError) as caught:
            import_wikidata("Q1022")
        assert str(caught.value) == says
        assert never_says not in str(caught.value)


def test_in_process_each_ids_line_is_printed_as_soon_as_it_ends(
    served: StandInWikidata, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, nothing was printed until every id was done (12 s of 12.6 s for 310 ids).
    out = io.StringIO()
    printed_before_each_fetch = []
    fetch = importers.wikidata_api.fetch_entity

    def watched(entity_id: str) -> Any:
        printed_before_each_fetch.append(out.getvalue())
        return fetch(entity_id)

    monkeypatch.setattr("importers.importers.fetch_entity", watched)
    call_command("import_wikidata", "Q1022", "P31", "L7", stdout=out, stderr=io.StringIO())
    assert printed_before_each_fetch == [
        "",
        "Q1022  imported    Stuttgart\n",
        "Q1022  imported    Stuttgart\nP31    imported    instance of\n",
    ]
