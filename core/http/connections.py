"""Connections an attempt's deadline can cut off, whatever they wait for, names looked up included.

A read timeout bounds each wait for data, not the answer; ``getaddrinfo`` blocks beyond any
socket timeout. ``Deadline`` (entered around an attempt) and the pool of ``pool()`` bound both.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError


class Deadline:
    """The end of one attempt: when it passes, the connection in use is shut down, whatever it awaits.

    A read timeout bounds each wait for data, not the answer: a server sending a byte a second
    never trips it, whether in the headers or the body (nor does urllib3's ``Timeout(total=...)``:
    it too bounds each wait, not their sum). The watchdog thread shuts the socket
    down, which makes the blocked read return at once; the connection is then closed, not reused.
    """

    def __init__(self, seconds: float, name: str = "the attempt deadline") -> None:
        self.seconds = seconds
        self.name = name  # how messages call it: the setting it comes from
        self.at = time.monotonic() + seconds
        self.expired = False
        self.finished = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def remaining(self) -> float:
        return self.at - time.monotonic()

    @property
    def explanation(self) -> str:
        return f"no complete answer within {self.name} ({self.seconds:g} s)"

    def __enter__(self) -> Deadline:
        _attempt.deadline = self
        _watchdog.watch(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self.finished = True
            self._sock = None
        _attempt.deadline = None

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the deadline passes (at once, if it has)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut_down(sock)

    def unwatch(self) -> None:
        """Leave the connection alone from now on: it is being released."""
        with self._lock:
            self._sock = None

    def expire(self) -> None:
        """The deadline has passed: cut the connection in use off, if the attempt is still on."""
        with self._lock:
            if self.finished:
                return
            self.expired = True
            if self._sock is not None:
                _shut_down(self._sock)


class _Watchdog:
    """One thread a process that expires the deadlines of attempts, in the order they fall due.

    A timer thread per attempt would cost more than the request itself on a fast network
    (starting a thread waits for it to run); this one thread sleeps until the next deadline.
    Finished attempts are dropped when they come due, unexpired.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._due: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._changed:
            heapq.heappush(self._due, (deadline.at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            elif self._due[0][2] is deadline:  # due before the one the thread sleeps until
                self._changed.notify()

    def _run(self) -> None:
        with self._changed:
            while True:
                if not self._due:
                    self._changed.wait()
                    continue
                at, _, deadline = self._due[0]
                if not deadline.finished and at > time.monotonic():
                    self._changed.wait(at - time.monotonic())
                    continue
                heapq.heappop(self._due)
                deadline.expire()


_watchdog = _Watchdog()


def _new_watchdog() -> None:
    # A forked worker process has no watchdog thread (and maybe a lock another thread held).
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_new_watchdog)
# The deadline of the attempt this thread is making, for the connection to find.
_attempt = threading.local()


def _shut_down(sock: socket.socket) -> None:
    # The plain socket's shutdown: a TLS socket's own would drop its TLS state under the reader.
    with contextlib.suppress(OSError):  # closed already
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _resolve(host: str, port: int, seconds: float | None) -> list[str]:
    """The addresses of ``host``, in the resolver's order, looked up within ``seconds``.

    urllib3's own connection calls ``getaddrinfo``, which blocks in C for as long as the resolver
    takes (its timeouts times its servers and tries), beyond any socket timeout and the watchdog's
    reach: that wait ran outside the attempt's deadline, and past the budget slot's lease. Here it
    runs on a thread of its own, waited for no longer than the attempt has left; a lookup still
    hanging then is left to end.

    Raises:
        socket.gaierror: the name does not resolve.
        TimeoutError: no answer within ``seconds``.
    """
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.strip("[]"))
        return [host]  # an address already
    except OSError:
        pass
    lookup = _resolver().submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    try:
        found = lookup.result(timeout=None if seconds is None else max(seconds, 0))
    except FutureTimeout:
        raise TimeoutError(f"looking up {host} took longer than the attempt had left") from None
    return list(dict.fromkeys(str(address[4][0]) for address in found))


@functools.cache
def _resolver() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="http-resolve")


os.register_at_fork(after_in_child=_resolver.cache_clear)  # a forked child has none of its threads


class _WatchedHTTPConnection(HTTPConnection):
    """A connection that the current attempt's deadline can cut off while it waits for the answer,
    whose host name is looked up within that deadline too."""

    def _new_conn(self) -> socket.socket:
        deadline: Deadline | None = getattr(_attempt, "deadline", None)
        # Outside an attempt (never, from ``get``): the connect timeout, as urllib3 would have it.
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        seconds = deadline.remaining if deadline is not None else timeout
        name = self._dns_host
        try:
            addresses = _resolve(name, self.port, seconds)
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from None
        except TimeoutError as error:
            raise ConnectTimeoutError(self, str(error)) from None
        # Each address in turn, as a connection to the name would try them (IPv6, then IPv4...).
        try:
            for address in addresses[:-1]:
                self._dns_host = address
                with contextlib.suppress(urllib3.exceptions.NewConnectionError):
                    return super()._new_conn()
            self._dns_host = addresses[-1]
            return super()._new_conn()
        finally:
            self._dns_host = name  # the name stays the TLS server name; an address was for this socket

    def getresponse(self) -> urllib3.HTTPResponse:  # type: ignore[override]
        deadline: Deadline | None = getattr(_attempt, "deadline", None)
        if deadline is not None and self.sock is not None:
            deadline.watch(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The same, over TLS."""


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


@functools.cache
def pool() -> urllib3.PoolManager:
    # One pool a process, made on first use: after a worker forks, not before.
    manager = urllib3.PoolManager(maxsize=8)
    manager.pool_classes_by_scheme = {
        "http": _WatchedHTTPConnectionPool,
        "https": _WatchedHTTPSConnectionPool,
    }
    return manager
