"""The health URL: 200 or 503 JSON in every case, naming what is down in fixed words, within a second."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import redis
from django.db import OperationalError, connections
from django.test import Client

from config.celery_app import app
from tests.production.conftest import RedisServer

pytestmark = pytest.mark.django_db

# What the errors say, and the client must never see: hosts, ports, credentials.
DATABASE_ERROR = 'connection to server at "db.internal" (10.0.0.5), port 5432 failed: Connection refused'
CLOSED_BROKER = "redis://:s3cret@127.0.0.1:1/7"  # nothing listens on port 1
SECRETS = ("db.internal", "10.0.0.5", "5432", "127.0.0.1", ":1", "s3cret")


@pytest.fixture
def broker() -> Iterator[None]:
    """A broker configured (this run's Redis), as in production: not the in-process mode."""
    app.conf.CELERY_TASK_ALWAYS_EAGER = False  # the key under the CELERY namespace
    try:
        yield
    finally:
        app.conf.CELERY_TASK_ALWAYS_EAGER = True


@contextlib.contextmanager
def database_down() -> Iterator[None]:
    """Every attempt to use the database fails as when its server refuses connections."""
    refused = OperationalError(DATABASE_ERROR)
    # On the class: the check runs on a thread of its own, with a connection of its own.
    with mock.patch.object(type(connections["default"]), "ensure_connection", side_effect=refused):
        yield


@contextlib.contextmanager
def database_hanging() -> Iterator[None]:
    """The database server takes the connection and never answers (until the test ends)."""
    released = threading.Event()
    with mock.patch.object(
        type(connections["default"]), "ensure_connection", side_effect=lambda: released.wait(60)
    ):
        try:
            yield
        finally:
            released.set()


@contextlib.contextmanager
def broker_at(url: str) -> Iterator[None]:
    saved = app.conf.CELERY_BROKER_URL
    app.conf.CELERY_BROKER_URL = url
    try:
        yield
    finally:
        app.conf.CELERY_BROKER_URL = saved


@contextlib.contextmanager
def broker_refusing() -> Iterator[None]:
    with broker_at(CLOSED_BROKER):
        yield


@contextlib.contextmanager
def broker_hanging() -> Iterator[None]:
    """A broker that takes connections (the kernel does, into the backlog) and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with broker_at(f"redis://127.0.0.1:{silent.getsockname()[1]}/0"):
            yield


FAULTS = {
    "database down": database_down,
    "broker refusing": broker_refusing,
    "broker hanging": broker_hanging,
}


def test_health_is_ok_without_a_broker(client: Client) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "none: tasks run in process"}


def test_health_checks_the_broker_when_there_is_one(client: Client, broker: None) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    # The broker is Redis: it answers redis-py too, as the request budget reaches it.
    assert response.json() == {"database": "ok", "broker": "ok", "redis": "ok"}


@pytest.mark.parametrize(
    ("faults", "database", "broker_state"),
    [
        (["database down"], "down", "ok"),
        (["broker refusing"], "ok", "down"),
        (["broker hanging"], "ok", "down"),
        (["database down", "broker refusing"], "down", "down"),
    ],
    ids=lambda value: " and ".join(value) if isinstance(value, list) else None,
)
def test_health_is_a_503_json_naming_what_is_down_within_a_second_with_the_details_only_in_the_log(
    client: Client,
    broker: None,
    caplog: pytest.LogCaptureFixture,
    faults: list[str],
    database: str,
    broker_state: str,
) -> None:
    with contextlib.ExitStack() as stack:
        for fault in faults:
            stack.enter_context(FAULTS[fault]())
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="core.views"):
            response = client.get("/health/")
        elapsed = time.monotonic() - started

    assert response.status_code == 503, response.json()
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"database": database, "broker": broker_state, "redis": broker_state}
    assert elapsed < 1.0
    body = response.content.decode()
    assert not [secret for secret in SECRETS if secret in body]
    if database == "down":
        assert "db.internal" in caplog.text
    if broker_state == "down":
        assert "the broker is down" in caplog.text


def test_health_answers_while_the_database_hangs_and_names_it_down(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: no bound; the request waited as long as the database (30 s, then gunicorn's 500)."""
    started = time.monotonic()
    with database_hanging(), caplog.at_level(logging.WARNING, logger="core.views"):
        response = client.get("/health/")
    elapsed = time.monotonic() - started

    assert response.status_code == 503, response.json()
    assert response.json() == {"database": "down", "broker": "none: tasks run in process"}
    assert elapsed < 30  # the hang lasts 60 s: the answer did not wait for it
    assert "the database did not answer" in caplog.text


def test_postgresql_connections_have_a_connect_timeout() -> None:
    from config.settings.base import database

    assert database("postgres://u@db.example.com/d")["OPTIONS"]["connect_timeout"] == 10
    assert database("postgres://u@db.example.com/d?connect_timeout=3")["OPTIONS"]["connect_timeout"] == 3


def test_health_names_a_redis_that_is_full_and_refuses_writes(
    client: Client, broker: None, tmp_path: Path
) -> None:
    """Before: "ok", while nothing could be enqueued and no worker could start (Heroku's mini Key-Value
    Store: 25 MB, noeviction)."""
    with RedisServer(tmp_path / "redis") as server:
        full = server.client()
        full.config_set("maxmemory", "2mb")
        full.config_set("maxmemory-policy", "noeviction")
        with broker_at(server.url):
            assert client.get("/health/").json()["redis"] == "ok"
            with contextlib.suppress(redis.exceptions.OutOfMemoryError):
                for number in range(10_000):
                    full.set(f"filler-{number}", b"x" * 1_400)  # about a queued message
            response = client.get("/health/")
        full.close()
    assert response.status_code == 503, response.json()
    assert response.json() == {"database": "ok", "broker": "ok", "redis": "full"}
