"""Workers that die, are killed, shut down or share the work: no id is lost, none is imported twice."""

from __future__ import annotations

import io
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from importers.importers import WikidataImporter
from importers.models import ImportOutcome, ImportRun, WikidataEntity
from tests.importers.entities import STUTTGART, item
from tests.production.conftest import Deployment, RedisServer
from tests.support.outcomes import outcomes, wait_for_outcomes
from tests.support.waiting import wait_until
from tests.support.wikidata_server import Fault, StandInWikidata

pytestmark = pytest.mark.django_db(transaction=True)  # the workers must see what the test commits

# Hangs shorter than the test settings' WIKIDATA_TIMEOUT (2 s): the client waits them out rather
# than retrying, so the request a test sees is the only one that task makes.
HANG = 1.5


def import_wikidata(*args: str) -> str:
    out = io.StringIO()
    call_command("import_wikidata", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def serve(wikidata: StandInWikidata, count: int) -> list[str]:
    ids = [f"Q{number}" for number in range(1, count + 1)]
    for entity_id in ids:
        wikidata.add_entity(item(entity_id, f"Item {entity_id}"))
    return ids


def test_a_pool_process_killed_mid_import_is_replaced_and_the_id_imported_once(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    wikidata.add_entity(STUTTGART)
    wikidata.add_fault("Q1022", Fault.hang(HANG))  # holds the task mid-flight
    site = deploy(private_redis.url)
    worker = site.worker("a", concurrency=1)  # one pool process: the one running the task
    (pool_process,) = worker.pool_pids()

    WikidataImporter().import_single.as_task(wikidata_id="Q1022")
    wait_until(lambda: wikidata.count("Q1022") == 1, why=site.logs)
    assert outcomes(["Q1022"]) == {}  # still waiting for its answer
    os.kill(pool_process, signal.SIGKILL)

    # acks_late + reject_on_worker_lost: the message goes back to the queue, and the pool
    # process that replaces the dead one runs it again (the fault was for one request only).
    assert wait_for_outcomes(["Q1022"], why=site.logs) == {"Q1022": "imported"}
    assert list(WikidataEntity.objects.values_list("wikidata_id", "label")) == [("Q1022", "Stuttgart")]
    assert wikidata.count("Q1022") == 2  # the killed run, and the one that imported it
    assert worker.pool_pids() != [pool_process]
    assert "exited with 'signal 9 (SIGKILL)'" in worker.log_text()


# Short, so that the new worker hands out the dead worker's unacknowledged messages at once,
# rather than after the production hour; both sides get it (see Deployment).
VISIBILITY_TIMEOUT = 2


def test_a_worker_killed_mid_run_loses_no_id_once_another_worker_starts(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    ids = serve(wikidata, 8)
    # Q5 and Q6 hang, so that when the worker dies two messages are delivered and
    # unacknowledged (its whole prefetch), and Q7 and Q8 still wait in the queue.
    for entity_id in ("Q5", "Q6"):
        wikidata.add_fault(entity_id, Fault.hang(HANG))
    site = deploy(private_redis.url, visibility_timeout=VISIBILITY_TIMEOUT)
    first = site.worker("a", concurrency=2)

    import_wikidata(*ids)
    wait_until(lambda: wikidata.count("Q5") and wikidata.count("Q6"), why=site.logs)
    first.kill()  # the main process and its pool processes, as when a machine dies
    killed_at = time.monotonic()
    assert not {"Q5", "Q6"} & set(outcomes(ids))

    # Redis hands out an unacknowledged message again only when a worker restores it: at the
    # worker's start (and every few minutes after), if it is older than the visibility timeout.
    time.sleep(max(0.0, killed_at + VISIBILITY_TIMEOUT + 0.5 - time.monotonic()))
    site.worker("b", concurrency=2)

    assert wait_for_outcomes(ids, why=site.logs) == dict.fromkeys(ids, "imported")
    assert WikidataEntity.objects.count() == len(ids)
    assert {entity_id: wikidata.count(entity_id) for entity_id in ("Q5", "Q6")} == {"Q5": 2, "Q6": 2}
    run = ImportRun.objects.get()
    assert (run.requested, run.finished_now()) == (8, 8)


def test_a_warm_shutdown_lets_running_tasks_finish_and_they_do_not_run_again(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    ids = serve(wikidata, 3)
    for entity_id in ("Q1", "Q2"):
        wikidata.add_fault(entity_id, Fault.hang(HANG))
    # A short visibility timeout: had the first worker left Q1 or Q2 unacknowledged, the next
    # worker would restore it at its start and run it again, and the test would see it.
    site = deploy(private_redis.url, visibility_timeout=1)
    first = site.worker("a", concurrency=2)
    sender = WikidataImporter().import_single.as_task
    for entity_id in ids:
        sender(wikidata_id=entity_id)
    wait_until(lambda: wikidata.count("Q1") and wikidata.count("Q2"), why=site.logs)

    assert first.terminate() == 0  # SIGTERM: finish what runs, take nothing new
    assert outcomes(ids) == {"Q1": "imported", "Q2": "imported"}
    broker = private_redis.client()
    assert broker.llen(settings.WIKIDATA_QUEUE) == 1  # Q3, never started, waits for the next worker
    assert broker.hlen("unacked") == 0  # Q1 and Q2 were acknowledged

    time.sleep(1.5)  # past the visibility timeout
    site.worker("b", concurrency=2)
    assert wait_for_outcomes(ids, why=site.logs) == dict.fromkeys(ids, "imported")
    assert {entity_id: wikidata.count(entity_id) for entity_id in ids} == dict.fromkeys(ids, 1)


def test_two_workers_share_a_bulk_import_and_import_every_id_exactly_once(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata, tmp_path: Path
) -> None:
    ids = serve(wikidata, 1000)
    site = deploy(private_redis.url)
    workers = [site.worker("a", concurrency=2), site.worker("b", concurrency=2)]
    id_file = tmp_path / "ids.txt"
    id_file.write_text("\n".join(ids) + "\n")

    import_wikidata("--file", str(id_file))
    assert wait_for_outcomes(ids, timeout=120, why=site.logs) == dict.fromkeys(ids, "imported")

    requested = Counter(entity_id for request in list(wikidata.requests) for entity_id in request.entity_ids)
    assert requested == Counter(ids)  # one request for every id, none twice
    assert WikidataEntity.objects.count() == 1000
    assert ImportOutcome.objects.filter(status="imported").count() == 1000
    run = ImportRun.objects.get()
    assert (run.requested, run.finished_now()) == (1000, 1000)
    task_done = re.compile(r"WikidataImporter\.import_single\[[^]]+\] succeeded")
    succeeded = [len(task_done.findall(worker.log_text())) for worker in workers]
    assert sum(succeeded) == 1000
    assert min(succeeded) > 0, f"one worker did all the work: {succeeded}"
