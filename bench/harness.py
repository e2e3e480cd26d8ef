"""What benchmarks set up and tear down: environment, workers, subprocesses, database, queues."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import psycopg
import redis

from tests.support.workers import CeleryWorker, ProcfileWorker

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# A Redis database of the benchmarks' own: the tests use 14 and 15, a developer's worker 0.
BROKER_URL = "redis://127.0.0.1:6379/11"
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"
DATABASE_NAME = "bench"
DATABASE_URL = f"{POSTGRES_SERVER}/{DATABASE_NAME}"
# Nothing may reach wikidata.org: this port refuses; benchmarks point workers at a stand-in instead.
NO_WIKIDATA = "http://127.0.0.1:9/"
# Every queue, worker name and Redis key of this run contains the token, so that it can be removed.
TOKEN = f"bench-{os.getpid()}-{int(time.time())}"


@dataclass(frozen=True)
class Queues:
    """The run's queues: Celery's default, the Wikidata importer's, and the no-op importer's."""

    default: str = f"{TOKEN}-default"
    wikidata: str = f"{TOKEN}-wikidata"
    noop: str = f"{TOKEN}-noop"


QUEUES = Queues()


def environment(settings_module: str = "bench.settings", **extra: str) -> dict[str, str]:
    """The environment of the bench process and its subprocesses: bench database, broker and queues."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DJANGO_DEBUG": "false",  # as in production: no query log, no Celery warning about DEBUG
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_TASK_DEFAULT_QUEUE": QUEUES.default,
        "WIKIDATA_QUEUE": QUEUES.wikidata,
        "BENCH_NOOP_QUEUE": QUEUES.noop,
        "WIKIDATA_BASE_URL": NO_WIKIDATA,
        # The request budget's keys, in the broker's Redis: this run's own, removed at the end.
        "WIKIDATA_LIMITER_KEY": f"{TOKEN}-budget",
        **extra,
    }


def configure() -> None:
    """Set the bench process's environment; call before ``django.setup()``."""
    os.environ.update(environment())


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


# Subprocesses
# ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One finished subprocess: wall time, peak RSS and CPU time, exit status, output."""

    seconds: float
    max_rss_mib: float
    cpu_seconds: float
    returncode: int
    output: str


# Peak RSS must come from a small parent: Linux keeps a process's peak RSS across exec, so a child
# forked from the bench process would report at least the bench process's own.
GNU_TIME = Path("/usr/bin/time")
RUSAGE_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "open(sys.argv[1], 'w').write(f'Maximum resident set size (kbytes): {usage.ru_maxrss}\\n"
    "User time (seconds): {usage.ru_utime}\\nSystem time (seconds): {usage.ru_stime}\\n'); "
    "sys.exit(code)"
)


def run_measured(argv: list[str], env: dict[str, str], timeout: float) -> Measured:
    """Run ``argv`` from the project root under ``/usr/bin/time -v`` (else a tiny rusage wrapper).

    Raises:
        RuntimeError: it exited non-zero, or did not finish within ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix=f"{TOKEN}-") as directory:
        report = Path(directory) / "rusage.txt"
        if GNU_TIME.exists():
            wrapped = [str(GNU_TIME), "-v", "-o", str(report), *argv]
        else:
            wrapped = [PYTHON, "-c", RUSAGE_WRAPPER, str(report), *argv]
        with (Path(directory) / "output.txt").open("w+b") as output:
            start = time.perf_counter()
            process = subprocess.Popen(
                wrapped, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
            try:
                returncode = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise RuntimeError(f"{' '.join(argv)} did not finish within {timeout:.0f} s") from None
            seconds = time.perf_counter() - start
            output.seek(0)
            text = output.read().decode(errors="replace")
        if returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {returncode}:\n{text}")
        usage = _rusage(report.read_text())
    return Measured(
        seconds,
        usage["Maximum resident set size (kbytes)"] / 1024,
        usage["User time (seconds)"] + usage["System time (seconds)"],
        returncode,
        text,
    )


def _rusage(report: str) -> dict[str, float]:
    """The figures of ``/usr/bin/time -v``'s report (or the wrapper's), by name."""
    figures = {}
    for line in report.splitlines():
        name, _, value = line.strip().rpartition(": ")
        try:
            figures[name] = float(value)
        except ValueError:
            continue
    return figures


def bench_worker(
    name: str,
    queues: list[str],
    *,
    pool: str = "prefork",
    concurrency: int = 1,
    settings_module: str = "config.settings.local",
    env: dict[str, str] | None = None,
) -> CeleryWorker:
    """A worker of this run (not started; ``with`` starts and stops it), on the bench database and broker.

    Its node name carries the run's token; it logs to a temporary file.
    """
    return CeleryWorker(
        f"{TOKEN}-{name}",
        queues,
        env=environment(settings_module, **(env or {})),
        pool=pool,
        concurrency=concurrency,
    )


def procfile_worker(name: str, queues: list[str], env: dict[str, str] | None = None) -> ProcfileWorker:
    """A worker started from the Procfile's ``worker:`` line (its options and concurrency), on this run's
    queues, database and broker (not started; ``with`` starts and stops it)."""
    return ProcfileWorker(f"{TOKEN}-{name}", queues, env=environment("config.settings.local", **(env or {})))


# The bench database and Redis
# ------------------------------------------------------------------------------


def _drop_database() -> None:
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")


@contextmanager
def bench_database() -> Iterator[None]:
    """A new, migrated PostgreSQL database ``bench`` for one benchmark; dropped afterwards.

    A ``bench`` database left by an interrupted run is dropped first: the name is the benchmarks' own.
    """
    from django.core.management import call_command
    from django.db import connections

    connections.close_all()
    _drop_database()
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {DATABASE_NAME}")
    try:
        call_command("migrate", verbosity=0)
        yield
    finally:
        connections.close_all()
        _drop_database()


@contextmanager
def migrated_database(name: str, env: dict[str, str]) -> Iterator[None]:
    """A new PostgreSQL database ``name`` (on ``POSTGRES_SERVER``), migrated by ``manage.py migrate``
    run with ``env``; dropped afterwards, and first, if an interrupted run left it."""
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        yield
    finally:
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def flush_redis(url: str) -> None:
    """Empty the Redis database at ``url`` (a benchmark's own)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def broker() -> redis.Redis:
    return redis.Redis.from_url(BROKER_URL)


def purge_queues() -> None:
    """Empty the run's queues (and their unacknowledged messages); their bindings stay for later sends."""
    client = broker()
    try:
        lists = [key for key in client.scan_iter(match=f"{TOKEN}-*") if client.type(key) == b"list"]
        if lists:
            client.delete(*lists)
        for tag, message in client.hscan_iter("unacked"):
            if TOKEN.encode() in message:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    finally:
        client.close()


def remove_redis_keys() -> None:
    """Remove every Redis key and binding of this run; once at the end, as later sends need the bindings."""
    purge_queues()
    client = broker()
    try:
        keys = list(client.scan_iter(match=f"*{TOKEN}*"))
        if keys:
            client.delete(*keys)
        for binding in client.scan_iter(match="_kombu.binding.*"):
            members = cast(set[bytes], client.smembers(binding))
            ours = [member for member in members if TOKEN.encode() in member]
            if ours:
                client.srem(binding, *ours)
    finally:
        client.close()


def queue_length(name: str) -> int:
    client = broker()
    try:
        return cast(int, client.llen(name))
    finally:
        client.close()
