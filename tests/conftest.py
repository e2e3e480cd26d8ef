"""Fixtures shared by the test suite: a real Celery worker over a real Redis broker; a clean registry."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.conf import settings
from django.db import connection

from config.celery_app import app
from core.registry import registry
from importers.wikidata_api import budget_for
from tests.support.wikidata_server import StandInWikidata
from tests.support.workers import CeleryWorker

ROOT = Path(__file__).resolve().parent.parent


def make_worker(
    name: str,
    log_dir: Path,
    env: Mapping[str, str],
    concurrency: int = 2,
    kind: type[CeleryWorker] = CeleryWorker,
) -> CeleryWorker:
    """A worker of this test run, not started yet: the test settings, this run's queues, ``env`` on top.

    Its node name ends in this process's id, so that test runs sharing a broker never answer each
    other's pings; it logs to ``log_dir/worker.log``. ``kind=ProcfileWorker`` starts it with the
    Procfile's command line (and its concurrency).
    """
    return kind(
        f"{name}-{os.getpid()}",
        [settings.CELERY_TASK_DEFAULT_QUEUE, settings.WIKIDATA_QUEUE],
        env={
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND or "",
            # The queue names derive from it; the test settings' default is per process.
            "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            **env,
        },
        concurrency=concurrency,
        log=log_dir / "worker.log",
    )


@pytest.fixture(autouse=True)
def fresh_request_budget() -> None:
    """A new in-process request budget for each test: a pause one test's 429 began ends with it."""
    budget_for.cache_clear()


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
def recorder_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file where the live worker's ``Recorder`` writes each call it gets, one line each."""
    log = tmp_path_factory.mktemp("recorder") / "recorder.log"
    log.touch()
    return log


@pytest.fixture(scope="session")
def live_worker(
    tmp_path_factory: pytest.TempPathFactory,
    django_db_setup: None,
    standin: StandInWikidata,
    recorder_log: Path,
) -> Iterator[CeleryWorker]:
    """A real worker for the whole session; messages really go through Redis.

    It uses this run's test database and the stand-in Wikidata server.
    """
    env = {
        "TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "WIKIDATA_BASE_URL": standin.base_url,
        "RECORDER_LOG": str(recorder_log),
    }
    worker = make_worker("test", tmp_path_factory.mktemp("worker"), env)
    try:
        worker.start()
        yield worker
    finally:
        worker.stop(timeout=20)


@pytest.fixture
def live(live_worker: CeleryWorker) -> Iterator[CeleryWorker]:
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


@contextlib.contextmanager
def registry_restored() -> Iterator[None]:
    """Put the importer registry back as it was on entry, in the same order, when the block ends.

    Importer classes defined in the block are registered as they are created; this removes them,
    and brings back any that the block replaced or unregistered, without a list of keys to keep.
    """
    before = list(registry.items())
    try:
        yield
    finally:
        after = list(registry.items())
        # Keys are kept in registration order: re-register from the first difference onwards.
        same = itertools.takewhile(lambda pair: pair[0] == pair[1], zip(before, after, strict=False))
        kept = sum(1 for _ in same)
        for key, _ in after[kept:]:
            registry.unregister(key)
        for key, importer in before[kept:]:
            registry.register(key, importer)


@pytest.fixture
def registry_snapshot() -> Iterator[None]:
    """The importer registry as it was before the test, restored after it (see ``registry_restored``)."""
    with registry_restored():
        yield
