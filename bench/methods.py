"""What a method of an importer costs when called directly: plain and task methods, now and at a baseline.

Both sides run the same script in a subprocess of their own: this checkout, and a temporary git
worktree of the baseline commit (before task methods stayed functions), so that neither imports
the other's code and both run in the same benchmark run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .harness import ROOT, environment
from .report import Goal, Result, Table, fmt

NAME = "methods"
TITLE = "Calling an importer's methods directly: plain and task methods, against the baseline"
# The last commit where the metaclass wrapped every method.
BASELINE = "632c0ab"

SCRIPT = """
import inspect, json, timeit, django
django.setup()
from core.importer import BaseImporter, as_task

class TimedImporter(BaseImporter):
    def helper(self, value):
        return value

    @as_task
    def task(self, value: int) -> int:
        return value

importer = TimedImporter()
number = {number}

def nanoseconds(statement):
    rounds = timeit.repeat(statement, globals={{"importer": importer}}, number=number, repeat=7)
    return min(rounds) / number * 1e9

print(json.dumps({{
    "plain": nanoseconds("importer.helper(1)"),
    "task": nanoseconds("importer.task(1)"),
    "as_task": nanoseconds("importer.task.as_task"),
    "equal": importer.helper == importer.helper,
    "ismethod": inspect.ismethod(importer.helper),
}}))
"""


def measure(directory: Path, number: int) -> dict[str, float | bool]:
    """Run the timing script with ``directory`` as the project root; return its figures."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(number=number)],
        cwd=directory,
        env=environment("config.settings.local"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the timing script failed in {directory}:\n{done.stderr}")
    figures: dict[str, float | bool] = json.loads(done.stdout.splitlines()[-1])
    return figures


def run(quick: bool) -> Result:
    number = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as directory:
        baseline_root = Path(directory) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(baseline_root), BASELINE],
            cwd=ROOT,
            check=True,
        )
        try:
            sides = {
                f"baseline {BASELINE}": measure(baseline_root, number),
                "this checkout": measure(ROOT, number),
            }
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(baseline_root)], cwd=ROOT, check=False
            )

    result = Result(NAME, TITLE)
    table = Table(
        f"ns a call, best of 7 rounds of {number:,} (timeit), one process each side",
        ["side", "importer.helper(1)", "importer.task(1)", "task / plain", "importer.task.as_task",
         "helper == helper", "ismethod(helper)"],
    )  # fmt: skip
    for name, figures in sides.items():
        plain, task = float(figures["plain"]), float(figures["task"])
        table.add(
            name,
            fmt(plain, 1),
            fmt(task, 1),
            fmt(task / plain, 2),
            fmt(float(figures["as_task"]), 1),
            str(figures["equal"]),
            str(figures["ismethod"]),
        )
    table.notes.append(
        "helper is a plain method, task a task method (@as_task); both return their argument. "
        "The baseline runs from a temporary `git worktree` of its commit with this checkout's Python."
    )
    result.tables.append(table)
    current = sides["this checkout"]
    ratio = float(current["task"]) / float(current["plain"])
    result.goals.append(Goal("task method call / plain method call", fmt(ratio, 2), "≤ 2", ratio <= 2))
    return result
