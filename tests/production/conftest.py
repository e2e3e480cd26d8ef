"""Fault-test fixtures: private brokers, workers with settings of their own, this process sending to them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.signals import before_task_publish
from django.conf import settings
from django.db import connection
from kombu import pools

from config.celery_app import app
from config.settings.base import redis_url
from core.broker import broker_transport
from core.redis_urls import tls_options
from tests.conftest import ROOT, make_worker
from tests.support.tls import free_port, self_signed_certificate
from tests.support.waiting import wait_until
from tests.support.wikidata_server import StandInWikidata
from tests.support.workers import CeleryWorker


def database_name() -> str:
    return str(connection.settings_dict["NAME"])


class RedisServer:
    """A ``redis-server`` of one test's own, on a free port, keeping its files in ``directory``.

    ``persistent`` turns the append-only file on, fsynced on every write, as a production broker
    must be configured to survive a restart; otherwise it keeps nothing on disk, like the
    machine's shared Redis. ``heroku`` makes it one as Heroku's Key-Value Store serves it today
    (https://devcenter.heroku.com/articles/heroku-redis, "Connecting over TLS"; the mini plan's
    limits): TLS only, with a self-signed certificate, a password, ``maxmemory 25mb`` with
    ``noeviction``, and 20 clients at most; its ``url`` is then the add-on's ``REDIS_URL`` as it
    comes, ``rediss://:PASSWORD@HOST:PORT``, with no database and no options.
    """

    # Heroku Key-Value Store, mini plan: 25 MB, 20 connections (devcenter "Heroku Key-Value Store" plans).
    HEROKU_MAXMEMORY = "25mb"
    HEROKU_MAXCLIENTS = 20

    def __init__(self, directory: Path, persistent: bool = False, heroku: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.persistent = persistent
        self.heroku = heroku
        self.port = free_port()
        self.password = f"p{os.urandom(12).hex()}" if heroku else ""
        self.url = (
            f"rediss://:{self.password}@127.0.0.1:{self.port}"
            if heroku
            else f"redis://127.0.0.1:{self.port}/0"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        if not self.persistent:
            persistence = ["--appendonly", "no"]
        listen = ["--port", str(self.port)]
        if self.heroku:
            certificate, key = self_signed_certificate(self.directory)
            listen = [
                "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(certificate),
                "--tls-key-file", str(key), "--tls-auth-clients", "no", "--requirepass", self.password,
                "--maxmemory", self.HEROKU_MAXMEMORY, "--maxmemory-policy", "noeviction",
                "--maxclients", str(self.HEROKU_MAXCLIENTS),
            ]  # fmt: skip
        command = [
            "redis-server", *listen, "--bind", "127.0.0.1", "--save", "", *persistence,
            "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, f"redis-server exited:\n{self.log_tail()}"
            try:
                return bool(self.client().ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, timeout=10, why=self.log_tail)

    def kill(self) -> None:
        """Crash it (SIGKILL): whatever it has not written to disk is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def client(self) -> redis.Redis:
        """A client of the test's own (verifying nothing, with the password): to look inside."""
        if self.heroku:
            return redis.Redis(
                host="127.0.0.1", port=self.port, password=self.password, ssl=True, ssl_cert_reqs="none",
                socket_timeout=5,
            )  # fmt: skip
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def log_tail(self) -> str:
        log = self.directory / "redis.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.kill()  # started but never answered: not left behind
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


# This process's Celery settings that a Deployment switches, under the Django namespace's keys:
# app.conf.broker_url would be shadowed by CELERY_BROKER_URL from the Django settings.
SENDER_KEYS = (
    "CELERY_BROKER_URL",
    "CELERY_BROKER_USE_SSL",
    "CELERY_BROKER_TRANSPORT",
    "CELERY_BROKER_TRANSPORT_OPTIONS",
    "CELERY_TASK_ALWAYS_EAGER",
)


class Deployment:
    """A broker, the workers on it, and this test process sending to it too.

    Entering it points this process's Celery app at ``broker_url`` (so that ``as_task``,
    ``import_wikidata`` and pings go there) and turns eager mode off; leaving it stops the
    workers, closes the connections to that broker and restores the app as it was.
    ``visibility_timeout`` (seconds, Redis only) is given to both sides alike. In kombu only a
    consumer reads it, when it restores unacknowledged messages (at its start, on reconnection,
    then every 100 s or so), so it is the workers' value that counts; the sender gets the same so
    that any process on this broker would restore messages by the same rule.
    """

    def __init__(
        self, broker_url: str, log_dir: Path, standin: StandInWikidata, visibility_timeout: int | None = None
    ) -> None:
        self.broker_url = broker_url
        self.log_dir = log_dir
        self.standin = standin
        self.visibility_timeout = visibility_timeout
        self.workers: list[CeleryWorker] = []
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> Deployment:
        self._saved = {key: app.conf[key] for key in SENDER_KEYS}
        self._forget_pools()
        # As the settings give it to every process: with the project's TLS policy explicit.
        app.conf.CELERY_BROKER_URL = redis_url(self.broker_url)
        app.conf.CELERY_BROKER_USE_SSL = tls_options(app.conf.CELERY_BROKER_URL)
        app.conf.CELERY_BROKER_TRANSPORT = broker_transport(app.conf.CELERY_BROKER_URL)
        if self.visibility_timeout is not None:
            options = {**self._saved["CELERY_BROKER_TRANSPORT_OPTIONS"]}
            options["visibility_timeout"] = self.visibility_timeout
            app.conf.CELERY_BROKER_TRANSPORT_OPTIONS = options
        app.conf.CELERY_TASK_ALWAYS_EAGER = False
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            for worker in self.workers:
                worker.kill()  # disposable, like their broker: no warm shutdown to wait for
        finally:
            # Close this broker's pooled connections: the broker is about to go away.
            with contextlib.suppress(Exception):
                self._forget_pools(close=True)
            for key, value in self._saved.items():
                app.conf[key] = value

    def environment(self) -> dict[str, str]:
        """What a process needs to work on this deployment: its broker, the test database, the stand-in."""
        env = {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            # The queue names derive from it; the test settings' default is per process.
            "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
            "TEST_DATABASE_NAME": database_name(),
            "WIKIDATA_BASE_URL": self.standin.base_url,
        }
        if self.visibility_timeout is not None:
            # config/settings/base.py reads it into CELERY_BROKER_TRANSPORT_OPTIONS.
            env["CELERY_VISIBILITY_TIMEOUT"] = str(self.visibility_timeout)
        return env

    def worker(self, name: str = "w", concurrency: int = 2) -> CeleryWorker:
        """Start a worker on this deployment's broker (killed when the Deployment ends)."""
        log_dir = self.log_dir / f"{name}-{len(self.workers)}"
        worker = make_worker(name, log_dir, self.environment(), concurrency)
        self.workers.append(worker)  # before it starts: a worker that fails to start is killed too
        worker.start()
        return worker

    def logs(self) -> str:
        """Every worker's log tail, to explain a failure."""
        return "\n".join(f"--- {w.nodename}\n{w.log_tail()}" for w in self.workers)

    @staticmethod
    def _forget_pools(close: bool = False) -> None:
        # Celery keeps one connection pool and one producer pool for the app, made from its
        # broker settings on first use, and kombu keeps them in global groups keyed by the
        # connection's parameters: drop the app's, so that they are made again for the new broker.
        # None of this is in the type stubs.
        celery: Any = app
        if close:
            key = celery.connection_for_write().__eqhash__()
            groups: Any = (pools.connections, pools.producers)  # type: ignore[attr-defined]
            for group in groups:
                pool = dict.pop(group, key, None)
                if pool is not None:
                    pool.force_close_all()
        celery._pool = None
        celery.amqp._producer_pool = None


def manage(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py`` in a process of its own, as an operator would, killed if it overruns."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def deploy(
    tmp_path: Path, django_db_setup: None, standin: StandInWikidata
) -> Iterator[Callable[..., Deployment]]:
    """Make Deployments (``deploy(broker_url, visibility_timeout=None)``); all are undone at teardown."""
    with contextlib.ExitStack() as stack:

        def make(broker_url: str, visibility_timeout: int | None = None) -> Deployment:
            deployment = Deployment(broker_url, tmp_path / "workers", standin, visibility_timeout)
            return stack.enter_context(deployment)

        yield make


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own: nothing another test or test run does can reach its queues.

    The machine's shared Redis will not do for fault tests: kombu keeps every database's
    unacknowledged messages in one ``unacked`` hash, and a worker restores any of them older
    than its own visibility timeout, whichever queue or test run they belong to.
    """
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def publications() -> Iterator[list[str]]:
    """The ids of the tasks this process publishes while the test runs, in order."""
    published: list[str] = []

    def collect(headers: dict[str, Any], **kwargs: Any) -> None:
        published.append(headers["id"])

    before_task_publish.connect(collect, weak=False)
    try:
        yield published
    finally:
        before_task_publish.disconnect(collect)  # type: ignore[attr-defined]


@pytest.fixture
def heroku_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis as Heroku's Key-Value Store serves it: TLS, self-signed certificate, password, 25 MB."""
    with RedisServer(tmp_path / "heroku-redis", heroku=True) as server:
        yield server


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own that keeps its data across a restart (append-only file, always fsynced)."""
    with RedisServer(tmp_path / "redis", persistent=True) as server:
        yield server


@pytest.fixture
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of this test's own, deleted with its queues and exchanges afterwards."""
    vhost = f"importers-test-{os.getpid()}-{time.monotonic_ns()}"

    def rabbitmqctl(*args: str) -> None:
        done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"rabbitmqctl {' '.join(args)} failed:\n{done.stdout}{done.stderr}"

    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)
