"""SIGTERM to a worker's whole process group, as Heroku stops a dyno: running tasks finish, once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from celery.signals import worker_process_init
from django.conf import settings

from core.budget import RedisBudget
from importers.importers import WikidataImporter
from importers.models import WikidataEntity
from tests.importers.entities import item
from tests.production.conftest import Deployment, RedisServer
from tests.support.outcomes import outcomes, wait_for_outcomes
from tests.support.waiting import wait_until
from tests.support.wikidata_server import Fault, StandInWikidata
from tests.support.workers import ProcfileWorker, procfile_worker

pytestmark = pytest.mark.django_db(transaction=True)  # the workers must see what the test commits

# Heroku sends SIGTERM to every process of a dyno, and SIGKILL to whatever is left 30 s later.
GRACE = 30.0
# Every task is still waiting for its answer when the signal comes; shorter than the test settings'
# WIKIDATA_TIMEOUT (2 s), so that the client waits rather than retries: one request per task.
HANG = 1.5


def start_procfile_worker(site: Deployment, name: str, **env: str) -> ProcfileWorker:
    """Start a Procfile worker on ``site``'s broker, with ``env`` set (killed when the Deployment ends)."""
    queues = [settings.CELERY_TASK_DEFAULT_QUEUE, settings.WIKIDATA_QUEUE]
    log = Path(site.log_dir) / f"{name}-{len(site.workers)}" / "worker.log"
    worker = ProcfileWorker(f"{name}-{os.getpid()}", queues, env={**site.environment(), **env}, log=log)
    site.workers.append(worker)
    worker.start()
    return worker


def test_sigterm_to_the_whole_process_group_lets_running_imports_finish_and_none_runs_again(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    _, arguments = procfile_worker()
    concurrency = int(arguments[arguments.index("--concurrency") + 1])
    ids = [f"Q{number}" for number in range(1, concurrency + 1)]
    for entity_id in ids:
        wikidata.add_entity(item(entity_id, f"Item {entity_id}"))
        wikidata.add_fault(entity_id, Fault.hang(HANG))  # every pool process mid-import
    # A short visibility timeout: a message the first worker left unacknowledged would be handed
    # out again as soon as the next worker starts, and the test would see the id fetched twice.
    site = deploy(private_redis.url, visibility_timeout=1)
    worker = start_procfile_worker(site, "a")
    for entity_id in ids:
        WikidataImporter().import_single.as_task(wikidata_id=entity_id)
    wait_until(lambda: all(wikidata.count(entity_id) for entity_id in ids), why=site.logs)

    signalled = time.monotonic()
    os.killpg(worker.pid, signal.SIGTERM)  # the main process and every pool process at once
    wait_until(worker.exited, timeout=GRACE, why=site.logs, interval=0.1)
    assert time.monotonic() - signalled < GRACE
    assert outcomes(ids) == dict.fromkeys(ids, "imported"), site.logs()
    assert private_redis.client().hlen("unacked") == 0, site.logs()  # every message acknowledged

    time.sleep(1.5)  # past the visibility timeout: a new worker would restore a message left behind
    start_procfile_worker(site, "b")
    WikidataImporter().import_single.as_task(wikidata_id="Q42")  # behind anything restored
    wikidata.add_entity(item("Q42", "Item Q42"))
    assert wait_for_outcomes(["Q42"], why=site.logs) == {"Q42": "imported"}
    assert {entity_id: wikidata.count(entity_id) for entity_id in ids} == dict.fromkeys(ids, 1)
    assert WikidataEntity.objects.count() == concurrency + 1


def test_a_task_still_running_when_the_warm_shutdown_times_out_is_cancelled_and_its_message_given_back(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    wikidata.add_entity(item("Q1", "Item Q1"))
    wikidata.add_fault("Q1", Fault.hang(10))  # longer than the warm shutdown's timeout
    site = deploy(private_redis.url)
    # Leases of a minute: a slot the cancelled task held would still be out when the test looks.
    worker = start_procfile_worker(
        site, "a", IMPORTER_WARM_SHUTDOWN_TIMEOUT="1", WIKIDATA_ATTEMPT_DEADLINE="60"
    )
    budget = RedisBudget(private_redis.url, settings.WIKIDATA_LIMITER_KEY, 3, 61)
    WikidataImporter().import_single.as_task(wikidata_id="Q1")
    wait_until(lambda: wikidata.count("Q1"), why=site.logs)
    assert budget.in_flight() == 1  # its request holds a slot

    signalled = time.monotonic()
    os.killpg(worker.pid, signal.SIGTERM)
    wait_until(worker.exited, timeout=GRACE, why=site.logs, interval=0.1)
    # Cancelled after 1 s, before its request timed out (2 s) and was tried again.
    assert time.monotonic() - signalled < 5
    assert outcomes(["Q1"]) == {}
    assert private_redis.client().llen(settings.WIKIDATA_QUEUE) == 1, site.logs()  # back in the queue
    assert "IMPORTER_WARM_SHUTDOWN_TIMEOUT" in worker.log_text()
    # Its slot came back with it (before: it stayed out for the lease, and no request started).
    assert budget.in_flight() == 0

    start_procfile_worker(site, "b")  # the next dyno
    assert wait_for_outcomes(["Q1"], why=site.logs) == {"Q1": "imported"}
    assert wikidata.count("Q1") == 2


def test_a_cold_shutdown_still_stops_running_imports_at_once_and_gives_their_messages_back(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    # Pool processes ignore a SIGTERM from outside, but not their own worker's: SIGQUIT (cold
    # shutdown) cancels the running tasks, which ends their pool processes with SIGTERM.
    wikidata.add_entity(item("Q1", "Item Q1"))
    # Every attempt times out (after WIKIDATA_TIMEOUT, 2 s), so the import would take about 8 s.
    wikidata.add_fault("Q1", Fault.hang(10), times=4)
    site = deploy(private_redis.url)
    worker = start_procfile_worker(site, "a")
    WikidataImporter().import_single.as_task(wikidata_id="Q1")
    wait_until(lambda: wikidata.count("Q1"), why=site.logs)

    signalled = time.monotonic()
    os.kill(worker.pid, signal.SIGQUIT)
    wait_until(worker.exited, timeout=GRACE, why=site.logs, interval=0.1)
    assert time.monotonic() - signalled < 5  # it did not wait for the import to end
    assert outcomes(["Q1"]) == {}
    assert private_redis.client().llen(settings.WIKIDATA_QUEUE) == 1, site.logs()  # back in the queue


def test_the_main_process_keeps_its_sigterm_as_the_solo_pool_runs_tasks_there() -> None:
    # The solo pool sends worker_process_init in the worker's main process, whose SIGTERM must
    # still start a warm shutdown.
    handler, blocked = signal.getsignal(signal.SIGTERM), signal.pthread_sigmask(signal.SIG_BLOCK, [])
    worker_process_init.send(sender=None)
    assert signal.getsignal(signal.SIGTERM) == handler
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == blocked
