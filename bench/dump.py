"""Benchmark 8: a synthetic dump through ``import_wikidata_dump`` and the Procfile's worker; its limits."""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg

from tests.support.nginx import nginx_serving

from . import make_dump
from .harness import POSTGRES_SERVER, PYTHON, ROOT, Measured, flush_redis, migrated_database, run_measured
from .report import Goal, Result, Table, fmt

NAME = "dump"
TITLE = "8. A JSON dump: import_wikidata_dump through the Procfile's worker, against gzip → orjson → COPY"
DATABASE = "bench_dump"
DATABASE_URL = f"{POSTGRES_SERVER}/{DATABASE}"
# A Redis database of this benchmark's own, flushed before and after: the Procfile's worker line
# consumes the queues "celery" and "wikidata", which no other benchmark uses there.
BROKER_URL = "redis://127.0.0.1:6379/12"
GOAL_RATE = 5000
STRETCH_RATE = 8000
GOAL_SECOND_RUN = 3.0
GOAL_BARE_RATIO = 0.9
GOAL_COMMAND_SHARE = 0.05
MIB = 1024 * 1024
SLICE_BYTES = 4 * MIB
WARM_UP_ENTITIES = 3_200
TICKS = os.sysconf("SC_CLK_TCK")


def environment(slice_bytes: int = SLICE_BYTES) -> dict[str, str]:
    """The command's and the worker's: local settings on the benchmark's database and broker."""
    venv_bin = str(Path(PYTHON).parent)
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "WIKIDATA_"))},
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": BROKER_URL,
        # Slices of about two of the synthetic dump's members, as the default 64 MiB is one of
        # Wikimedia's (70 MB): enough slices to keep the worker's processes busy to the end.
        "WIKIDATA_DUMP_SLICE_BYTES": str(slice_bytes),
    }


def procfile_worker() -> str:
    """The ``worker:`` line of the Procfile, as Heroku runs it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("worker:"):
            return line.removeprefix("worker:").strip()
    raise RuntimeError("the Procfile has no worker line")


def database() -> AbstractContextManager[None]:
    """A new, migrated PostgreSQL database of this benchmark; dropped afterwards."""
    return migrated_database(DATABASE, environment())


@dataclass
class Worker:
    """The Procfile's worker line, run in a session of its own; its peak RSS and CPU read from /proc."""

    process: subprocess.Popen[bytes]
    log: Path

    def processes(self) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-s", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]

    def peak_rss_mib(self) -> float:
        """The largest peak RSS (VmHWM) of its processes: the main one and each pool process."""
        peaks = []
        for pid in self.processes():
            status = Path(f"/proc/{pid}/status").read_text()
            found = re.search(r"VmHWM:\s+(\d+) kB", status)
            if found:
                peaks.append(int(found.group(1)) / 1024)
        return max(peaks)

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.processes():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / TICKS


@contextmanager
def procfile_worker_running(
    directory: Path, hostname: str | None = None, env: dict[str, str] | None = None
) -> Iterator[Worker]:
    """The Procfile's worker line started as it is written (with the venv's ``celery`` on PATH).

    ``hostname``: its ``--hostname``, as a second machine's worker would have its own; ``env``:
    its environment (this benchmark's by default).
    """
    log = directory / f"worker-{hostname or 'first'}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*shlex.split(procfile_worker()), *(["--hostname", hostname] if hostname else [])],
            cwd=ROOT,
            env=env or environment(),
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    worker = Worker(process, log)
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Procfile's worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield worker
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def postgres_ticks() -> dict[int, int]:
    """CPU ticks used so far by each PostgreSQL process (backends that come and go between reads: missed)."""
    ticks = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            fields = text.rsplit(")", 1)[1].split()
            ticks[int(stat.parent.name)] = int(fields[11]) + int(fields[12])
    return ticks


def busy_ticks() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(value) for value in fields) - int(fields[3]) - int(fields[4])  # less idle and iowait


@dataclass
class Run:
    measured: Measured
    entities: int
    written: int
    unchanged: int
    busy_cpu: float
    worker_cpu: float
    postgres_cpu: float

    @property
    def rate(self) -> float:
        return self.entities / self.measured.seconds


SUMMARY = re.compile(r"([\d,]+) entities read, [\d,]+ matched, ([\d,]+) written, ([\d,]+) unchanged")


def import_dump(
    path: Path | str,
    chunk_dir: Path,
    worker: Worker,
    *options: str,
    slice_bytes: int = SLICE_BYTES,
    others: tuple[Worker, ...] = (),
) -> Run:
    """Run ``import_wikidata_dump PATH --wait`` in a process of its own, timed from start to summary.

    ``path`` may be a URL; ``others``: more workers taking slices, whose CPU is counted with ``worker``'s.
    """
    argv = [PYTHON, "manage.py", "import_wikidata_dump", str(path), "--chunk-dir", str(chunk_dir), "--wait"]
    workers = (worker, *others)

    def workers_cpu() -> float:
        return sum(each.cpu_seconds() for each in workers)

    busy, worker_cpu, postgres = busy_ticks(), workers_cpu(), postgres_ticks()
    measured = run_measured([*argv, *options], environment(slice_bytes), timeout=1800)
    postgres_after = postgres_ticks()
    postgres_cpu = sum(used - postgres.get(pid, 0) for pid, used in postgres_after.items()) / TICKS
    found = SUMMARY.search(measured.output)
    if found is None:
        raise RuntimeError(f"no summary in the command's output:\n{measured.output[-3000:]}")
    entities, written, unchanged = (int(group.replace(",", "")) for group in found.groups())
    return Run(
        measured,
        entities,
        written,
        unchanged,
        (busy_ticks() - busy) / TICKS,
        workers_cpu() - worker_cpu,
        postgres_cpu,
    )


def stored_ids() -> set[str]:
    with psycopg.connect(DATABASE_URL) as connection:
        return {row[0] for row in connection.execute("SELECT wikidata_id FROM importers_wikidataentity")}


def clear() -> None:
    with psycopg.connect(DATABASE_URL) as connection:
        connection.execute(
            "TRUNCATE importers_wikidataentity, importers_dumpchunk, importers_dumpimport, "
            "importers_importoutcome, importers_runoutcome, importers_wikidataredirect"
        )


def warm_up(directory: Path, worker: Worker) -> None:
    """Import a small dump, then empty the tables: each of the worker's processes has imported what its
    first task imports, as in any import of more than a few slices, and is not timed doing it."""
    path = directory / "warm-up.json.gz"
    make_dump.write(path, WARM_UP_ENTITIES, member_lines=WARM_UP_ENTITIES // 32)
    import_dump(path, directory / "chunks", worker, slice_bytes=1)  # a slice a member
    clear()


def humans_of(path: Path) -> set[str]:
    """The ids of the entities with a P31 statement of value Q5: a plain Python filter of the file."""
    found = set()
    with gzip.open(path, "rb") as dump:
        for line in dump:
            text = line.rstrip().removesuffix(b",")
            if text in (b"[", b"]"):
                continue
            document = json.loads(text)
            for statement in (document.get("claims") or {}).get("P31", []):
                value = statement["mainsnak"].get("datavalue", {}).get("value", {})
                if isinstance(value, dict) and (value.get("id") == "Q5" or value.get("numeric-id") == 5):
                    found.add(document["id"])
    return found


def zcat_wc(path: Path) -> float:
    """Seconds of ``zcat PATH | wc -l``: decompressing and counting lines, the floor of any reader."""
    start = time.perf_counter()
    subprocess.run(f"zcat {shlex.quote(str(path))} | wc -l", shell=True, check=True, capture_output=True)
    return time.perf_counter() - start


def bare_pipeline(path: Path) -> float:
    """Seconds of the bare pipeline, one process: gzip → orjson.loads → orjson.dumps → COPY into jsonb (lz4).

    No filter, no check, no label, no upsert: the limit of a single process on this machine.
    """
    with psycopg.connect(DATABASE_URL) as connection:
        connection.execute("DROP TABLE IF EXISTS bare_copy")
        connection.execute("CREATE TABLE bare_copy (id text, data jsonb COMPRESSION lz4)")
        connection.commit()
        start = time.perf_counter()
        with gzip.open(path, "rb") as dump, connection.cursor().copy("COPY bare_copy FROM STDIN") as copy:
            rows = []
            for line in dump:
                text = line.rstrip().removesuffix(b",")
                if text in (b"[", b"]"):
                    continue
                document = orjson.loads(text)
                rows.append(
                    b"%s\t%s\n" % (document["id"].encode(), orjson.dumps(document).replace(b"\\", b"\\\\"))
                )
                if len(rows) >= 1000:
                    copy.write(b"".join(rows))
                    rows = []
            copy.write(b"".join(rows))
        connection.commit()
        seconds = time.perf_counter() - start
        connection.execute("DROP TABLE bare_copy")
    return seconds


def flush_broker() -> None:
    flush_redis(BROKER_URL)


def run(quick: bool) -> Result:
    sizes = (5_000, 15_000) if quick else (100_000, 300_000)
    result = Result(NAME, TITLE)
    imports = Table(
        "import_wikidata_dump PATH --wait, PostgreSQL, one worker from the Procfile's line",
        [
            "run",
            "entities",
            "MiB (uncompressed)",
            "seconds",
            "entities/s",
            "MB/s",
            "written",
            "peak RSS command",
            "peak RSS worker",
        ],
    )
    limits = Table(
        f"Limits on the {sizes[0]:,}-entity dump, in the same run",
        ["pipeline", "seconds", "entities/s", "MB/s"],
    )
    cpu = Table(
        "Where the CPU time of a first run goes (2 cores: 2 CPU-seconds a second)",
        [
            "entities",
            "wall s",
            "busy CPU-s",
            "command",
            "worker (all processes)",
            "PostgreSQL",
            "the rest (Redis, others)",
        ],
    )
    machines = Table(
        f"One worker against two, each the Procfile's line with a --hostname of its own (two machines' "
        f"worth), first run of the {sizes[0]:,}-entity dump read from nginx over HTTP Range",
        ["workers", "seconds", "entities/s", "MB/s", "stored once", "worker CPU-s", "PostgreSQL CPU-s"],
    )
    first_rates: dict[int, float] = {}
    second: dict[int, Run] = {}
    rss: dict[int, tuple[float, float]] = {}
    where_ok = None
    flush_broker()
    with tempfile.TemporaryDirectory(prefix="bench-dump-") as scratch:
        directory = Path(scratch)
        for count in sizes:
            path = directory / f"dump-{count}.json.gz"
            make_dump.write(path, count)
            with gzip.open(path, "rb") as dump:
                uncompressed = sum(len(block) for block in iter(lambda: dump.read(MIB), b""))
            with database(), procfile_worker_running(directory) as worker:
                warm_up(directory, worker)
                first = import_dump(path, directory / "chunks", worker)
                again = import_dump(path, directory / "chunks", worker)
                rss[count] = (
                    max(first.measured.max_rss_mib, again.measured.max_rss_mib),
                    worker.peak_rss_mib(),
                )
                for label, done in (("first", first), ("second, same dump", again)):
                    imports.add(
                        f"{label}, {count:,}",
                        fmt(done.entities),
                        fmt(uncompressed / MIB),
                        fmt(done.measured.seconds, 1),
                        fmt(done.rate),
                        fmt(uncompressed / MIB / done.measured.seconds, 1),
                        fmt(done.written),
                        f"{done.measured.max_rss_mib:.0f} MiB",
                        f"{rss[count][1]:.0f} MiB",
                    )
                cpu.add(
                    fmt(count),
                    fmt(first.measured.seconds, 1),
                    fmt(first.busy_cpu, 1),
                    fmt(first.measured.cpu_seconds, 1),
                    fmt(first.worker_cpu, 1),
                    fmt(first.postgres_cpu, 1),
                    fmt(
                        first.busy_cpu - first.measured.cpu_seconds - first.worker_cpu - first.postgres_cpu, 1
                    ),
                )
                first_rates[count], second[count] = first.rate, again
                if count == sizes[0]:
                    clear()
                    where = import_dump(path, directory / "chunks", worker, "--where", "P31=Q5")
                    expected = humans_of(path)
                    where_ok = stored_ids() == expected and where.written == len(expected)
                    imports.add(
                        f"--where P31=Q5, {count:,}",
                        fmt(where.entities),
                        fmt(uncompressed / MIB),
                        fmt(where.measured.seconds, 1),
                        fmt(where.rate),
                        "",
                        fmt(where.written),
                        f"{where.measured.max_rss_mib:.0f} MiB",
                        "",
                    )
                    zcat = zcat_wc(path)
                    bare = bare_pipeline(path)
                    bare_ratio = (first_rates[count] / (count / bare), first)
                    for label, seconds in (
                        ("zcat | wc -l", zcat),
                        ("gzip → orjson → COPY, one process", bare),
                    ):
                        limits.add(
                            label, fmt(seconds, 1), fmt(count / seconds), fmt(uncompressed / MIB / seconds, 1)
                        )
                    limits.add(
                        "import_wikidata_dump (first run)",
                        fmt(count / first_rates[count], 1),
                        fmt(first_rates[count]),
                        fmt(uncompressed / MIB / (count / first_rates[count]), 1),
                    )
                    with nginx_serving(directory, directory / "nginx") as server:
                        url = server.url(path.name)
                        clear()
                        runs = [(1, import_dump(url, directory / "chunks", worker))]
                        once = [stored_ids() == make_dump.ids(count)]
                        with procfile_worker_running(directory, "second@%h") as other:
                            clear()
                            runs.append((2, import_dump(url, directory / "chunks", worker, others=(other,))))
                            once.append(stored_ids() == make_dump.ids(count))
                    for (workers, done), right in zip(runs, once, strict=True):
                        machines.add(
                            str(workers),
                            fmt(done.measured.seconds, 1),
                            fmt(done.rate),
                            fmt(uncompressed / MIB / done.measured.seconds, 1),
                            str(right and done.written == count),
                            fmt(done.worker_cpu, 1),
                            fmt(done.postgres_cpu, 1),
                        )
            shutil.rmtree(directory / "chunks", ignore_errors=True)
    flush_broker()
    imports.notes += [
        "The dump: `python -m bench.make_dump` writes the real documents of ../shared/wikidata in turn under "
        f"new ids ({len(make_dump.templates())} documents: the 2015 dump sample, the mock dump, and today's "
        "Q42, Q2112, Q1040, P279, P8098, P31, L525, L3354, L3872), each line as today's dumps write it (type "
        "and id first; pageid, ns, title, lastrevid and modified last; empty maps as []), gzipped as "
        f"Wikimedia gzips it (a member per {make_dump.MEMBER_LINES:,} lines; Wikimedia's hold about 65,000), "
        "level 6. Today's full dump averages about 13 KB an entity; this one less (see MiB), so MB/s is the "
        "figure to compare with other dumps.",
        f"Worker: the Procfile's `worker:` line run as written (`{procfile_worker()}`), local settings, "
        f"PostgreSQL {DATABASE}; chunks of WIKIDATA_DUMP_CHUNK_BYTES. Timed from the command's start to its "
        "summary (--wait).",
        "Peak RSS: the command's from /usr/bin/time; the worker's, the largest VmHWM of its processes.",
    ]
    cpu.notes += [
        "Busy CPU-s from /proc/stat over the command's run; the command's from its rusage, the worker's from "
        "/proc of its processes, PostgreSQL's from /proc of its processes (backends that came and went "
        "between two reads are in the rest). The rest includes whatever else ran on the machine meanwhile.",
        "Where a worker's time goes (cProfile of a 20,000-entity import with --sync, 2026-12-05): "
        "PostgreSQL's COPY into the staging table, which parses each document into jsonb, 45% (2.2 of "
        "4.8 s), the upsert 9%; then, a line, parsing it with orjson (35 µs), the empty-map quirk (18 µs), "
        "check_parsed's tests of its text (26 µs: the nesting test on its brackets 12 µs, the look for an "
        "exponent the database refuses 13 µs, 64 µs before that look stopped reading every real line's "
        '"lastrevid":N as one), summarize (7 µs, 22 µs before it stopped sorting every label\'s '
        "language). Inflating the slices is 3% of it.",
        "The command reads the first gzip member and a little near each slice's start, and sends a task a "
        "slice: it decompresses nothing. A second run parses no line: each line's id and lastrevid, read "
        "from its two ends, are looked up in batches of 1,000, and a line whose revision is stored is "
        "skipped.",
    ]
    machines.notes += [
        "Both on this machine's 2 cores: a second worker brings no cores of its own here, so its row shows "
        "that slices are shared without loss or double work, and what the sharing costs; on two machines "
        "each worker brings its own. Every slice is read with Range requests for its own bytes only.",
    ]
    result.tables += [imports, limits, machines, cpu]
    big, small = sizes[1], sizes[0]
    for count in sizes:
        result.goals.append(
            Goal(
                f"first run, {count:,} entities",
                f"{first_rates[count]:,.0f} entities/s",
                f"≥ {GOAL_RATE:,}",
                first_rates[count] >= GOAL_RATE,
            )
        )
        speedup = second[count].rate / first_rates[count]
        result.goals.append(
            Goal(
                f"second run, {count:,}: rows rewritten, speed-up",
                f"{second[count].written}, {speedup:.1f}x",
                f"0, ≥ {GOAL_SECOND_RUN:.0f}x",
                second[count].written == 0 and speedup >= GOAL_SECOND_RUN,
            )
        )
    ratio, first_small = bare_ratio
    result.goals.append(
        Goal(
            f"first run, {small:,} entities, against gzip → orjson → COPY in one process",
            f"{ratio:.2f}",
            f"≥ {GOAL_BARE_RATIO}",
            ratio >= GOAL_BARE_RATIO,
        )
    )
    share = first_small.measured.cpu_seconds / first_small.busy_cpu
    result.goals.append(
        Goal(
            f"first run, {small:,} entities: the command's share of the busy CPU",
            f"{share:.1%}",
            f"≤ {GOAL_COMMAND_SHARE:.0%}",
            share <= GOAL_COMMAND_SHARE,
        )
    )
    result.goals.append(
        Goal(
            f"stretch: first run, {big:,} entities",
            f"{first_rates[big]:,.0f} entities/s",
            f"≥ {STRETCH_RATE:,}",
            first_rates[big] >= STRETCH_RATE,
        )
    )
    flat = all(rss[big][side] <= rss[small][side] * 1.2 for side in (0, 1))
    result.goals.append(
        Goal(
            f"peak RSS {small:,} → {big:,} entities",
            f"command {rss[small][0]:.0f} → {rss[big][0]:.0f} MiB, "
            f"worker {rss[small][1]:.0f} → {rss[big][1]:.0f} MiB",
            "flat (within 20%)",
            flat,
        )
    )
    result.goals.append(
        Goal(
            "--where P31=Q5 stores exactly the entities a Python filter of the file finds",
            str(where_ok),
            "True",
            bool(where_ok),
        )
    )
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as python -m bench --only dump")
