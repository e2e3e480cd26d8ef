"""Messages delivered twice, sent from transactions that roll back, or forged: the database stays right."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import TimeLimitExceeded
from celery.result import AsyncResult
from celery.utils import uuid
from django.conf import settings
from django.db import transaction
from kombu import Producer

from config.celery_app import app
from core.exceptions import InvalidTaskCall, PoisonMessage
from importers.importers import WikidataImporter
from importers.models import ImportOutcome, ImportRun, WikidataEntity
from tests.example_app.importers import LethalWikidataImporter, Misbehaving, Recorder
from tests.importers.entities import STUTTGART, item
from tests.production.conftest import Deployment, RedisServer
from tests.support.outcomes import outcomes, wait_for_outcomes
from tests.support.waiting import wait_until
from tests.support.wikidata_server import Fault, StandInWikidata
from tests.support.workers import CeleryWorker

pytestmark = pytest.mark.django_db(transaction=True)  # the workers must see what the test commits

METHOD_CALLER = "core.call_importer_method"


def send_message(message: list[Any], task_id: str) -> None:
    """Publish a method-caller message as is, the way anything with access to the broker could."""
    app.send_task(METHOD_CALLER, args=message, task_id=task_id, queue=settings.WIKIDATA_QUEUE)


def succeeded(worker: CeleryWorker, task_id: str) -> int:
    """How many times the worker ran ``task_id`` to the end."""
    return worker.log_text().count(f"[{task_id}] succeeded")


def database_state() -> tuple[list[Any], list[Any]]:
    entities = list(WikidataEntity.objects.order_by("pk").values())
    recorded = list(ImportOutcome.objects.order_by("pk").values("wikidata_id", "entity_id", "error"))
    return entities, recorded


# Scenario: the same task delivered twice (at-least-once delivery does that).


def test_a_message_delivered_twice_leaves_one_row_and_the_same_database_state(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    wikidata.add_entity(STUTTGART)
    # Both deliveries wait for their answers at the same time, so that their writes race.
    wikidata.add_fault("Q1022", Fault.hang(0.5), times=2)
    site = deploy(private_redis.url)
    worker = site.worker("a", concurrency=2)
    message = ["WikidataImporter", "import_single", [], {"wikidata_id": "Q1022"}]
    task_id = uuid()

    send_message(message, task_id)
    send_message(message, task_id)  # the same message, same task id, a second time
    wait_until(lambda: succeeded(worker, task_id) == 2, why=site.logs)
    assert wikidata.count("Q1022") == 2  # both deliveries ran
    after_two = database_state()
    assert [row["wikidata_id"] for row in after_two[0]] == ["Q1022"]
    assert after_two[1] == [{"wikidata_id": "Q1022", "entity_id": "Q1022", "error": ""}]
    assert ImportOutcome.objects.get().status in ("imported", "unchanged")

    send_message(message, task_id)  # and once more, after the others finished
    wait_until(lambda: succeeded(worker, task_id) == 3, why=site.logs)
    assert database_state() == after_two  # not even fetched_at was rewritten
    assert ImportOutcome.objects.get().status == "unchanged"


def test_a_message_delivered_twice_counts_once_in_its_runs_progress(
    private_redis: RedisServer, deploy: Callable[..., Deployment], wikidata: StandInWikidata
) -> None:
    """``import_wikidata --wait`` stops when ``finished`` reaches ``requested``.

    If a redelivered task counts twice, the command stops, and reports, before every id of the
    run has its outcome; so a run must count each task once, however often it is delivered.
    """
    wikidata.add_entity(STUTTGART)
    site = deploy(private_redis.url)
    worker = site.worker("a", concurrency=1)
    run = ImportRun.objects.create(requested=1)  # as import_wikidata does, for one id
    message = ["WikidataImporter", "import_single", [], {"wikidata_id": "Q1022", "run_id": run.pk}]
    task_id = uuid()

    for delivery in (1, 2):
        send_message(message, task_id)
        wait_until(lambda: succeeded(worker, task_id) == delivery, why=site.logs)  # noqa: B023
    run.refresh_from_db()
    assert (run.requested, run.finished_now()) == (1, 1)


# Scenario: tasks sent inside a transaction.


def test_a_task_sent_in_a_transaction_that_rolls_back_never_runs(
    private_redis: RedisServer,
    deploy: Callable[..., Deployment],
    wikidata: StandInWikidata,
    publications: list[str],
) -> None:
    wikidata.add_entity(STUTTGART)
    wikidata.add_entity(item("Q64", "Berlin"))
    site = deploy(private_redis.url)
    # One pool process takes one message at a time, in order: once a task sent later has run,
    # anything sent before it would have run too.
    site.worker("a", concurrency=1)

    def send_then_roll_back() -> None:
        with transaction.atomic():
            WikidataImporter().import_single.as_task(wikidata_id="Q1022")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        send_then_roll_back()
    assert publications == []  # nothing was published

    sent_after = WikidataImporter().import_single.as_task(wikidata_id="Q64")
    assert wait_for_outcomes(["Q64"], why=site.logs) == {"Q64": "imported"}
    assert publications == [sent_after.id]
    assert wikidata.count("Q1022") == 0
    assert outcomes(["Q1022"]) == {}
    assert not WikidataEntity.objects.filter(pk="Q1022").exists()


def test_a_task_sent_in_a_transaction_runs_after_it_commits(
    private_redis: RedisServer,
    deploy: Callable[..., Deployment],
    wikidata: StandInWikidata,
    publications: list[str],
) -> None:
    wikidata.add_entity(STUTTGART)
    site = deploy(private_redis.url)
    site.worker("a", concurrency=1)

    with transaction.atomic():
        # The task refers to a row of this transaction: run before the commit, it could not see it.
        run = ImportRun.objects.create(requested=1)
        sent = WikidataImporter().import_single.as_task(wikidata_id="Q1022", run_id=run.pk)
        assert publications == []  # held back until the commit
    assert publications == [sent.id]

    assert wait_for_outcomes(["Q1022"], why=site.logs) == {"Q1022": "imported"}
    assert ImportOutcome.objects.get().run_id == run.pk
    run.refresh_from_db()
    assert run.finished_now() == 1


# Scenario: forged messages straight onto the broker.


@pytest.fixture(scope="module")
def forgery_site(
    tmp_path_factory: pytest.TempPathFactory, django_db_setup: None, standin: StandInWikidata
) -> Iterator[tuple[RedisServer, Deployment, CeleryWorker]]:
    """One broker and worker for every forged message: each test checks the worker still works."""
    with (
        RedisServer(tmp_path_factory.mktemp("redis")) as broker,
        Deployment(broker.url, tmp_path_factory.mktemp("workers"), standin) as site,
    ):
        # One pool process: the valid import sent after a forged message runs after it.
        yield broker, site, site.worker("a", concurrency=1)


class OpensAFile:
    """Unpickled, it creates ``path``: what any code a pickled message could run stands for."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def send_pickled(task_id: str, marker: Path) -> None:
    """Publish, with kombu itself, a method-caller message whose body is a pickle."""
    call = ["WikidataImporter", "import_single", [], {"wikidata_id": "Q1022"}]
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}  # as Celery sends it
    body = pickle.dumps(([*call, OpensAFile(marker)], {}, embed))
    publish(
        body,
        task_id,
        args=call,
        queue=settings.WIKIDATA_QUEUE,
        content_type="application/x-python-serialize",
        content_encoding="binary",
    )


# What each forged message is, and the reason the worker logs when it refuses it.
FORGED: dict[str, tuple[list[Any] | None, str]] = {
    "unknown importer": (
        ["NoSuchImporter", "import_single", [], {"wikidata_id": "Q1022"}],
        "No importer registered under 'NoSuchImporter'",
    ),
    "__init__": (
        ["WikidataImporter", "__init__", [], {}],
        "'__init__' is not a declared task method of WikidataImporter",
    ),
    "undeclared method": (
        # A callable attribute every importer class has, but not a declared task method.
        ["WikidataImporter", "mro", [], {}],
        "'mro' is not a declared task method of WikidataImporter",
    ),
    "args not a list": (
        ["WikidataImporter", "import_single", "Q1022", {}],
        "args must be a JSON list and kwargs a JSON object",
    ),
    "arguments that do not bind": (
        ["WikidataImporter", "import_single", [], {"wikidata_id": "Q1022", "drop": True}],
        "WikidataImporter.import_single(): got an unexpected keyword argument 'drop'",
    ),
    "too few parts": (
        ["WikidataImporter", "import_single"],
        "expected (importer_name, method_name, args, kwargs), got 2 arguments",
    ),
    # Refused before the body is read: its content type is not JSON.
    "pickled": (
        None,
        "its body cannot be decoded: ContentDisallowed: "
        "'Refusing to deserialize untrusted content of type pickle (application/x-python-serialize)'",
    ),
}


@pytest.mark.parametrize("forgery", FORGED)
def test_a_forged_message_is_refused_and_logged_without_side_effects_and_the_worker_goes_on(
    forgery_site: tuple[RedisServer, Deployment, CeleryWorker],
    wikidata: StandInWikidata,
    tmp_path: Path,
    forgery: str,
) -> None:
    broker, site, worker = forgery_site
    message, reason = FORGED[forgery]
    wikidata.add_entity(STUTTGART)
    wikidata.add_entity(item("Q64", "Berlin"))
    task_id = uuid()
    marker = tmp_path / "unpickled"

    if message is None:
        send_pickled(task_id, marker)
        refusal = f"Refused {METHOD_CALLER}[{task_id}] before its pool: {reason}"
    else:
        send_message(message, task_id)
        refusal = f"Refused {METHOD_CALLER}[{task_id}]: {reason}"
    WikidataImporter().import_single.as_task(wikidata_id="Q64")  # the worker still works
    assert wait_for_outcomes(["Q64"], why=site.logs) == {"Q64": "imported"}

    wait_until(lambda: refusal in worker.log_text(), timeout=10, why=worker.log_tail)
    assert wikidata.count("Q1022") == 0  # nothing was fetched for it, nothing stored
    assert outcomes(["Q1022"]) == {}
    assert list(WikidataEntity.objects.values_list("pk", flat=True)) == ["Q64"]
    assert not marker.exists()  # the pickle was never loaded
    # Refused means discarded: nothing waits in the queue or unacknowledged, to come back later.
    client: Any = broker.client()  # the stubs type a reply as sync or async
    wait_until(lambda: client.llen(settings.WIKIDATA_QUEUE) + client.hlen("unacked") == 0, timeout=10)


# Scenario: forged messages that would stop a worker's main process, before its pool ever sees them.


class Broker:
    """A broker of one test's own, Redis or RabbitMQ, and how many messages its queues still hold."""

    def __init__(self, url: str, redis_server: RedisServer | None = None, vhost: str | None = None) -> None:
        self.url = url
        self.redis_server = redis_server
        self.vhost = vhost

    def pending(self) -> int:
        """The messages waiting in this run's queues or delivered and not yet acknowledged."""
        queues = (settings.CELERY_TASK_DEFAULT_QUEUE, settings.WIKIDATA_QUEUE)
        if self.redis_server is not None:
            client: Any = self.redis_server.client()  # the stubs type a reply as sync or async
            return int(sum(client.llen(queue) for queue in queues) + client.hlen("unacked"))
        assert self.vhost is not None
        done = subprocess.run(
            ["rabbitmqctl", "list_queues", "-q", "-p", self.vhost, "name", "messages"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        counts = dict(line.split("\t") for line in done.stdout.splitlines() if "\t" in line)
        return sum(int(counts.get(queue, 0)) for queue in queues)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """A private Redis, or a RabbitMQ virtual host of the test's own."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("private_redis")
        return Broker(server.url, redis_server=server)
    url: str = request.getfixturevalue("rabbitmq_vhost")
    return Broker(url, vhost=url.rsplit("/", 1)[1])


def publish(
    body: str | bytes,
    task_id: str,
    *,
    args: list[Any] | None = None,
    queue: str | None = None,
    content_type: str = "application/json",
    content_encoding: str = "utf-8",
    **headers: Any,
) -> None:
    """Publish a method-caller message with kombu: ``body`` as is, Celery's headers and ``headers``.

    Celery's headers are those of a call with ``args``. It goes to ``queue``, by default the
    default queue, where ``Recorder``'s tasks go too: one pool process takes them in the order
    they were sent.
    """
    amqp: Any = app.amqp  # not in the type stubs
    message = amqp.as_task_v2(task_id, METHOD_CALLER, args=args or [])
    route = amqp.queues[queue or settings.CELERY_TASK_DEFAULT_QUEUE]
    with app.connection_for_write() as connection:
        Producer(connection).publish(
            body,
            exchange=route.exchange,
            routing_key=route.routing_key,
            declare=[route],
            content_type=content_type,
            content_encoding=content_encoding,
            headers={**message.headers, **headers},
            **message.properties,
        )


def nested_json(depth: int) -> str:
    return "[" * depth + "0" + "]" * depth


def method_call(argument: str) -> str:
    """The JSON body of ``Recorder.echo(argument)``, ``argument`` given as JSON text."""
    embed = '{"callbacks": null, "errbacks": null, "chain": null, "chord": null}'
    return f'[["Recorder", "echo", [{argument}], {{}}], {{}}, {embed}]'


# Each forged message: its body, its headers, and the reason the worker gives for refusing it.
UNSAFE: dict[str, tuple[str, dict[str, Any], str]] = {
    # Decodes, then exhausts the stack of the worker's main process while pickled for the pool.
    "arguments nested 600 deep": (
        method_call(nested_json(600)),
        {},
        "it nests deeper than 96 levels (2 x IMPORTER_MAX_ARGUMENT_DEPTH + 32)",
    ),
    "a header nested 400 deep": (
        method_call("1"),
        {"forged": json.loads(nested_json(400))},
        "it nests deeper than 96 levels",
    ),
    "arguments nested too deep to decode": (
        method_call(nested_json(100_000)),
        {},
        "its body cannot be decoded: DecodeError: ",
    ),
    "a body larger than IMPORTER_MAX_MESSAGE_BYTES": (
        method_call(json.dumps("x" * 2 * 1024 * 1024)),
        {},
        "its body is 2,097,257 bytes, beyond IMPORTER_MAX_MESSAGE_BYTES (1,048,576)",
    ),
    "a body that is not Celery's": ('{"not": "a list"}', {}, "its body is not [args, kwargs, embed]"),
    "a body that is not JSON": ("[[", {}, "its body cannot be decoded: DecodeError: "),
    # Held by the worker in memory for a year (and redelivered by Redis every visibility timeout).
    "an eta a year away": (
        method_call("1"),
        {"eta": (datetime.now(UTC) + timedelta(days=365)).isoformat()},
        "its eta is more than IMPORTER_MAX_COUNTDOWN (600 s) away",
    ),
}


@pytest.mark.parametrize("forgery", UNSAFE)
def test_a_message_unsafe_for_the_main_process_is_refused_before_the_pool_and_the_worker_goes_on(
    broker: Broker, deploy: Callable[..., Deployment], forgery: str
) -> None:
    body, headers, reason = UNSAFE[forgery]
    site = deploy(broker.url)
    worker = site.worker("a", concurrency=1)
    pool = worker.pool_pids()
    task_id = uuid()

    publish(body, task_id, **headers)
    # Sent after it to the same queue and pool process: it runs once the forged one is done with.
    assert Recorder().add.as_task(2, 3).get(timeout=30) == 5

    refusal = f"Refused {METHOD_CALLER}[{task_id}] before its pool: {reason}"
    wait_until(lambda: refusal in worker.log_text(), timeout=10, why=worker.log_tail)
    assert [line for line in worker.log_text().splitlines() if task_id in line and "Refused" in line] == [
        next(line for line in worker.log_text().splitlines() if refusal in line)
    ]  # one line
    assert not worker.exited()
    assert worker.pool_pids() == pool  # the pool never had it
    with pytest.raises(InvalidTaskCall, match=re.escape(reason)):
        AsyncResult(task_id).get(timeout=10)
    # Refused means discarded: nothing waits in the queue or unacknowledged, to come back later.
    wait_until(lambda: broker.pending() == 0, timeout=10, why=site.logs)


@pytest.mark.parametrize("argument_depth", [32, 100])  # the default, and the most the setting allows
def test_a_message_as_deep_as_the_worker_lets_in_reaches_the_pool_which_refuses_its_argument(
    broker: Broker, deploy: Callable[..., Deployment], monkeypatch: pytest.MonkeyPatch, argument_depth: int
) -> None:
    """The bound the main process enforces leaves the pool's pickling and the method caller safe.

    The body's own levels (``[[importer, method, [argument], {}], {}, embed]``) take three.
    """
    monkeypatch.setenv("IMPORTER_MAX_ARGUMENT_DEPTH", str(argument_depth))  # the worker's setting
    site = deploy(broker.url)
    worker = site.worker("a", concurrency=1)
    pool = worker.pool_pids()
    task_id = uuid()

    publish(method_call(nested_json(2 * argument_depth + 32 - 3)), task_id)
    assert Recorder().add.as_task(2, 3).get(timeout=30) == 5

    refusal = (
        f"Refused {METHOD_CALLER}[{task_id}]: Recorder.echo(): args[0]{'[0]' * argument_depth} "
        f"nests deeper than {argument_depth} levels (IMPORTER_MAX_ARGUMENT_DEPTH)"
    )
    wait_until(lambda: refusal in worker.log_text(), timeout=10, why=worker.log_tail)
    assert "before its pool" not in worker.log_text()
    assert worker.pool_pids() == pool
    wait_until(lambda: broker.pending() == 0, timeout=10, why=site.logs)


# Scenario: forged names and time limits: the worker's log stays its own, the limits the settings'.


def test_names_from_a_forged_message_are_logged_quoted_and_write_no_line_of_their_own(
    broker: Broker, deploy: Callable[..., Deployment]
) -> None:
    site = deploy(broker.url)
    worker = site.worker("a", concurrency=1)

    method = ["Recorder", "x\nCRITICAL forged: a method", [], {}]
    forged_method = app.send_task(METHOD_CALLER, args=method)
    shadow = "add\nCRITICAL forged: a shadow"
    forged_shadow = app.send_task(METHOD_CALLER, args=["Recorder", "add", [1, 2], {}], shadow=shadow)
    assert forged_shadow.get(timeout=30) == 3  # sent second, to the same pool process: it ran last

    succeeded = f"Task 'add\\nCRITICAL forged: a shadow'[{forged_shadow.id}] succeeded"
    wait_until(lambda: succeeded in worker.log_text(), timeout=5, why=worker.log_tail)  # logged after
    log = worker.log_text()
    assert f"[{forged_method.id}]: 'x\\nCRITICAL forged: a method' is not a declared task method" in log
    # Whatever they say stays inside the lines about their tasks.
    ids = (forged_method.id, forged_shadow.id)
    assert [line for line in log.splitlines() if "forged" in line and not any(i in line for i in ids)] == []


def stall(task_id: str, method: str = "stall", **limits: Any) -> None:
    """Send ``Misbehaving.<method>(10)`` as anyone with access to the broker could, with ``limits``."""
    app.send_task(METHOD_CALLER, args=["Misbehaving", method, [10], {}], task_id=task_id, **limits)


@pytest.mark.parametrize(
    ("send", "hard_limit"),
    [
        # A forged header asks for 1000 s: the method's @as_task(time_limit=2) holds.
        (lambda task_id: stall(task_id, "stall_briefly", time_limit=1000, soft_time_limit=1000), "2"),
        # The same, for a method without limits of its own: CELERY_TASK_TIME_LIMIT (2 s here) holds.
        (lambda task_id: stall(task_id, time_limit=1000, soft_time_limit=1000), "2"),
        # A message without the header gets the same.
        (lambda task_id: stall(task_id), "2"),
        # The sender's own lower limit is kept.
        (
            lambda task_id: Misbehaving().stall.as_task.apply_async(args=[10], task_id=task_id, time_limit=1),
            "1",
        ),
    ],
    ids=["declared", "settings", "no header", "lower"],
)
def test_a_timelimit_header_can_lower_the_time_limits_but_never_lift_them(
    private_redis: RedisServer,
    deploy: Callable[..., Deployment],
    monkeypatch: pytest.MonkeyPatch,
    send: Callable[[str], Any],
    hard_limit: str,
) -> None:
    monkeypatch.setenv("CELERY_TASK_SOFT_TIME_LIMIT", "1")  # the worker's settings
    monkeypatch.setenv("CELERY_TASK_TIME_LIMIT", "2")
    site = deploy(private_redis.url)
    worker = site.worker("a", concurrency=1)
    task_id = uuid()

    send(task_id)
    with pytest.raises(TimeLimitExceeded):
        AsyncResult(task_id).get(timeout=8)  # the task asked for 10 s, and 1000 s of limits
    # Celery stores the failure first, then logs it.
    hard = re.compile(rf"Hard time limit \({hard_limit}(\.0)?s\) exceeded for ")
    wait_until(lambda: hard.search(worker.log_text()), timeout=5, why=worker.log_tail)


# Scenario: a message whose task kills the pool process running it, every time.


def test_a_message_that_kills_its_pool_process_every_time_is_discarded_after_three_losses_across_workers(
    broker: Broker, deploy: Callable[..., Deployment], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorder_log = tmp_path / "recorder.log"
    recorder_log.touch()
    monkeypatch.setenv("RECORDER_LOG", str(recorder_log))  # where the workers' Misbehaving writes
    site = deploy(broker.url)
    workers = [site.worker("a", concurrency=1), site.worker("b", concurrency=1)]

    result = Misbehaving().die.as_task("poison")
    with pytest.raises(PoisonMessage, match="killed the pool process running it 3 times"):
        result.get(timeout=60)
    assert Recorder().add.as_task(2, 3).get(timeout=30) == 5  # and the workers go on

    # Run three times, on either worker; then its importer's hook ran instead, once.
    hook = f"poisoned ('Misbehaving.die', ('poison',), 3, {result.id!r})"
    wait_until(lambda: hook in recorder_log.read_text(), timeout=10, why=site.logs)
    events = [line for line in recorder_log.read_text().splitlines() if "poison" in line]
    assert events == ["die 'poison'"] * 3 + [hook], site.logs()
    logs = "\n".join(worker.log_text() for worker in workers)
    lost = re.findall(rf"Misbehaving\.die\[{result.id}\]: its pool process was lost \((\d) of 3", logs)
    assert sorted(lost) == ["1", "2", "3"]  # the two workers counted together
    assert "sent again for its importer to record the failure" in logs
    discarded = f"Discarded Misbehaving.die[{result.id}]: its task killed the pool process running it 3 times"
    assert discarded in logs
    wait_until(lambda: broker.pending() == 0, timeout=10, why=site.logs)
    time.sleep(1)
    assert recorder_log.read_text().count("die 'poison'") == 3  # never delivered again


@pytest.mark.parametrize(
    ("method", "arguments", "ids"),
    [
        ("import_single", {"wikidata_id": "q1022"}, ["Q1022"]),
        ("import_batch", {"wikidata_ids": ["Q1022", "P31", "q1022"]}, ["Q1022", "P31"]),
    ],
)
def test_the_wikidata_importer_records_failed_for_ids_whose_task_kills_its_pool_process_every_time(
    private_redis: RedisServer,
    deploy: Callable[..., Deployment],
    method: str,
    arguments: dict[str, Any],
    ids: list[str],
) -> None:
    site = deploy(private_redis.url)
    site.worker("a", concurrency=1)
    run = ImportRun.objects.create(requested=len(ids))

    sent = getattr(LethalWikidataImporter(), method).as_task(**arguments, run_id=run.pk)
    assert wait_for_outcomes(ids, timeout=60, why=site.logs) == dict.fromkeys(ids, "failed")
    for outcome in ImportOutcome.objects.all():
        assert outcome.error == (
            "not imported: its task killed the pool process running it 3 times (IMPORTER_MAX_WORKER_LOSSES)"
        )
        assert outcome.task_id == sent.id
    run.refresh_from_db()
    assert run.finished_now() == len(ids)
