"""The Procfile run as Heroku runs it, by a real Procfile runner, on Heroku's smallest add-on plans.

``honcho`` runs the release phase first and, once it has succeeded, ``web`` and ``worker`` (the
README's local run), with the production settings, Heroku's ``REDIS_URL`` (TLS with a self-signed
certificate and a password, 25 MB, 20 clients) and a PostgreSQL that takes TLS connections only
(``DATABASE_URL`` as Heroku sets it, plus ``PGSSLMODE=require``). One-off ``import_wikidata``
commands run beside them, as ``heroku run`` would. Every Redis client and PostgreSQL connection is
counted all along: Heroku's mini Key-Value Store and Essential Postgres plans allow 20 each.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.importers.entities import item
from tests.production.conftest import RedisServer
from tests.support.postgres import TLSPostgres
from tests.support.tls import free_port
from tests.support.waiting import wait_until
from tests.support.wikidata_server import StandInWikidata
from tests.support.workers import ROOT

# Heroku's smallest plans: mini Key-Value Store (20 clients, 25 MB), Essential Postgres (20 connections).
MAX_CONNECTIONS = 20
SMALL_IMPORT = 50
LARGE_IMPORT = 20_000
KOMBU_WARNING = "Secure redis scheme specified (rediss)"


class Peaks:
    """Samples the Redis clients and PostgreSQL connections every 50 ms, on a thread, keeping the most."""

    def __init__(self, redis_server: RedisServer, postgres: TLSPostgres) -> None:
        self.redis_server = redis_server
        self.postgres = postgres
        self.redis = 0
        self.postgresql = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        client: Any = self.redis_server.client()
        with self.postgres.connect("postgres") as connection:
            connection.autocommit = True  # pg_stat_activity is a snapshot per transaction
            while not self._stop.wait(0.05):
                # Our own sampling client is one of Redis's clients: not the deployment's.
                self.redis = max(self.redis, len(client.client_list()) - 1)
                row = connection.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.postgres.database]
                ).fetchone()
                self.postgresql = max(self.postgresql, int(str(row[0])) if row else 0)


@pytest.fixture
def tls_postgres() -> Iterator[TLSPostgres]:
    with TLSPostgres() as server:
        yield server


def heroku_environment(
    redis_server: RedisServer, postgres: TLSPostgres, standin: StandInWikidata, port: int
) -> dict[str, str]:
    """What Heroku's add-ons and ``heroku config:set`` give every dyno; nothing of the test settings."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CELERY_", "DJANGO_", "DATABASE_", "REDIS_", "WIKIDATA_", "TEST_", "PG"))
    }
    return {
        **environment,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "a-test-secret-key-" + "x" * 40,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": postgres.url,  # as Heroku Postgres sets it: no sslmode in it
        "PGSSLMODE": "require",
        "REDIS_URL": redis_server.url,  # as the Key-Value Store sets it: rediss://:password@host:port
        "WIKIDATA_BASE_URL": standin.base_url,
        "WIKIDATA_USER_AGENT": "importers-deploy-test/1.0 (test@example.org)",
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        # The Procfile says python, gunicorn and celery: this environment's, as a slug's are on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}",
    }


def honcho(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "honcho", "-f", "Procfile", *args],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, as a dyno
        )


def one_off(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``heroku run python manage.py ...``."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=5) as answer:
            return int(answer.status)
    except Exception:
        return 0


def stored(postgres: TLSPostgres) -> int:
    with postgres.connect() as connection:
        row = connection.execute("SELECT count(*) FROM importers_wikidataentity").fetchone()
    return int(str(row[0])) if row else 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.django_db(transaction=True)
def test_the_procfile_on_heroku_tls_redis_and_postgres_imports_everything_within_20_connections_each(
    heroku_redis: RedisServer, tls_postgres: TLSPostgres, standin: StandInWikidata, tmp_path: Path
) -> None:
    standin.reset()
    for number in range(1, LARGE_IMPORT + 1):
        standin.add_entity(item(f"Q{number}", f"Item {number}"))
    port = free_port()
    env = heroku_environment(heroku_redis, tls_postgres, standin, port)
    log = tmp_path / "honcho.log"

    # Heroku's build runs collectstatic; its release phase runs before the new processes start.
    built = one_off("collectstatic", "--noinput", "-v", "0", env=env, timeout=120)
    assert built.returncode == 0, built.stderr
    release = honcho("start", "release", env=env, log=log)
    assert release.wait(timeout=120) == 0, log.read_text()

    formation = honcho("start", "web", "worker", env=env, log=log)
    try:
        with Peaks(heroku_redis, tls_postgres) as peaks:
            wait_until(lambda: health(port) == 200, timeout=90, why=log.read_text)
            small = tmp_path / "small.txt"
            small.write_text("\n".join(f"Q{n}" for n in range(1, SMALL_IMPORT + 1)) + "\n")
            done = one_off(
                "import_wikidata", "--file", str(small), "--wait", "--timeout", "300", env=env, timeout=360
            )
            assert done.returncode == 0, done.stdout + done.stderr + log.read_text()[-5000:]
            assert stored(tls_postgres) == SMALL_IMPORT

            large = tmp_path / "large.txt"
            large.write_text("\n".join(f"Q{n}" for n in range(1, LARGE_IMPORT + 1)) + "\n")
            done = one_off(
                "import_wikidata", "--file", str(large), "--wait", "--timeout", "900", "-v", "0",
                env=env, timeout=960,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr[-5000:] + log.read_text()[-5000:]
            assert stored(tls_postgres) == LARGE_IMPORT
            assert health(port) == 200

            # The dump's COPY path, over the same TLS-only PostgreSQL: a one-off --sync import.
            dumped = [item(f"Q{900_000 + n}", f"Dumped {n}") for n in range(1, 4)]
            dump = tmp_path / "dump.json"
            dump.write_text("[\n" + ",\n".join(json.dumps(doc) for doc in dumped) + "\n]\n")
            done = one_off("import_wikidata_dump", str(dump), "--sync", env=env, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            assert stored(tls_postgres) == LARGE_IMPORT + len(dumped)
            admin = urllib.request.urlopen(
                urllib.request.Request(
                    f"http://127.0.0.1:{port}/admin/login/", headers={"X-Forwarded-Proto": "https"}
                ),
                timeout=10,
            )
            assert admin.status == 200

        assert peaks.redis <= MAX_CONNECTIONS, f"{peaks.redis} Redis clients at once"
        assert peaks.postgresql <= MAX_CONNECTIONS, f"{peaks.postgresql} PostgreSQL connections at once"
        assert KOMBU_WARNING not in log.read_text() + done.stderr
        assert "Redis over TLS:" in log.read_text()

        # A dyno restart: SIGTERM to every process of the formation at once.
        os.killpg(formation.pid, signal.SIGTERM)
        assert formation.wait(timeout=60) is not None
        wait_until(lambda: not group_alive(formation.pid), timeout=30, why=log.read_text)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(formation.pid, signal.SIGKILL)
        formation.wait(timeout=10)
    print(f"peaks: {peaks.redis} Redis clients, {peaks.postgresql} PostgreSQL connections")
