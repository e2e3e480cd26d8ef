"""The broker down, restarted, or RabbitMQ instead of Redis: every id gets an outcome, or a clear error."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable

import pytest
from django.conf import settings
from django.core.management import call_command

from core.broker import broker_transport
from core.redis_urls import safe_url
from importers.importers import WikidataImporter
from importers.models import ImportOutcome, ImportRun, WikidataEntity
from tests.importers.entities import PROPERTY, STUTTGART, item
from tests.production.conftest import (
    Deployment,
    RedisServer,
    database_name,
    manage,
)
from tests.support.outcomes import outcomes, wait_for_outcomes
from tests.support.tls import free_port
from tests.support.waiting import wait_until
from tests.support.wikidata_server import StandInWikidata

pytestmark = pytest.mark.django_db(transaction=True)  # the workers must see what the test commits


# Scenario: the broker is down when import_wikidata enqueues.


@pytest.mark.parametrize(
    "broker_url",
    [
        pytest.param("redis://127.0.0.1:{port}/0", id="redis"),
        pytest.param("amqp://guest:guest@127.0.0.1:{port}//", id="amqp"),
    ],
)
def test_with_the_broker_down_import_wikidata_fails_within_seconds_naming_the_ids_not_enqueued(
    broker_url: str,
) -> None:
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CELERY_BROKER_URL": broker_url.format(port=free_port()),  # nothing listens there
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "TEST_DATABASE_NAME": database_name(),
    }
    started = time.monotonic()
    done = manage("import_wikidata", "Q1022", "q7259", "P31", env=env)
    elapsed = time.monotonic() - started

    assert done.returncode == 1, done.stderr
    assert elapsed < 15, f"took {elapsed:.1f} s"  # start-up included; the publish retries take ~1 s
    broker = safe_url(env["CELERY_BROKER_URL"])  # named, without its password
    assert f"CommandError: The broker at {broker} could not be reached:" in done.stderr
    assert "guest:guest" not in done.stderr
    assert "0 of 3 ids were enqueued; these 3 were not:\n  Q1022 Q7259 P31\n" in done.stderr
    assert "Enqueued" not in done.stdout
    assert not ImportOutcome.objects.exists()
    assert ImportRun.objects.get().requested == 0


# Scenario: Redis restarted while a bulk import runs.

# Short, so that at reconnection the worker restores the messages it had in flight (they are
# older than this by then) rather than after the production hour; both sides get it.
VISIBILITY_TIMEOUT = 2
# How often a worker restores the unacknowledged messages older than the visibility timeout: kombu's
# Redis transport tries every 10 s (Transport.register_with_event_loop) and acts on every 10th try
# (QoS.restore_visible's interval).
RESTORE_PERIOD = 10 * 10


def test_the_worker_reconnects_after_a_redis_restart_mid_import_and_every_id_ends_with_an_outcome(
    persistent_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    """Redis crashes (SIGKILL) and comes back on the same port while the worker imports.

    A Redis broker keeps queued and unacknowledged messages only in memory unless it persists
    them: after a restart of a Redis without persistence (as the machine's shared one is run)
    every message in it is gone, and no setting of Celery or kombu can bring one back. So this
    broker runs as a production broker must: with the append-only file, fsynced on every write.
    Then the queued messages survive, and so do those the worker had taken but not acknowledged
    (kombu keeps them in the ``unacked`` hash); the worker cancels its running tasks when the
    connection drops, reconnects, and restores those messages (older than the visibility
    timeout) when it does. A task that finished during the outage runs again and finds its
    revision stored: ``unchanged``.
    """
    ids = [f"Q{number}" for number in range(1, 21)]
    for entity_id in ids:
        wikidata.add_entity(item(entity_id, f"Item {entity_id}"))
    wikidata.latency = 0.2  # so that the import is still running when Redis goes down
    site = deploy(persistent_redis.url, visibility_timeout=VISIBILITY_TIMEOUT)
    worker = site.worker("a", concurrency=2)

    call_command("import_wikidata", *ids, stdout=io.StringIO(), stderr=io.StringIO())
    wait_until(lambda: len(outcomes(ids)) >= 4, why=site.logs)
    persistent_redis.kill()
    assert len(outcomes(ids)) < len(ids)  # the crash came mid-run
    time.sleep(VISIBILITY_TIMEOUT + 1)  # down for longer than the visibility timeout
    persistent_redis.start()

    # Within a minute, nearly always. Seldom (once in some hundred runs, on a loaded machine), a
    # message received again after the restart was handed to a pool process that never ran it;
    # it is still unacknowledged in Redis, and kombu delivers it again when it next restores the
    # unacknowledged messages older than the visibility timeout: every 100 s (RESTORE_PERIOD).
    found = wait_for_outcomes(ids, timeout=RESTORE_PERIOD + 60, why=site.logs)
    assert set(found.values()) <= {"imported", "unchanged"}, found
    assert WikidataEntity.objects.count() == len(ids)
    assert "Connection to broker lost" in worker.log_text()
    broker = persistent_redis.client()
    wait_until(lambda: broker.hlen("unacked") == 0, why=site.logs)  # every message acknowledged
    assert broker.llen(settings.WIKIDATA_QUEUE) == 0


# Scenario: the end-to-end import over RabbitMQ as well as Redis.


@pytest.fixture(params=["redis", "amqp"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """A broker of this test's own: a private Redis, or a RabbitMQ virtual host."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("private_redis")
        return server.url
    vhost: str = request.getfixturevalue("rabbitmq_vhost")
    return vhost


def test_import_wikidata_waits_for_a_worker_over_each_broker(
    broker_url: str, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    wikidata.add_entity(STUTTGART)
    wikidata.add_entity(PROPERTY)
    site = deploy(broker_url)
    worker = site.worker("a", concurrency=2)

    # As an operator runs it, in a process of its own: --wait has no time limit of its own.
    done = manage("import_wikidata", "Q1022", "Q404", "--wait", env=site.environment())
    assert done.returncode == 1, done.stderr
    run = ImportRun.objects.get()
    assert re.match(rf"Enqueued 2 import tasks .*\(run {run.pk}\)\.\n", done.stdout), done.stdout
    assert done.stdout.endswith(f"Run {run.pk}: 1 imported, 1 missing.\n")
    assert done.stderr.endswith("1 id was not imported:\n  Q404: missing: no such entity (HTTP 404)\n")
    assert (run.requested, run.finished_now()) == (2, 2)

    # This process sends over the same broker too.
    WikidataImporter().import_single.as_task(wikidata_id="P31")
    assert wait_for_outcomes(["Q1022", "Q404", "P31"], why=site.logs) == {
        "Q1022": "imported",
        "Q404": "missing",
        "P31": "imported",
    }
    assert worker.log_text().count("WikidataImporter.import_single[") >= 3
    # On Redis, through kombu's transport as core.broker changes it.
    scheme = broker_transport(broker_url) or broker_url.split("://")[0]
    assert f"Connected to {scheme}://" in worker.log_text()


def test_waiting_with_no_worker_on_the_queue_says_so(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    site = deploy(private_redis.url)  # a broker, and no worker
    done = manage("import_wikidata", "Q1022", "--wait", "--timeout", "8", env=site.environment())
    assert done.returncode == 1
    assert f"No worker consumes the '{settings.WIKIDATA_QUEUE}' queue: start one" in done.stderr
    assert "Gave up waiting after 8 s" in done.stderr


def test_run_importer_with_a_broker_and_no_result_backend_sends_and_exits_0(
    private_redis: RedisServer, deploy: Callable[..., Deployment]
) -> None:
    # The documented production setup keeps no results; run_importer used to send the task and
    # then die asking for its result ('DisabledBackend' object has no attribute ...).
    site = deploy(private_redis.url)
    env = {**site.environment(), "CELERY_RESULT_BACKEND": ""}
    done = manage("run_importer", "Recorder", "add", "1", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Sent Recorder.add as task ")
    assert private_redis.client().llen(settings.CELERY_TASK_DEFAULT_QUEUE) == 1  # sent once
