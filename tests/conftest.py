"""Fixtures shared by the test suite: a real Celery worker over a real Redis broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.conf import settings
from django.db import connection

from config.celery_app import app
from tests.support.wikidata_server import StandInWikidata

ROOT = Path(__file__).resolve().parent.parent


class LiveWorker:
    """A ``celery worker`` subprocess consuming this test run's queue."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.nodename = f"test-{os.getpid()}@localhost"
        self.log = log_dir / "worker.log"
        self.recorder_log = log_dir / "recorder.log"
        self.recorder_log.touch()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
            "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "PYTHONUNBUFFERED": "1",  # the tests read the worker's log as it runs
            "RECORDER_LOG": str(self.recorder_log),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        queues = f"{settings.CELERY_TASK_DEFAULT_QUEUE},{settings.WIKIDATA_QUEUE}"
        command = [
            sys.executable, "-m", "celery", "-A", "config.celery_app", "worker",
            "--hostname", self.nodename, "--queues", queues,
            "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited at start-up:\n{self.log_tail()}")
            if app.control.ping(destination=[self.nodename], timeout=0.5, limit=1):
                return
        raise RuntimeError(f"celery worker did not answer a ping within 30 s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def recorded(self) -> list[str]:
        return self.recorder_log.read_text().splitlines()


@pytest.fixture(scope="session")
def standin() -> Iterator[StandInWikidata]:
    """The stand-in Wikidata server, for the whole session."""
    with StandInWikidata() as server:
        yield server


@pytest.fixture
def wikidata(standin: StandInWikidata, settings: Any) -> StandInWikidata:
    """The stand-in server, emptied, with ``WIKIDATA_BASE_URL`` pointing at it."""
    standin.reset()
    settings.WIKIDATA_BASE_URL = standin.base_url
    return standin


@pytest.fixture(scope="session")
def live_worker(
    tmp_path_factory: pytest.TempPathFactory, django_db_setup: None, standin: StandInWikidata
) -> Iterator[LiveWorker]:
    """A real worker for the whole session; messages really go through Redis.

    It uses this run's test database and the stand-in Wikidata server.
    """
    env = {"TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]), "WIKIDATA_BASE_URL": standin.base_url}
    worker = LiveWorker(tmp_path_factory.mktemp("worker"), env=env)
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def live(live_worker: LiveWorker) -> Iterator[LiveWorker]:
    """Send tasks to the live worker in this test, rather than running them eagerly."""
    app.conf.CELERY_TASK_ALWAYS_EAGER = False  # the key under the CELERY namespace
    try:
        yield live_worker
    finally:
        app.conf.CELERY_TASK_ALWAYS_EAGER = True


@pytest.fixture
def published() -> Iterator[list[dict[str, Any]]]:
    """The messages published while the test runs (none in eager mode), as Celery's signal gives them."""
    sent: list[dict[str, Any]] = []

    def collect(**kwargs: Any) -> None:
        sent.append(kwargs)

    before_task_publish.connect(collect, weak=False)
    yield sent
    before_task_publish.disconnect(collect)  # type: ignore[attr-defined]
