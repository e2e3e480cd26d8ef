"""Worker processes and signals: a SIGTERM sent to every process at once still ends in a warm shutdown.

A platform that stops a machine signals every process on it: Heroku sends SIGTERM to each process
of a dyno at every deploy and daily restart (and SIGKILL to what is left 30 s later), as
``kill -TERM -PGID`` does to a process group. Celery's answer to SIGTERM, in the worker's main
process, is a warm shutdown: take no new message, let the running tasks finish, acknowledge them.
But a prefork pool process dies of SIGTERM with its task, whose message then goes back to the
queue and runs again. So a pool process ignores a SIGTERM from anyone but the worker's main
process, which still ends its pool processes with SIGTERM when it means to (a cold shutdown, a
task cancelled when the broker connection is lost, ``revoke(terminate=True)``).

A warm shutdown waits for the running tasks however long they take, and the platform does not:
after ``IMPORTER_WARM_SHUTDOWN_TIMEOUT`` seconds (25, within Heroku's 30) the worker turns it
into a cold shutdown, which cancels the tasks still running and gives their messages back to
the queue at once; killed by the platform instead, they would wait for the broker's visibility
timeout (an hour on Redis).

Celery's own switches do not do this. ``REMAP_SIGTERM=SIGQUIT`` makes pool processes ignore
SIGTERM, but turns the main process's SIGTERM into a cold shutdown, which cancels the running
tasks; ``worker_soft_shutdown_timeout`` delays that cancellation, but the main process sleeps in
its signal handler meanwhile, so tasks that finish in that time are not acknowledged and run
again (Celery 5.6).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from billiard.process import current_process  # type: ignore[attr-defined]  # not in the stubs
from celery import current_app
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutting_down
from django.conf import settings
from django.core.checks import run_checks

from .budget import release_held
from .checks import BOUNDS
from .redis_urls import describe_tls, is_tls

__all__ = (
    "bound_warm_shutdown",
    "check_settings_at_start",
    "connect_worker_signals",
    "log_redis_tls_policy",
    "shield_pool_process_from_sigterm",
)

logger = logging.getLogger(__name__)


def connect_worker_signals() -> None:
    """Connect this module's receivers to Celery's worker signals (idempotent)."""
    worker_process_init.connect(shield_pool_process_from_sigterm, weak=False, dispatch_uid=__name__)
    worker_shutting_down.connect(bound_warm_shutdown, weak=False, dispatch_uid=__name__)
    worker_ready.connect(log_redis_tls_policy, weak=False, dispatch_uid=__name__)
    worker_init.connect(check_settings_at_start, weak=False, dispatch_uid=__name__)


def check_settings_at_start(**kwargs: Any) -> None:
    """Stop a worker whose settings put a bound out of its range (``core.checks``), naming it.

    A worker runs no Django system check of its own. SystemExit passes the guard Celery keeps
    around signal receivers, which logs and goes on after an exception.
    """
    errors = run_checks(tags=[BOUNDS])
    if errors:
        for error in errors:
            logger.critical("%s", error)
        raise SystemExit(1)


def log_redis_tls_policy(**kwargs: Any) -> None:
    """At worker start, log once how each Redis over TLS is reached (the broker, the budget, ...).

    Every Redis URL in the settings carries its TLS policy (``core.redis_urls``); this says which
    is in force, where kombu would otherwise warn on every connection.
    """
    urls = {str(current_app.conf.broker_url or ""), str(current_app.conf.result_backend or "")}
    urls.update(
        value
        for name in dir(settings)
        if name.endswith("_URL") and isinstance(value := getattr(settings, name), str)
    )
    for url in sorted(filter(is_tls, urls)):
        logger.info("Redis over TLS: %s", describe_tls(url))


def bound_warm_shutdown(how: str, **kwargs: Any) -> None:
    """When a warm shutdown starts, arrange a cold one after ``IMPORTER_WARM_SHUTDOWN_TIMEOUT`` seconds.

    The cold shutdown is Celery's own, as on SIGQUIT: it cancels the tasks still running, whose
    messages go back to the queue. A worker that is done sooner exits first. 0 waits for ever.
    """
    timeout = float(settings.IMPORTER_WARM_SHUTDOWN_TIMEOUT)
    if how != "Warm" or timeout <= 0:
        return
    timer = threading.Timer(timeout, _cold_shutdown, args=(timeout,))
    timer.daemon = True  # the worker may exit before it fires
    timer.start()


def _cold_shutdown(waited: float) -> None:
    logger.warning(
        "Warm shutdown not done after %g s (IMPORTER_WARM_SHUTDOWN_TIMEOUT): a cold shutdown "
        "cancels the tasks still running, and their messages go back to the queue",
        waited,
    )
    os.kill(os.getpid(), signal.SIGQUIT)


def shield_pool_process_from_sigterm(**kwargs: Any) -> None:
    """In a prefork pool process, ignore SIGTERM unless the worker's main process sent it.

    SIGTERM is blocked in the pool process and taken by a thread that waits for it: one from
    the main process (the parent) ends the process at once, as SIGTERM would have; any other is
    ignored, and the main process's warm shutdown ends the process when its task is done.
    Without ``signal.sigwaitinfo`` (macOS), which says who sent a signal, every SIGTERM is
    ignored: there a cold shutdown waits for the running tasks too.

    The solo pool sends ``worker_process_init`` in the main process: nothing changes there, so
    that SIGTERM still starts its warm shutdown.
    """
    if current_process().name == "MainProcess":
        return
    if not hasattr(signal, "sigwaitinfo"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return
    # Blocked before the thread starts, which inherits the mask: in no thread of this process
    # does SIGTERM run a handler or its default action; it waits for sigwaitinfo.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_end_on_sigterm_from, args=(os.getppid(),), name="sigterm", daemon=True).start()


def _end_on_sigterm_from(parent: int) -> None:
    """Wait for SIGTERMs; end this process at the first one that ``parent`` sent."""
    while signal.sigwaitinfo({signal.SIGTERM}).si_pid != parent:
        pass  # the platform's, or anyone else's: the main process decides when this one ends
    # Its task is cancelled (a cold shutdown): the request budget's slots it holds go back now,
    # not when their leases end, so that the next worker need not wait for them.
    release_held()
    # What the main process meant: this process ends now, without running anything more.
    # SIGKILL, because a thread cannot unblock SIGTERM for the main thread (so the worker's log
    # says the process "exited with 'signal 9 (SIGKILL)'" where it said SIGTERM).
    os.kill(os.getpid(), signal.SIGKILL)
