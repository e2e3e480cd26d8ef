"""The health URL reports the database and the broker."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.support.workers import CeleryWorker

pytestmark = pytest.mark.django_db


def test_health_is_ok_without_a_broker(client: Client) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "none: tasks run in process"}


def test_health_checks_the_broker_when_there_is_one(client: Client, live: CeleryWorker) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}


def test_health_is_503_when_the_broker_is_down(client: Client, live: CeleryWorker) -> None:
    from config.celery_app import app

    saved = app.conf.CELERY_BROKER_URL
    app.conf.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        response = client.get("/health/")
    finally:
        app.conf.CELERY_BROKER_URL = saved
    assert response.status_code == 503
    assert response.json()["broker"].startswith("error:")
