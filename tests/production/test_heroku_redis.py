"""Heroku's Key-Value Store as it is today: TLS only, a self-signed certificate, a password, 25 MB.

Its ``REDIS_URL`` comes as ``rediss://:PASSWORD@HOST:PORT``, with no options: the broker, the
request budget, its rate cap and the health check must all reach it with no other setting.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import Client, override_settings

from core.budget import BudgetUnavailable, RedisBudget
from core.redis_urls import safe_url, with_tls_policy
from importers.models import WikidataEntity
from tests.importers.entities import item
from tests.production.conftest import Deployment, RedisServer, manage
from tests.support.tls import free_port
from tests.support.wikidata_server import StandInWikidata

pytestmark = pytest.mark.django_db(transaction=True)  # the workers must see what the test commits

KOMBU_WARNING = "Secure redis scheme specified (rediss) with no ssl options"


def test_an_import_goes_through_heroku_redis_as_its_url_comes_with_one_line_saying_the_tls_policy(
    heroku_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    """Broker and request budget on one TLS Redis with a self-signed certificate: every id imported.

    Before: every id failed, the budget's redis-py client refusing the certificate
    (``CERTIFICATE_VERIFY_FAILED``), and kombu warned on every connection.
    """
    ids = [f"Q{number}" for number in range(1, 31)]
    for entity_id in ids:
        wikidata.add_entity(item(entity_id, f"Item {entity_id}"))
    site = deploy(heroku_redis.url)
    env = {**site.environment(), "CELERY_RESULT_BACKEND": "", "WIKIDATA_MAX_REQUESTS_PER_MINUTE": "100000"}
    site.environment = lambda: env  # type: ignore[method-assign]  # the workers get the same
    worker = site.worker("tls", concurrency=2)

    done = manage("import_wikidata", *ids, "--wait", "--timeout", "120", env=env, timeout=180)

    assert done.returncode == 0, done.stdout + done.stderr + site.logs()
    assert "Every id was imported." in done.stdout
    assert WikidataEntity.objects.filter(wikidata_id__in=ids).count() == len(ids)
    # The budget was kept in this Redis (its keys are there), not in each process's memory.
    assert heroku_redis.client().keys(f"{settings.WIKIDATA_LIMITER_KEY}*")
    log = worker.log_text()
    assert KOMBU_WARNING not in log + done.stderr
    certificate_line = (
        f"Redis over TLS: {safe_url(heroku_redis.url)}: TLS, the server's certificate is not verified"
    )
    assert log.count(certificate_line) == 1, log
    assert heroku_redis.password not in log + done.stdout + done.stderr


def test_a_verifying_policy_refuses_the_self_signed_certificate_and_says_which_redis(
    heroku_redis: RedisServer,
) -> None:
    """``REDIS_SSL_CERT_REQS=required`` is honoured by the budget: the error names the URL, no password."""
    budget = RedisBudget(with_tls_policy(heroku_redis.url, "required"), "verify", 3, 5.0)

    with pytest.raises(BudgetUnavailable) as caught, budget.slot():
        pass

    message = str(caught.value)
    assert "certificate verify failed" in message
    assert safe_url(heroku_redis.url) in message
    assert heroku_redis.password not in message


def test_the_urls_own_ssl_cert_reqs_wins_over_the_setting(heroku_redis: RedisServer) -> None:
    url = with_tls_policy(f"{heroku_redis.url}?ssl_cert_reqs=CERT_NONE", "required")
    budget = RedisBudget(url, "url-wins", 3, 5.0)

    with budget.slot():
        assert budget.in_flight() == 1


@pytest.mark.parametrize(
    "mistake",
    ["wrong password", "redis:// at the TLS port", "unreachable host"],
)
def test_a_wrong_redis_url_gives_one_clear_error_naming_it_without_its_password_and_enqueues_nothing(
    heroku_redis: RedisServer, mistake: str
) -> None:
    """``import_wikidata`` with a broker it cannot use: exit 1, one message, every id named, nothing run."""
    url = {
        "wrong password": heroku_redis.url.replace(heroku_redis.password, "not-the-password"),
        "redis:// at the TLS port": heroku_redis.url.replace("rediss://", "redis://"),
        "unreachable host": f"rediss://:{heroku_redis.password}@127.0.0.1:{free_port()}",
    }[mistake]
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CELERY_BROKER_URL": url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "TEST_DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
    }

    done = manage("import_wikidata", "Q1", "Q2", env=env)

    assert done.returncode == 1, done.stdout + done.stderr
    assert f"CommandError: The broker at {safe_url(url)} could not be reached:" in done.stderr
    assert "0 of 2 ids were enqueued; these 2 were not:\n  Q1 Q2" in done.stderr
    assert "Traceback" not in done.stderr
    assert heroku_redis.password not in done.stdout + done.stderr
    assert not WikidataEntity.objects.exists()


def test_health_checks_the_tls_redis_through_the_budgets_client(
    heroku_redis: RedisServer, deploy: Callable[..., Deployment], client: Client
) -> None:
    deploy(heroku_redis.url)
    settings_url = with_tls_policy(heroku_redis.url, "none")
    with override_settings(WIKIDATA_LIMITER_URL=settings_url):
        response = client.get("/health/")
    assert response.status_code == 200, response.content
    assert json.loads(response.content) == {"database": "ok", "broker": "ok", "redis": "ok"}

    with override_settings(WIKIDATA_LIMITER_URL=with_tls_policy(heroku_redis.url, "required")):
        response = client.get("/health/")
    # The broker answers kombu, but the budget's client refuses the certificate: an import would fail.
    assert response.status_code == 503
    assert json.loads(response.content)["redis"] == "down"
