"""The machine a benchmark ran on, and what else used its CPUs meanwhile (sampled from /proc)."""

from __future__ import annotations

import os
import platform
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from .harness import DATABASE_NAME

TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 2.0


def describe() -> str:
    """``2 cores · Python 3.11.2 · Linux 6.1`` and the date."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{now} · {os.cpu_count()} cores (os.cpu_count()) · Python {platform.python_version()} · "
        f"{platform.system()} {platform.release()}"
    )


@dataclass
class _Process:
    command: str
    first_ticks: int
    last_ticks: int
    seen_at_start: bool
    ours: bool


@dataclass
class Load:
    """CPU seconds used while a benchmark ran, by whom, out of ``capacity`` (cores times wall time)."""

    wall: float
    capacity: float
    busy: float
    ours: float
    services: float
    others: list[tuple[str, float]] = field(default_factory=list)

    def summary(self) -> str:
        sampled = sum(seconds for _, seconds in self.others)
        unattributed = max(self.busy - self.ours - self.services - sampled, 0.0)
        worth_naming = max(0.5, 0.01 * self.wall)
        named = [(command, seconds) for command, seconds in self.others if seconds >= worth_naming]
        top = "; ".join(f"`{command}` {seconds:.1f} s" for command, seconds in named[:4])
        return (
            f"CPU during this benchmark ({self.wall:.0f} s wall, {self.capacity:.0f} CPU-s available): "
            f"the bench process and its subprocesses {self.ours:.1f} s; PostgreSQL and Redis "
            f"{self.services:.1f} s; other processes {sampled:.1f} s"
            + (f" (largest: {top})" if top else f" (none over {worth_naming:.1f} s)")
            + f"; not attributed {unattributed:.1f} s (processes that lived less than the "
            f"{SAMPLE_SECONDS:.0f} s between samples of /proc, such as a PostgreSQL backend for each "
            "short database connection, and the kernel)."
        )


class CpuWatch:
    """Samples /proc in a thread while a benchmark runs; ``load`` says who used the CPUs."""

    def __init__(self) -> None:
        self._processes: dict[tuple[int, int], _Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-watch", daemon=True)
        self._start_wall = 0.0
        self._start_busy = 0
        self._start_ours = 0.0
        self.load: Load | None = None

    def __enter__(self) -> CpuWatch:
        self._start_wall = time.perf_counter()
        self._start_busy = _busy_ticks()
        self._start_ours = _own_cpu()
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        alive = self._sample(first=False)
        wall = time.perf_counter() - self._start_wall
        services: float = 0
        running: float = 0  # subprocesses still running: not in RUSAGE_CHILDREN yet
        others: dict[str, float] = {}
        for key, process in self._processes.items():
            used = process.last_ticks - (process.first_ticks if process.seen_at_start else 0)
            if process.ours and key in alive and key[0] != os.getpid():
                running += used / TICKS
            if process.ours or used <= 0:
                continue
            if _is_service(process.command):
                services += used / TICKS
            else:
                others[process.command] = others.get(process.command, 0) + used / TICKS
        self.load = Load(
            wall=wall,
            capacity=wall * (os.cpu_count() or 1),
            busy=(_busy_ticks() - self._start_busy) / TICKS,
            ours=_own_cpu() - self._start_ours + running,
            services=services,
            others=sorted(others.items(), key=lambda item: -item[1]),
        )

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample(first=False)

    def _sample(self, *, first: bool) -> set[tuple[int, int]]:
        """Record every process's CPU ticks; return the keys of the processes seen."""
        stats = dict(_read_stats())
        parents = {pid: stat[0] for pid, stat in stats.items()}
        me = os.getpid()
        for pid, (_, start, ticks) in stats.items():
            key = (pid, start)
            known = self._processes.get(key)
            if known is not None:
                known.last_ticks = ticks
                continue
            command = _command(pid)
            if command is None:
                continue
            self._processes[key] = _Process(command, ticks, ticks, first, _descends_from(pid, me, parents))
        return {(pid, start) for pid, (_, start, _) in stats.items()}


def _is_service(command: str) -> bool:
    """Redis, PostgreSQL's own processes, and its backends serving the bench database."""
    program = Path(command.split()[0]).name if command else ""
    if program.startswith("redis-server"):
        return True
    if not program.startswith("postgres"):
        return False
    # A backend: "postgres: [CLUSTER:] USER DATABASE HOST(PORT) STATE"; anything else is PostgreSQL's own.
    words = command.split()
    hosts = [index for index, word in enumerate(words) if word.endswith(")") or word == "[local]"]
    return not hosts or words[hosts[0] - 1] == DATABASE_NAME


def _read_stats() -> Iterator[tuple[int, tuple[int, int, int]]]:
    """(pid, (ppid, start time, user + system ticks)) of every process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        yield int(entry.name), (int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12]))


def _command(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return command[:110] or None  # kernel threads have none


def _descends_from(pid: int, ancestor: int, parents: dict[int, int]) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        if pid not in parents or pid <= 1:
            return False
        pid = parents[pid]
    return False


def _busy_ticks() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return user + nice + system + irq + softirq + steal


def _own_cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total
