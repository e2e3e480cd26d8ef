"""The database unavailable mid-import, and a task that fails unexpectedly: every id ends with an outcome."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from importers.models import ImportOutcome, ImportRun
from tests.conftest import ROOT
from tests.importers.entities import item
from tests.production.conftest import Deployment, RedisServer, database_name
from tests.support.outcomes import outcomes
from tests.support.waiting import wait_until
from tests.support.wikidata_server import Fault, StandInWikidata

pytestmark = pytest.mark.django_db(transaction=True)  # the workers must see what the test commits

OUTAGE = 3.0  # seconds


@contextlib.contextmanager
def database_refusing_connections() -> Iterator[None]:
    """The test database refuses connections, and those open are dropped, until the block ends.

    PostgreSQL: ``ALLOW_CONNECTIONS false`` and every backend terminated. SQLite: another writer
    holds an exclusive lock (the workers wait on it, up to their busy timeout).
    """
    name = database_name()
    if connection.vendor == "postgresql":
        server = connection.settings_dict
        url = f"postgres://{server['USER']}@{server['HOST']}:{server['PORT']}/postgres"
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            try:
                yield
            finally:
                admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        connection.close()  # this process's connection was dropped too
    else:
        locker = sqlite3.connect(name, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            locker.execute("ROLLBACK")
            locker.close()


def test_a_database_outage_mid_import_loses_no_id_and_the_waiting_command_comes_back(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata, tmp_path: Path
) -> None:
    ids = [f"Q{number}" for number in range(1, 41)]
    for entity_id in ids:
        wikidata.add_entity(item(entity_id, f"Item {entity_id}"))
    wikidata.latency = 0.05  # so that the outage falls in the middle of the import
    site = deploy(private_redis.url)
    site.worker("a", concurrency=4)
    id_file = tmp_path / "ids.txt"
    id_file.write_text("\n".join(ids) + "\n")
    command = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "import_wikidata",
            "--file",
            str(id_file),
            "--wait",
            "--timeout",
            "120",
        ],
        cwd=ROOT,
        env={**os.environ, **site.environment()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(outcomes(ids)) >= 8, why=site.logs)
        with database_refusing_connections():
            time.sleep(OUTAGE)
        stdout, stderr = command.communicate(timeout=150)
    finally:
        command.kill()
    assert command.returncode == 0, f"{stdout}\n{stderr}\n{site.logs()}"
    assert stdout.splitlines()[-1] == "Every id was imported."
    assert outcomes(ids) == dict.fromkeys(ids, "imported")
    run = ImportRun.objects.get()
    assert (run.requested, run.finished_now()) == (40, 40)


def test_with_workers_an_unexpected_failure_ends_the_wait_naming_the_id(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    # Before, the task raised RecursionError without an outcome, and --wait waited forever.
    wikidata.add_entity(item("Q1", "fine"))
    wikidata.add_fault("Q2", Fault.status(200, "[" * 100_000 + "]" * 100_000), times=10)
    site = deploy(private_redis.url)
    site.worker("a", concurrency=2)
    done = subprocess.run(
        [sys.executable, "manage.py", "import_wikidata", "Q1", "Q2", "--wait", "--timeout", "60"],
        cwd=ROOT,
        env={**os.environ, **site.environment()},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "1 id was not imported:\n  Q2: failed:" in done.stderr
    assert ImportOutcome.objects.get(pk="Q2").status == "failed"


def test_two_overlapping_runs_over_the_same_ids_each_report_their_own_truth(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    # Before, Q2's outcome moved to the later run when it recorded it: the earlier run, still
    # waiting for Q1, then found only Q1 and said "Every id was imported."
    wikidata.add_entity(item("Q1", "fine"))
    wikidata.add_fault("Q1", Fault.hang(1.8))  # keeps the first run waiting while the second runs
    site = deploy(private_redis.url)
    site.worker("a", concurrency=3)

    def start(*ids: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "manage.py", "import_wikidata", *ids, "--wait", "--timeout", "60"],
            cwd=ROOT,
            env={**os.environ, **site.environment()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = start("Q1", "Q2")
    try:
        wait_until(lambda: outcomes(["Q2"]), why=site.logs)  # the first run's outcome of Q2
        second = start("Q2")
        try:
            reports = [process.communicate(timeout=90) for process in (first, second)]
        finally:
            second.kill()
    finally:
        first.kill()
    for process, (stdout, stderr) in zip((first, second), reports, strict=True):
        assert process.returncode == 1, stdout + stderr
        assert "1 id was not imported:\n  Q2: missing" in stderr
    assert "1 imported, 1 missing" in reports[0][0]
    assert "1 missing" in reports[1][0]
