"""Benchmark 10: ``follow_wikidata`` against stand-in stream and API: lag, requests, CPU, SIGKILL, backlog.

The issue's goals (task 20), each measured as it states it:

- Steady: 300 stored entities, edits to them at 20 a second for 60 s among other wikis' events at
  100 a second, the stand-in API answering in 50 ms: each edit's lag (made, to its revision seen in
  the database), the ``wbgetentities`` requests against ⌈change events / 50⌉ x 1.2, and the
  follower's CPU. Once with imports in the follower's process (no broker), once with the
  Procfile's worker over Redis.
- A SIGKILL: the follower killed at a random moment and started again, a second one started
  beforehand as a standby, edits, deletions and merges going on: how long until a follower reads the
  stream again, whether two connections were ever open, and whether the database ends as the
  stand-in is (every revision the newest, deleted entities gone, merged ones redirects).
- A backlog: ``--all``, 100,000 changed ids queued at once (the stream holds them before the
  follower starts, as after a day's outage), drained through the 3-in-flight budget.

The lag is measured from outside the follower: when the benchmark made the edit (the stand-in's
document changed, then its event added) to when a poll of the database (every 0.1 s) first sees the
row at that revision or a later one. The follower's own figures (from ``meta.dt`` to the row's
``fetched_at``) are shown beside.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tests.support.event_stream import StandInEventStream, recentchange
from tests.support.wikidata_server import StandInWikidata

from . import make_dump
from .dump import TICKS, procfile_worker_running
from .harness import POSTGRES_SERVER, PYTHON, ROOT, flush_redis, migrated_database
from .report import Goal, Result, Table, fmt

NAME = "follow"
TITLE = "10. Following Wikidata: follow_wikidata's lag, requests and CPU; a SIGKILL; a backlog"
DATABASE = "bench_follow"
DATABASE_URL = f"{POSTGRES_SERVER}/{DATABASE}"
# A Redis database of this benchmark's own, flushed before and after (the tests use 14 and 15, the
# other benchmarks 11 and 12): the broker, the request budget and the follower's lease.
BROKER_URL = "redis://127.0.0.1:6379/13"
STORED = 300
EDITS_PER_SECOND = 20
OTHERS_PER_SECOND = 100
LATENCY = 0.05
BATCH = 50
GOAL_P95, GOAL_P99 = 5.0, 15.0
GOAL_REQUESTS_FACTOR = 1.2
GOAL_CPU = 0.10
GOAL_TAKEOVER = 30.0
GOAL_DRAIN = 100.0
POLL = 0.1
# Other wikis' pages: what most of the stream is (Wikidata is about a twentieth of it).
OTHER_WIKIS = ("enwiki", "commonswiki", "dewiki", "frwiki", "jawiki")


def environment(api: StandInWikidata, stream: StandInEventStream | None, broker: bool) -> dict[str, str]:
    """The follower's and the worker's: local settings, this benchmark's database and stand-ins;
    with ``broker``, Redis as the broker (the budget and the lease there too), else imports in process."""
    venv_bin = str(Path(PYTHON).parent)
    return {
        **{
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CELERY_", "WIKIDATA_", "REDIS_", "DATABASE_"))
        },
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": BROKER_URL if broker else "",
        "WIKIDATA_BASE_URL": api.base_url,
        **({"WIKIDATA_STREAM_URL": stream.url} if stream is not None else {}),
    }


@contextmanager
def database() -> Iterator[None]:
    """A new, migrated PostgreSQL database of this benchmark, and its Redis database emptied; both
    removed afterwards."""
    flush_redis(BROKER_URL)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "DATABASE_URL": DATABASE_URL}
    try:
        with migrated_database(DATABASE, env):
            yield
    finally:
        flush_redis(BROKER_URL)


def clear_database() -> None:
    """Empty the importers' tables: no entity, outcome or saved position left from the last scenario."""
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        tables = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'importers_%'"
        ).fetchall()
        connection.execute(f"TRUNCATE {', '.join(name for (name,) in tables)} CASCADE")


def stored() -> dict[str, int]:
    with psycopg.connect(DATABASE_URL) as connection:
        return dict(connection.execute("SELECT wikidata_id, lastrevid FROM importers_wikidataentity"))


def redirects() -> dict[str, str]:
    with psycopg.connect(DATABASE_URL) as connection:
        return dict(connection.execute("SELECT wikidata_id, target_id FROM importers_wikidataredirect"))


def follower_status() -> dict[str, Any]:
    with psycopg.connect(DATABASE_URL) as connection:
        row = connection.execute("SELECT status FROM importers_followposition").fetchone()
    return row[0] if row else {}


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def percentile(values: list[float], percent: int) -> float:
    """The nearest-rank percentile; NaN for none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


class World:
    """The stand-in API and stream, and the truth they hold: each entity's newest revision, the
    deleted ones, the merged ones, and when each edit was made (Unix time)."""

    def __init__(self, api: StandInWikidata, stream: StandInEventStream, seed: int = 20) -> None:
        self.api, self.stream = api, stream
        self.templates = make_dump.templates()
        self.random = random.Random(seed)
        self.revision = make_dump.FIRST_REVISION
        self.newest: dict[str, int] = {}
        self.made: dict[tuple[str, int], float] = {}
        self.deleted: set[str] = set()
        self.merged: dict[str, str] = {}
        self.events = 0
        self._other = 0

    def create(self, count: int, first: int = make_dump.FIRST_ID) -> list[str]:
        """Serve ``count`` new items (real documents under new ids); return their ids."""
        ids = []
        for number in range(first, first + count):
            template = self.templates[number % len(self.templates)]
            document = make_dump.renumbered({**template, "type": "item"}, number)
            self.revision += 1
            document["lastrevid"] = self.revision
            self.api.add_entity(document)
            self.newest[document["id"]] = self.revision
            ids.append(document["id"])
        return ids

    def _serve(self, wikidata_id: str, revision: int) -> None:
        number = int(wikidata_id[1:])
        template = self.templates[number % len(self.templates)]
        document = make_dump.renumbered({**template, "type": "item"}, number)
        document |= {"lastrevid": revision, "modified": _iso(time.time())}
        self.api.add_entity(document)

    def edit(self, wikidata_id: str) -> None:
        """Edit an item: the stand-in serves its new revision, then the stream carries the event."""
        self.revision += 1
        self._serve(wikidata_id, self.revision)
        self.newest[wikidata_id] = self.revision
        self.made[(wikidata_id, self.revision)] = time.time()
        self.stream.edit(wikidata_id, self.revision)
        self.events += 1

    def queue_edit(self, wikidata_id: str) -> None:
        """An edit's event only (the document served already has the revision): for backlogs."""
        self.stream.edit(wikidata_id, self.newest[wikidata_id])

    def delete(self, wikidata_id: str) -> None:
        self.api.remove(wikidata_id)
        self.newest.pop(wikidata_id)
        self.deleted.add(wikidata_id)
        self.stream.log(wikidata_id, "delete")

    def merge(self, source: str, target: str) -> None:
        """Merge item ``source`` into ``target`` as Wikidata does: three edits, the source a redirect."""
        first = self.revision + 1
        self.revision += 3
        self._serve(target, first + 1)
        self.api.add_redirect(source, target)
        self.newest.pop(source)
        self.newest[target] = first + 1
        self.merged[source] = target
        self.stream.merge(source, target, first)
        self.events += 3

    def other(self) -> None:
        """An edit on another wiki: read and dropped by the follower."""
        self._other += 1
        wiki = OTHER_WIKIS[self._other % len(OTHER_WIKIS)]
        self.stream.add(
            recentchange(wiki, f"{wiki.removesuffix('wiki')}.wikipedia.org", 0, f"Page {self._other}",
                         1_300_000_000 + self._other)
        )  # fmt: skip

    def feed(self, seconds: float, pick: list[str], stop: threading.Event | None = None,
             extra: dict[float, Any] | None = None) -> None:  # fmt: skip
        """For ``seconds``, 20 edits a second to ids of ``pick`` among 100 other wikis' events a
        second, evenly spaced; ``extra``: calls to make at those seconds into the feed."""
        rate = EDITS_PER_SECOND + OTHERS_PER_SECOND
        every = rate // EDITS_PER_SECOND
        pending = sorted((extra or {}).items())
        start = time.monotonic()
        for tick in range(int(seconds * rate)):
            delay = start + tick / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            while pending and pending[0][0] <= tick / rate:
                pending.pop(0)[1]()
            if stop is not None and stop.is_set():
                return
            if tick % every == 0:
                candidates = [id for id in pick if id in self.newest]
                self.edit(self.random.choice(candidates))
            else:
                self.other()


class RowWatch:
    """Polls the database every 0.1 s: when each edit's revision (or a later one) was first seen stored."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.seen: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> RowWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
            while not self._stop.wait(POLL):
                rows: dict[str, int] = dict(
                    connection.execute("SELECT wikidata_id, lastrevid FROM importers_wikidataentity")
                )
                now = time.time()
                for key in list(self.world.made):
                    if key not in self.seen and (rows.get(key[0]) or 0) >= key[1]:
                        self.seen[key] = now

    def lags(self) -> list[float]:
        return [self.seen[key] - made for key, made in list(self.world.made.items()) if key in self.seen]

    def caught_up(self) -> bool:
        return all(key in self.seen for key in list(self.world.made))

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.caught_up():
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL)
        return True


@dataclass
class Follower:
    """``manage.py follow_wikidata`` in a process of its own, its output in a log file."""

    env: dict[str, str]
    log: Path
    arguments: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Follower:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [PYTHON, "manage.py", "follow_wikidata", *self.arguments],
                cwd=ROOT, env=self.env, stdout=output, stderr=output, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        return self

    def cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> float:
        """SIGTERM; return how long it took to exit (SIGKILL after 30 s)."""
        assert self.process is not None
        if self.process.poll() is not None:
            return 0.0
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return time.monotonic() - start

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def connected(stream: StandInEventStream, after: int, follower: Follower, timeout: float = 60) -> None:
    """Wait until the stream has had more than ``after`` connections (the follower is reading)."""
    deadline = time.monotonic() + timeout
    while len(stream.requests) <= after:
        if follower.process is not None and follower.process.poll() is not None:
            raise RuntimeError(f"follow_wikidata exited:\n{follower.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"follow_wikidata did not connect to the stream:\n{follower.tail()}")
        time.sleep(0.05)


def store(env: dict[str, str], ids: list[str]) -> None:
    """Import ``ids`` in process (``import_wikidata --sync``): the entities the follower follows."""
    subprocess.run(
        [PYTHON, "manage.py", "import_wikidata", "--sync", "--batch-size", str(BATCH), "-v", "0", *ids],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip


def fetches(api: StandInWikidata) -> int:
    return sum(1 for request in list(api.requests) if "wbgetentities" in request.path)


@dataclass
class Steady:
    label: str
    events: int
    requests: int
    lags: list[float]
    cpu: float
    wall: float
    own: dict[str, Any]
    stop_seconds: float
    caught_up: bool

    @property
    def bound(self) -> float:
        return math.ceil(self.events / BATCH) * GOAL_REQUESTS_FACTOR


def steady(world: World, broker: bool, seconds: float, directory: Path) -> Steady:
    """300 stored items edited 20 times a second among other wikis' events, for ``seconds``."""
    clear_database()
    env = environment(world.api, world.stream, broker)
    ids = world.create(STORED, first=make_dump.FIRST_ID + (0 if broker else 10_000))
    store(env, ids)
    world.made.clear()
    world.events = 0
    follower = Follower(env, directory / f"follower-steady-{broker}.log").start()
    try:
        connected(world.stream, len(world.stream.requests), follower)
        world.api.clear_log()
        with RowWatch(world) as watch:
            cpu_before, start = follower.cpu_seconds(), time.monotonic()
            world.feed(seconds, ids)
            caught_up = watch.wait(60)
            wall = time.monotonic() - start
            cpu = follower.cpu_seconds() - cpu_before
        own = follower_status()
    finally:
        stop_seconds = follower.stop()
    return Steady(
        "with the Procfile's worker" if broker else "in process (no broker)",
        world.events, fetches(world.api), watch.lags(), cpu, wall, own, stop_seconds, caught_up,
    )  # fmt: skip


@dataclass
class Killed:
    at: float
    takeover: float
    most_open: int
    wrong: list[str]
    deleted: int
    merged: int
    edits: int


def killed(world: World, seconds: float, directory: Path) -> Killed:
    """Edits, deletions and merges; the follower SIGKILLed at a random moment and started again."""
    clear_database()
    env = environment(world.api, world.stream, broker=True)
    ids = world.create(STORED, first=make_dump.FIRST_ID + 20_000)
    store(env, ids)
    world.made.clear()
    world.events = 0
    world.stream.most_open = world.stream.open
    victims = world.random.sample(ids, 16)
    extra: dict[float, Any] = {}
    for index, wikidata_id in enumerate(victims[:6]):  # deletions through the run
        extra[2 + index * (seconds - 8) / 6] = lambda id=wikidata_id: world.delete(id)
    for index in range(5):  # merges: a source into a target, both stored
        source, target = victims[6 + 2 * index], victims[7 + 2 * index]
        extra[3 + index * (seconds - 8) / 5] = lambda s=source, t=target: world.merge(s, t)
    kill_at = world.random.uniform(5, seconds - 10)
    first = Follower(env, directory / "follower-first.log").start()
    connected(world.stream, len(world.stream.requests), first)
    standby = Follower(env, directory / "follower-standby.log").start()
    restarted = Follower(env, directory / "follower-restarted.log")
    killed_at: list[float] = []

    def kill() -> None:
        first.kill()
        killed_at.append(time.monotonic())
        restarted.start()

    extra[kill_at] = kill
    try:
        world.feed(seconds, [id for id in ids if id not in victims[6:]], extra=extra)
        deadline = time.monotonic() + 120
        while (wrong := mismatches(world)) and time.monotonic() < deadline:
            time.sleep(0.5)
        reconnections = [request.time for request in world.stream.requests if request.time > killed_at[0]]
        takeover = reconnections[0] - killed_at[0] if reconnections else math.inf
    finally:
        for follower in (standby, restarted, first):
            if follower.process is not None:
                follower.stop()
    return Killed(kill_at, takeover, world.stream.most_open, wrong, 6, 5, world.events)


def mismatches(world: World) -> list[str]:
    """How the database differs from the stand-in: ids at another revision, not deleted, not redirects."""
    rows, found = stored(), redirects()
    wrong = [f"{id} at {rows[id]}, not {world.newest[id]}" for id in rows if id in world.newest
             and rows[id] != world.newest[id]]  # fmt: skip
    wrong += [f"{id} deleted, still stored" for id in world.deleted if id in rows]
    wrong += [f"{id} merged, still stored" for id in world.merged if id in rows]
    wrong += [f"{id} not a redirect to {target}" for id, target in world.merged.items()
              if found.get(id) != target]  # fmt: skip
    return wrong


@dataclass
class Backlog:
    label: str
    count: int
    seconds: float
    requests: int
    most_in_flight: int


def backlog(api: StandInWikidata, count: int, broker: bool, directory: Path, worker_first: int) -> Backlog:
    """``--all`` started on a stream holding ``count`` changes of entities not stored: how fast all are."""
    clear_database()
    with StandInEventStream() as stream:
        world = World(api, stream)
        ids = world.create(count, first=worker_first)
        for wikidata_id in ids:
            world.queue_edit(wikidata_id)
        api.clear_log()
        env = environment(api, stream, broker)
        follower = Follower(env, directory / f"follower-backlog-{broker}.log", ["--all"]).start()
        try:
            connected(stream, 0, follower)
            start = time.monotonic()
            with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
                deadline = start + count / 20 + 120
                count_rows = "SELECT count(*) FROM importers_wikidataentity"
                while (connection.execute(count_rows).fetchone() or (0,))[0] < count:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the backlog was not drained at 20/s:\n{follower.tail()}")
                    time.sleep(0.2)
            seconds = time.monotonic() - start
        finally:
            follower.stop()
    label = "with the Procfile's worker" if broker else "in process (no broker)"
    return Backlog(label, count, seconds, fetches(api), api.most_in_flight)


def run(quick: bool) -> Result:
    seconds = 15.0 if quick else 60.0
    count = 3_000 if quick else 100_000
    result = Result(NAME, TITLE)
    steady_table = Table(
        f"Steady: {STORED} stored items, {EDITS_PER_SECOND} edits/s for {seconds:.0f} s among "
        f"{OTHERS_PER_SECOND} other wikis' events/s, the stand-in API answering in {LATENCY * 1000:.0f} ms",
        ["imports", "change events", "requests (goal ≤)", "lag p50 / p95 / p99 / max",
         "its own p50 / p95 / p99", "follower CPU", "SIGTERM to exit"],
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-follow-") as scratch, database():
        directory = Path(scratch)
        with StandInWikidata() as api, StandInEventStream() as stream:
            api.latency = LATENCY
            world = World(api, stream)
            runs = [steady(world, broker=False, seconds=seconds, directory=directory)]
            with procfile_worker_running(directory, env=environment(api, stream, broker=True)):
                runs.append(steady(world, broker=True, seconds=seconds, directory=directory))
                kill = killed(world, max(30.0, seconds * 0.75), directory)
        for one in runs:
            lags = one.lags
            own = (one.own.get("lag") or {}).get("minute", {})
            steady_table.add(
                one.label, str(one.events), f"{one.requests} ({one.bound:.1f})",
                " / ".join(f"{percentile(lags, p):.2f}" for p in (50, 95, 99, 100)) + " s"
                + ("" if one.caught_up else " (not all seen)"),
                " / ".join(f"{own.get(f'p{p}', math.nan):.1f}" for p in (50, 95, 99)) + " s",
                f"{one.cpu / one.wall:.1%}", f"{one.stop_seconds:.1f} s",
            )  # fmt: skip
            result.goals += [
                Goal(f"lag p95, {one.label}", f"{percentile(lags, 95):.2f} s", f"≤ {GOAL_P95:.0f} s",
                     one.caught_up and percentile(lags, 95) <= GOAL_P95),
                Goal(f"lag p99, {one.label}", f"{percentile(lags, 99):.2f} s", f"≤ {GOAL_P99:.0f} s",
                     one.caught_up and percentile(lags, 99) <= GOAL_P99),
                Goal(f"requests, {one.label}", str(one.requests), f"≤ {one.bound:.1f}",
                     one.requests <= one.bound),
                Goal(f"follower CPU, {one.label}", f"{one.cpu / one.wall:.1%}", f"< {GOAL_CPU:.0%}",
                     one.cpu / one.wall < GOAL_CPU),
            ]  # fmt: skip
        steady_table.notes = [
            "Lag: from the edit made (the stand-in's document changed, then the event added) to the row "
            f"seen at that revision or later by a poll of the database every {POLL} s. Its own: the "
            "follower's status (`follow_wikidata --status`) over its last minute, from `meta.dt` (whole "
            "seconds, so up to 1 s more) to the row's `fetched_at`, stored in process or by the worker.",
            "Requests: `wbgetentities` requests to the stand-in; the goal ⌈change events / 50⌉ x 1.2. "
            "Follower CPU: its process's user + system time over the feed and the catching up after it.",
        ]
        kill_table = Table(
            "A SIGKILL: the follower killed at a random moment and started again, a standby started "
            "before, edits with deletions and merges going on (Procfile worker, lease in Redis)",
            ["killed at", "back on the stream after", "most stream connections at once", "edits",
             "deleted", "merged", "database as the stand-in"],
        )  # fmt: skip
        kill_table.add(
            f"{kill.at:.1f} s", f"{kill.takeover:.1f} s", str(kill.most_open), str(kill.edits),
            str(kill.deleted), str(kill.merged),
            "yes" if not kill.wrong else f"no: {'; '.join(kill.wrong[:3])}",
        )  # fmt: skip
        result.goals += [
            Goal("back on the stream after a SIGKILL", f"{kill.takeover:.1f} s", f"≤ {GOAL_TAKEOVER:.0f} s",
                 kill.takeover <= GOAL_TAKEOVER),
            Goal("stream connections at once", str(kill.most_open), "1", kill.most_open == 1),
            Goal("database as the stand-in after the SIGKILL", "yes" if not kill.wrong else "no",
                 "yes", not kill.wrong),
        ]  # fmt: skip
        backlog_table = Table(
            f"A backlog: --all started on {count:,} queued changes of entities not stored",
            ["imports", "entities", "seconds", "entities/s", "requests", "most in flight"],
        )
        with StandInWikidata() as api:
            api.latency = LATENCY
            drains = [backlog(api, count, False, directory, make_dump.FIRST_ID + 100_000)]
            api.reset()
            api.latency = LATENCY
            with procfile_worker_running(directory, env=environment(api, None, broker=True)):
                drains.append(backlog(api, count, True, directory, make_dump.FIRST_ID + 300_000))
        for drain in drains:
            rate = drain.count / drain.seconds
            backlog_table.add(drain.label, f"{drain.count:,}", f"{drain.seconds:.1f}", fmt(rate),
                              str(drain.requests), str(drain.most_in_flight))  # fmt: skip
            result.goals.append(
                Goal(
                    f"backlog drained, {drain.label}",
                    f"{rate:,.0f}/s",
                    f"≥ {GOAL_DRAIN:.0f}/s",
                    rate >= GOAL_DRAIN,
                )
            )
    result.tables += [steady_table, kill_table, backlog_table]
    return result
