"""``python -m bench [--quick] [--only NAME] [--write]``: run the benchmarks and print their tables."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType, ModuleType

from .harness import ROOT, configure, remove_redis_keys

NAMES = (
    "enqueue", "end_to_end", "batched", "reimport", "overhead", "methods", "budget", "dump", "fairness",
    "follow",
)  # fmt: skip


def command_line(argv: list[str]) -> str:
    """The command as typed from the project root, e.g. ``.venv/bin/python -m bench --write``."""
    python = Path(sys.executable)
    shown = str(python.relative_to(ROOT)) if python.is_relative_to(ROOT) else str(python)
    return shlex.join([shown, "-m", "bench", *argv])


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, for development")
    parser.add_argument("--only", choices=NAMES, action="append", help="run this benchmark (repeatable)")
    parser.add_argument("--write", action="store_true", help="(re)write their sections of BENCHMARKS.md")
    options = parser.parse_args(argv)
    if Path.cwd().resolve() != ROOT:
        parser.error(f"run it from the project root, {ROOT}")

    configure()  # before django.setup(): the bench database, broker and queues of this run
    import django

    django.setup()
    from rich.console import Console

    from . import batched, budget, dump, end_to_end, enqueue, fairness, follow, methods, overhead, reimport
    from .machine import CpuWatch, describe
    from .report import Result, show, write

    modules: dict[str, ModuleType] = {
        module.NAME: module
        for module in (
            enqueue,
            end_to_end,
            batched,
            reimport,
            overhead,
            methods,
            budget,
            dump,
            fairness,
            follow,
        )
    }
    signal.signal(signal.SIGTERM, _interrupt)  # tear down workers and the database on kill, too
    console = Console()
    if not console.is_terminal:
        console.width = 120
    results: list[Result] = []
    failed = []
    try:
        for name in options.only or NAMES:
            console.print(f"[bold]running {name}{' (--quick)' if options.quick else ''} ...")
            try:
                with CpuWatch() as watch:
                    result: Result = modules[name].run(options.quick)
            except Exception:
                console.print(traceback.format_exc(), style="red", highlight=False, markup=False)
                failed.append(name)
                continue
            assert watch.load is not None
            result.context = [f"`{command_line(argv)}`", describe(), watch.load.summary()]
            if options.quick:
                result.context.insert(1, "--quick: small N, for development only")
            show(result, console)
            results.append(result)
    finally:
        remove_redis_keys()
    if options.write and results:
        write(results, list(NAMES))
        console.print(f"wrote {', '.join(r.name for r in results)} to BENCHMARKS.md")
    if failed:
        console.print(f"failed: {', '.join(failed)}", style="red")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
