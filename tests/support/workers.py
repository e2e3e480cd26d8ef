"""A real ``celery worker`` process for the tests and the benchmarks: started, pinged, stopped or killed."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.waiting import WaitTimeout, wait_until

__all__ = ["CeleryWorker", "ProcfileWorker", "procfile_worker"]

# Where the worker runs, so that ``-A config.celery_app`` imports this project.
ROOT = Path(__file__).resolve().parent.parent.parent


class CeleryWorker:
    """``celery -A config.celery_app worker`` in a session (and so a process group) of its own.

    The node name is ``{name}@localhost``: the caller makes ``name`` unique to its run, so that
    runs sharing a broker never answer each other's pings. ``env`` is set on top of this process's
    environment. Its output goes to ``log``, unbuffered so that it can be read as it runs; without
    ``log``, to a temporary file removed when the ``with`` block ends.

    Being a group leader, it can be killed with its pool processes at once, as a machine that
    dies or an OOM killer would; ``kill()`` and ``stop()`` leave none of them behind.
    """

    def __init__(
        self,
        name: str,
        queues: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pool: str = "prefork",
        concurrency: int = 1,
        log: Path | None = None,
    ) -> None:
        self.nodename = f"{name}@localhost"
        self.queues = list(queues)
        self.pool = pool
        self.concurrency = concurrency
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self._log_dir: tempfile.TemporaryDirectory[str] | None = None
        if log is None:
            self._log_dir = tempfile.TemporaryDirectory(prefix=f"{name}-")
            log = Path(self._log_dir.name) / "worker.log"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CeleryWorker:
        try:
            self.start()
        except BaseException:
            self.kill()  # started but never answered: not left behind
            self._remove_log()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            self._remove_log()

    def start(self, timeout: float = 60) -> None:
        """Start the worker; return once it answers a ping.

        The ping goes through this process's Celery app, so to the broker that app is set to.

        Raises:
            RuntimeError: it exited at start-up; with its log's tail.
            WaitTimeout: it did not answer within ``timeout`` seconds; with its log's tail.
        """
        # Imported here, not at the top: the benchmarks import this module before they set the
        # environment that the Celery app reads its settings from.
        from config.celery_app import app

        self.launch()

        def answers_a_ping() -> bool:
            if self.exited():
                raise RuntimeError(f"celery worker {self.nodename} exited at start-up:\n{self.log_tail()}")
            # limit=1 returns on the first answer instead of waiting out the timeout.
            return bool(app.control.ping(destination=[self.nodename], timeout=0.5, limit=1))

        wait_until(answers_a_ping, timeout=timeout, why=self.log_tail)

    def launch(self) -> None:
        """Start the worker's process and return at once, without waiting for it to answer.

        For a broker that cannot carry a ping's answer yet (a full Redis refuses its reply); the
        caller watches the worker's work or its log, and ``exited()``.
        """
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True
            )

    def command(self) -> list[str]:
        """The worker's command line."""
        return [
            sys.executable, "-m", "celery", "-A", "config.celery_app", "worker",
            "--hostname", self.nodename, "--queues", ",".join(self.queues),
            "--pool", self.pool, "--concurrency", str(self.concurrency), "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip

    @property
    def pid(self) -> int:
        """The main process's id, which is also its process group's."""
        assert self.process is not None, "the worker was never started"
        return self.process.pid

    def pool_pids(self) -> list[int]:
        """The pool processes, found as the main process's children."""
        found = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False)
        return [int(pid) for pid in found.stdout.split()]

    def exited(self) -> bool:
        """Whether the main process has exited (or never started).

        An exited main process is not reaped here, so that its group id cannot be reused before
        ``kill()`` has signalled the pool processes that may still be in the group.
        """
        if self.process is None or self.process.returncode is not None:
            return True
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def kill(self) -> None:
        """SIGKILL the main process and its pool processes at once, then reap the main process."""
        if self.process is None or self.process.returncode is not None:
            return
        # The main process is not reaped yet, so the group id cannot belong to anyone else.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 20) -> int:
        """Warm shutdown (SIGTERM to the main process, as a supervisor sends); return its exit status.

        Whatever is left of its pool once the main process has exited is killed.

        Raises:
            WaitTimeout: the main process had not exited after ``timeout`` seconds (it is left running).
        """
        assert self.process is not None, "the worker was never started"
        if self.process.returncode is None:
            # Not Popen.send_signal: it would reap an exited main process, and free its group id.
            os.kill(self.pid, signal.SIGTERM)
        wait_until(self.exited, timeout=timeout, why=self.log_tail, interval=0.1)
        self.kill()
        return self.process.returncode

    def stop(self, timeout: float = 30) -> None:
        """Warm shutdown, or SIGKILL to the whole group if it takes over ``timeout`` seconds; never raises."""
        if self.process is None:
            return
        with contextlib.suppress(WaitTimeout):
            self.terminate(timeout)
        self.kill()

    def log_text(self) -> str:
        """Everything the worker has logged so far; empty if it has logged nothing."""
        if not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of its log, to explain a failure."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _remove_log(self) -> None:
        if self._log_dir is not None:
            self._log_dir.cleanup()


def procfile_worker() -> tuple[dict[str, str], list[str]]:
    """Return the Procfile's ``worker`` command: the variables it sets, and the arguments after ``celery``."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    words = shlex.split(next(line for line in lines if line.startswith("worker:")).removeprefix("worker:"))
    env = {}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "celery", f"the Procfile's worker is not a celery command: {words}"
    return env, words[1:]


class ProcfileWorker(CeleryWorker):
    """A worker started as the Procfile starts it: its variables and options, with its queues and name."""

    def __init__(self, name: str, queues: Sequence[str], **options: Any) -> None:
        super().__init__(name, queues, **options)
        variables, arguments = procfile_worker()
        self.env.update(variables)
        self.concurrency = int(arguments[arguments.index("--concurrency") + 1])

    def command(self) -> list[str]:
        _, arguments = procfile_worker()
        arguments[arguments.index("--queues") + 1] = ",".join(self.queues)
        return [sys.executable, "-m", "celery", *arguments, "--hostname", self.nodename]
