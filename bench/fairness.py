"""Who gets a returned slot: the request budget's waits, served in order or not, now and at a baseline.

Many threads share a budget of a few slots, each taking a slot, holding it as long as a request,
and coming back for another, again and again: in order (first come, first served), no wait is
longer than a round of every thread's turn; out of order, some waiters are passed over again and
again. Both sides run the same script in a subprocess of their own: this checkout, and a
temporary git worktree of the baseline commit, before the budget served its waiters in order.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from .harness import BROKER_URL, PYTHON, ROOT, TOKEN
from .report import Goal, Result, Table, fmt

NAME = "fairness"
TITLE = "9. The request budget's waiters: 200 threads, 3 slots, served in order, against the baseline"
# The last commit before the budget served its waiters in the order they came.
BASELINE = "c524994"
THREADS = 200
SLOTS = 3
HOLD = 0.05  # seconds a slot is held: a fast request

SCRIPT = """
import json, sys, threading, time
from core.budget import LocalBudget, RedisBudget

store, url, key, threads, slots, hold, seconds = sys.argv[1:]
threads, slots, hold, seconds = int(threads), int(slots), float(hold), float(seconds)
budget = RedisBudget(url, key, slots, 30.0) if store == "redis" else LocalBudget(slots, 30.0)
waits = []
start = threading.Barrier(threads)
end = time.monotonic() + seconds

def one():
    start.wait()
    while time.monotonic() < end:
        asked = time.monotonic()
        with budget.slot():
            waits.append(time.monotonic() - asked)
            time.sleep(hold)

running = [threading.Thread(target=one) for _ in range(threads)]
for thread in running:
    thread.start()
for thread in running:
    thread.join()
waits.sort()
print(json.dumps({
    "requests": len(waits),
    "p50": waits[len(waits) // 2],
    "p99": waits[int(len(waits) * 0.99)],
    "max": waits[-1],
}))
"""


def measure(directory: Path, store: str, seconds: float) -> dict[str, float]:
    key = f"bench-fairness-{TOKEN}-{directory.name}-{store}"
    done = subprocess.run(
        [PYTHON, "-c", SCRIPT, store, BROKER_URL, key, str(THREADS), str(SLOTS), str(HOLD), str(seconds)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=seconds * 4 + 120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the fairness script failed in {directory}:\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return figures


def run(quick: bool) -> Result:
    seconds = 10.0 if quick else 40.0
    sides: dict[tuple[str, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as directory:
        baseline_root = Path(directory) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(baseline_root), BASELINE],
            cwd=ROOT,
            check=True,
        )
        try:
            for store in ("redis", "local"):
                sides[(store, f"baseline {BASELINE}")] = measure(baseline_root, store, seconds)
                sides[(store, "this checkout")] = measure(ROOT, store, seconds)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(baseline_root)], cwd=ROOT, check=False
            )

    result = Result(NAME, TITLE)
    table = Table(
        f"seconds a thread waited for a slot; {THREADS} threads, {SLOTS} slots, each held "
        f"{HOLD * 1000:.0f} ms, for {seconds:.0f} s",
        ["store", "side", "requests", "p50", "p99", "longest"],
    )
    for (store, side), figures in sides.items():
        table.add(
            "Redis" if store == "redis" else "in memory",
            side,
            fmt(figures["requests"]),
            fmt(figures["p50"], 2),
            fmt(figures["p99"], 2),
            fmt(figures["max"], 2),
        )
    round_trip = THREADS * HOLD / SLOTS
    table.notes.append(
        f"In order, a thread waits for every other thread's turn, {THREADS} x {HOLD} s / {SLOTS} = "
        f"{round_trip:.1f} s, and no longer. The baseline runs from a temporary `git worktree` of its "
        "commit with this checkout's Python, against the same Redis."
    )
    result.tables.append(table)
    worst = max(sides[(store, "this checkout")]["p99"] for store in ("redis", "local"))
    goal = 1.5 * round_trip
    result.goals.append(
        Goal("p99 wait for a slot, either store", f"{worst:.2f} s", f"≤ {goal:.1f} s", worst <= goal)
    )
    return result
