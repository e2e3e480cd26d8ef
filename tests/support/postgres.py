"""A private PostgreSQL cluster that takes connections over TLS only, as Heroku Postgres does.

Heroku Postgres requires TLS (https://devcenter.heroku.com/articles/connecting-heroku-postgres,
"Connecting in Python": ``sslmode=require``) with a certificate that clients do not verify. This
cluster is made with ``initdb`` and started with ``pg_ctl`` on a free port, with ``ssl = on``, a
self-signed certificate, and a ``pg_hba.conf`` whose only TCP line is ``hostssl``: a client that
does not use TLS is refused.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import psycopg

from tests.support.tls import free_port, self_signed_certificate

__all__ = ["TLSPostgres"]


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not versions:
        raise FileNotFoundError(f"{name} not found: install PostgreSQL's server package")
    return str(versions[-1])


class TLSPostgres:
    """``initdb`` + ``pg_ctl start`` in a directory of its own; ``url`` is Heroku's form (no ``sslmode``)."""

    def __init__(self, database: str = "heroku") -> None:
        self.port = free_port()
        self.database = database
        # PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
        self._as = [] if os.getuid() != 0 else ["runuser", "-u", "postgres", "--"]
        self.directory = Path(tempfile.mkdtemp(prefix="importers-tls-pg-"))
        self.data = self.directory / "data"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> TLSPostgres:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        certificate, key = self_signed_certificate(self.directory)
        if self._as:
            postgres = pwd.getpwnam("postgres")
            for path in (self.directory, certificate, key):
                os.chown(path, postgres.pw_uid, postgres.pw_gid)
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.directory}'\n"
                f"ssl = on\nssl_cert_file = '{certificate}'\nssl_key_file = '{key}'\n"
                "fsync = off\n"
            )
        (self.data / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "log"), "-w", "start")
        with self.connect("postgres") as connection:
            connection.autocommit = True
            connection.execute(f'CREATE DATABASE "{self.database}"')

    def connect(self, database: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
        """A connection of the test's own, over TLS."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database or self.database,
            sslmode="require", connect_timeout=10,
        )  # fmt: skip

    def connections(self) -> int:
        """How many clients are connected to the database now (the asker's own excluded)."""
        with self.connect("postgres") as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.database]
            ).fetchone()
        return int(str(row[0])) if row else 0

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self._as, *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.directory,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
