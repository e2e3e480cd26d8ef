"""The Wikidata request budget across real workers: at most 3 requests in flight, one pause for all."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from celery._state import task_join_will_block  # type: ignore[attr-defined]
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from config.celery_app import app
from core.budget import LocalBudget
from importers.importers import WikidataImporter
from importers.models import ImportRun
from tests.conftest import make_worker
from tests.importers.entities import item
from tests.support.outcomes import wait_for_outcomes
from tests.support.wikidata_server import Fault, StandInWikidata
from tests.support.workers import CeleryWorker, ProcfileWorker

pytestmark = pytest.mark.django_db(transaction=True)  # the workers must see what the test commits

LATENCY = 0.05


@pytest.fixture
def two_workers(
    tmp_path: Path, wikidata: StandInWikidata, live_worker: CeleryWorker
) -> Iterator[tuple[CeleryWorker, CeleryWorker]]:
    """Two workers started from the Procfile's line, sharing the broker's Redis as their budget.

    As every worker of this test run does (the session's live worker too, on the same queues).
    """
    env = {
        "TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "WIKIDATA_BASE_URL": wikidata.base_url,
    }
    with ExitStack() as stack:
        workers = [
            stack.enter_context(make_worker(f"budget-{n}", tmp_path / str(n), env, kind=ProcfileWorker))
            for n in (1, 2)
        ]
        app.conf.CELERY_TASK_ALWAYS_EAGER = False  # the key under the CELERY namespace
        try:
            yield workers[0], workers[1]
        finally:
            app.conf.CELERY_TASK_ALWAYS_EAGER = True


def serve(wikidata: StandInWikidata, count: int) -> list[str]:
    ids = [f"Q{number}" for number in range(1, count + 1)]
    for wikidata_id in ids:
        wikidata.add_entity(item(wikidata_id, f"Item {wikidata_id}"))
    wikidata.latency = LATENCY
    return ids


def logs(*workers: CeleryWorker) -> str:
    return "\n".join(worker.log_tail() for worker in workers)


def test_two_procfile_workers_keep_three_requests_in_flight_between_them(
    wikidata: StandInWikidata, two_workers: tuple[CeleryWorker, CeleryWorker]
) -> None:
    assert sum(worker.concurrency for worker in two_workers) > 2 * settings.WIKIDATA_MAX_IN_FLIGHT
    ids = serve(wikidata, 90)
    WikidataImporter().import_bulk(ids)
    assert set(wait_for_outcomes(ids, why=lambda: logs(*two_workers)).values()) == {"imported"}
    # Never more than the budget; and as many, so that this test could see more.
    assert wikidata.most_in_flight == settings.WIKIDATA_MAX_IN_FLIGHT == 3
    counts = [worker.log_text().count("WikidataImporter.import_single") for worker in two_workers]
    assert all(counts), (counts, logs(*two_workers))


class PauseWatch:
    """Watches the shared budget in Redis, from a thread, for the moment a pause begins.

    At first sight of the pause key it notes how many slots had been taken (the budget's own
    ``started`` count) and when the pause ends, on this process's monotonic clock. With the pause
    shared, no slot is taken between its start and that sight, so the count is exact however
    slow the machine is.
    """

    def __init__(self) -> None:
        self.client: Any = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        self.key = settings.WIKIDATA_LIMITER_KEY
        self.started_before = self.started()
        self.started_at_pause: int | None = None
        self.pause_ends = 0.0
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def started(self) -> int:
        return int(self.client.get(f"{self.key}:started") or 0)

    def _watch(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            till = self.client.get(f"{self.key}:pause")
            if till is not None:
                self.started_at_pause = self.started()
                # The pause's end is the Redis server's clock in ms: on this machine, time.time()'s.
                self.pause_ends = time.monotonic() + int(till) / 1000 - time.time()
                return
            time.sleep(0.001)


def test_a_429_with_retry_after_pauses_every_worker(
    wikidata: StandInWikidata, two_workers: tuple[CeleryWorker, CeleryWorker], live_worker: CeleryWorker
) -> None:
    """No request whose slot was taken after the pause began is sent before it ends, from any worker.

    Measured from the budget's own count of slots taken, not from arrival times: a request already
    on its way when the 429 went out may arrive any time later on a busy machine, and is allowed.
    """
    ids = serve(wikidata, 60)
    wikidata.add_fault("Q20", Fault.status(429, headers={"Retry-After": "1"}))
    watch = PauseWatch()
    WikidataImporter().import_bulk(ids)
    assert set(wait_for_outcomes(ids, why=lambda: logs(*two_workers)).values()) == {"imported"}
    assert watch.started_at_pause is not None, "the 429 paused nothing"
    # Every request takes a slot first: the requests that arrived before the pause ended had
    # their slots before it began, so there are no more of them than slots taken by then.
    taken_before_pause = watch.started_at_pause - watch.started_before
    arrived_before_end = [request for request in wikidata.requests if request.time < watch.pause_ends - 0.02]
    assert len(arrived_before_end) <= taken_before_pause, (len(arrived_before_end), taken_before_pause)
    assert [request for request in wikidata.requests if request.time >= watch.pause_ends]  # went on after
    assert "The request budget is paused" in "".join(w.log_text() for w in [*two_workers, live_worker])


class TimedOutput(io.StringIO):
    """Standard output that notes when each line was written."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def write(self, text: str) -> int:
        self.times += [time.monotonic()] * text.count("\n")
        return super().write(text)


def test_in_process_the_command_fetches_up_to_the_budget_at_once_and_prints_each_id_as_it_ends(
    wikidata: StandInWikidata,
) -> None:
    ids = serve(wikidata, 24)
    out = TimedOutput()
    call_command("import_wikidata", *ids, stdout=out, stderr=io.StringIO())
    lines = out.getvalue().splitlines()
    assert sorted(lines[:24]) == sorted(f"{i:<3}  imported    Item {i}" for i in ids)
    assert lines[24:] == [f"Run {ImportRun.objects.get().pk}: 24 imported.", "Every id was imported."]
    assert wikidata.most_in_flight == settings.WIKIDATA_MAX_IN_FLIGHT
    # Printed as they ended, not all at the end: only those of the last calls after the last answer.
    last_answer = max(answer.time for answer in wikidata.answers)
    printed_before = sum(at < last_answer for at in out.times[:24])
    assert printed_before >= 24 - settings.WIKIDATA_IN_PROCESS_THREADS
    assert ImportRun.objects.get().finished_now() == 24
    # Celery's eager calls, ending out of order on threads, must not leave this process unable to
    # wait for a result ("Never call result.get() within a task!").
    assert not task_join_will_block()


def test_an_unreachable_budget_store_fails_the_id_with_a_clear_error(
    wikidata: StandInWikidata, settings: Any
) -> None:
    ids = serve(wikidata, 1)
    settings.WIKIDATA_LIMITER_URL = "redis://:secret@127.0.0.1:9/0"
    with pytest.raises(CommandError, match=r"request budget's Redis \(redis://:\*\*\*@127\.0\.0\.1:9/0\)"):
        call_command("import_wikidata", *ids, stdout=io.StringIO(), stderr=io.StringIO())
    assert not wikidata.requests  # no request without a slot


class RecordingBudget(LocalBudget):
    """A budget in memory that notes what is done with it, in order."""

    def __init__(self) -> None:
        super().__init__(3, 60.0)
        self.calls: list[str] = []

    def acquire(self) -> str:
        self.calls.append("acquire")
        return super().acquire()

    def release(self, token: str) -> None:
        self.calls.append("release")
        super().release(token)

    def pause(self, seconds: float) -> None:
        self.calls.append("pause")
        super().pause(seconds)


@pytest.mark.parametrize(
    "fault",
    [Fault.status(429, headers={"Retry-After": "0.2"}), Fault.maxlag(lag=2.0)],
    ids=["429", "maxlag"],
)
def test_an_answer_that_asks_for_a_pause_pauses_the_budget_before_its_slot_goes_back(
    wikidata: StandInWikidata, monkeypatch: pytest.MonkeyPatch, settings: Any, fault: Fault
) -> None:
    # Released first, the slot could go to another process before the pause began.
    settings.WIKIDATA_RETRY_AFTER_MAX = 0.2
    budget = RecordingBudget()
    monkeypatch.setattr("importers.wikidata_api.request_budget", lambda: budget)
    ids = serve(wikidata, 2)
    wikidata.latency = 0
    wikidata.add_fault(None, fault)
    call_command("import_wikidata", *ids, "--batch-size", "2", stdout=io.StringIO())
    assert budget.calls == ["acquire", "pause", "release", "acquire", "release"]


def test_wait_shows_the_requests_in_flight_of_the_shared_budget(settings: Any) -> None:
    from importers.management.commands.import_wikidata import Command
    from importers.wikidata_api import request_budget

    settings.WIKIDATA_LIMITER_URL = settings.TEST_REDIS_URL
    settings.WIKIDATA_LIMITER_KEY = f"test-gauge-{uuid.uuid4().hex[:12]}"
    budget = request_budget()
    tokens = [budget.acquire(), budget.acquire()]  # two requests in flight, somewhere
    try:
        run = ImportRun.objects.create(requested=1)
        run.request([("Q1", "argument 1")])
        run.outcomes.update(status="imported")
        err = io.StringIO()
        Command(stdout=io.StringIO(), stderr=err).wait_for(run, 1)
        assert "2/3 requests in flight" in err.getvalue()
    finally:
        for token in tokens:
            budget.release(token)
