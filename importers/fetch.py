"""Fetching entity documents from Wikidata with the ``wikidata`` package, robustly and within bounds.

The package's ``Client`` does the request and understands Wikidata's answers (a redirect
answers with the target's document; a 400 "Invalid ID" means no such id). Underneath, it
gets an opener of its own that sends requests through urllib3: pooled connections, retries
with backoff and jitter that obey ``Retry-After``, a deadline on every attempt
(``WIKIDATA_ATTEMPT_DEADLINE``), a cap on every answer's size (``WIKIDATA_MAX_RESPONSE_BYTES``,
gzip decoded within it), and redirects followed only within the host asked.
"""

from __future__ import annotations

import contextlib
import email.message
import email.utils
import functools
import heapq
import io
import itertools
import math
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError
from wikidata.client import Client
from wikidata.entity import EntityId, EntityState

from core.budget import Budget, BudgetUnavailable, LocalBudget, RedisBudget

from .documents import Batch, Fetched, UnusableDocument, check
from .entity_ids import ENTITY_ID
from .jsoncodec import TooManyValues, check_values, loads

__all__ = (
    "EntityInvalid",
    "EntityMissing",
    "FetchError",
    "FetchFailed",
    "fetch_batch",
    "fetch_entity",
    "fetch_revisions",
    "request_budget",
)

# A slot of the request budget is a lease this much longer than an attempt's deadline, so that a
# request always ends (cut off at the deadline) before its lease does.
LEASE_GRACE = 1.0

# wbgetentities answers at most this many ids a request (for clients without bot rights).
MAX_BATCH = 50

# Rate limiting and the server's own trouble: worth another try, after Retry-After or the backoff.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Wikidata redirects within itself (Special:EntityData sends a non-canonical URL, such as a
# lower-case id or a missing extension, to the canonical one), and following that is harmless
# while every request stays at the origin configured. A redirect anywhere else would make the
# importer fetch, and store, what another host says, or probe hosts only it can reach: refused.
MAX_REDIRECTS = 3
# An answer is read this much at a time, so that the size cap applies before memory is spent.
CHUNK = 64 * 1024
# Gzip is asked for (Wikidata's JSON shrinks about tenfold), and decoded here within the cap;
# urllib3 would decode any encoding the server names, whole and in memory.
ACCEPT_ENCODING = "gzip"
GZIP_ENCODINGS = frozenset({"gzip", "x-gzip"})
# RFC 9110 says whole seconds; a fraction does no harm.
DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# An id echoed in an error is cut to this length: it came from the answer.
MAX_ECHO = 64
_NOT_SAME_KIND = "which is not a Wikidata id of the kind asked for: refused"

USER_AGENT_HELP = (
    "Wikidata refused the request (HTTP 403), most likely for its User-Agent policy: set "
    "WIKIDATA_USER_AGENT to a descriptive agent with contact details, e.g. "
    "'my-importer/1.0 (https://example.org; ops@example.org)'"
)


class FetchError(Exception):
    """Fetching an entity did not give its document."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class EntityMissing(FetchError):
    """Wikidata has no such entity: it never existed, or it was deleted (HTTP 404)."""


class EntityInvalid(FetchError):
    """Wikidata says the id is not valid (HTTP 400, "Invalid ID")."""


class FetchFailed(FetchError):
    """The request failed for good: retries exhausted, refused, or an unusable response."""


def fetch_entity(entity_id: str) -> Fetched:
    """Fetch one entity document from ``settings.WIKIDATA_BASE_URL``.

    Raises:
        EntityMissing: HTTP 404.
        EntityInvalid: HTTP 400 "Invalid ID".
        FetchFailed: anything else that gave no document, after retries where they help; an
            answer that is not an entity document, or the document of an id of another kind;
            a document that cannot be stored as it was sent (``documents.check``).
    """
    opener = PooledOpener()
    client = Client(settings.WIKIDATA_BASE_URL, opener=opener, user_agent=settings.WIKIDATA_USER_AGENT)
    try:
        entity = client.get(EntityId(entity_id), load=True)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise EntityMissing(f"{entity_id}: no such entity (HTTP 404)", opener.attempts) from None
        if error.code == 403:
            raise FetchFailed(USER_AGENT_HELP, opener.attempts) from None
        raise FetchFailed(
            f"{entity_id}: HTTP {error.code} {error.reason} after {opener.attempts} attempts", opener.attempts
        ) from None
    except TooManyValues as error:
        message = f"{entity_id}: the response is too large to decode: {error}"
        raise FetchFailed(message, opener.attempts) from None
    except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, or nested beyond decoding
        message = f"{entity_id}: the response is not JSON ({error!s:.200})"
        raise FetchFailed(message, opener.attempts) from None
    except (KeyError, TypeError, AttributeError, AssertionError, StopIteration) as error:
        raise FetchFailed(
            f"{entity_id}: the response has an unexpected shape ({type(error).__name__}: {error!s:.200})",
            opener.attempts,
        ) from None
    if entity.state is EntityState.non_existent:
        # The client says so for a 400 "Invalid ID", and for a 200 whose body is JSON null.
        if opener.status == 400:
            message = f"{entity_id}: Wikidata says this is not a valid id (HTTP 400)"
            raise EntityInvalid(message, opener.attempts)
        raise FetchFailed(f"{entity_id}: the response is JSON null, not an entity document", opener.attempts)
    document = entity.data
    if not (
        isinstance(document, dict)
        and document.get("id") == entity.id
        and isinstance(document.get("type"), str)
    ):
        message = f"the response has an unexpected shape (no entity document for {entity.id!r:.{MAX_ECHO}})"
        raise FetchFailed(f"{entity_id}: {message}", opener.attempts)
    target = str(entity.id)
    if target != entity_id and not _same_kind(entity_id, target):
        message = f"{entity_id}: answered with the document of {target!r:.{MAX_ECHO}}, {_NOT_SAME_KIND}"
        raise FetchFailed(message, opener.attempts)
    try:
        check(document)
    except UnusableDocument as error:
        raise FetchFailed(f"{entity_id}: could not store the document: {error}", opener.attempts) from None
    return Fetched(target, document, opener.attempts)


def fetch_batch(entity_ids: list[str]) -> Batch:
    """Fetch up to 50 entities with one ``wbgetentities`` request (``maxlag=5``).

    A maxlag error (sent with HTTP 200) is retried like a 429: after its ``Retry-After``. An
    entry that cannot be used (another entity's document without Wikidata's redirect marker,
    or a document that cannot be stored as sent) is in ``failed``, with the reason.

    Raises:
        FetchFailed: the request failed for good, or the answer is not a usable response.
    """
    body, attempts = _wbgetentities(entity_ids)
    return _batch(entity_ids, body, attempts)


def fetch_revisions(entity_ids: list[str]) -> dict[str, int | None]:
    """Return the current revision (``lastrevid``) of up to 50 entities, without their documents.

    One ``wbgetentities`` request with ``props=info``, retried as ``fetch_batch`` is. An id
    Wikidata does not have, or whose entry has no revision, maps to ``None``; a merged id maps to
    its target's revision.

    Raises:
        FetchFailed: the request failed for good, or the answer is not a usable response.
    """
    body, attempts = _wbgetentities(entity_ids, props="info")
    entities = body.get("entities") if isinstance(body, dict) else None
    if not isinstance(entities, dict):
        raise FetchFailed("wbgetentities: the response has an unexpected shape (no entities)", attempts)
    revisions: dict[str, int | None] = {}
    for entity_id in entity_ids:
        entry = entities.get(entity_id)
        revision = entry.get("lastrevid") if isinstance(entry, dict) and "missing" not in entry else None
        revisions[entity_id] = revision if type(revision) is int else None
    return revisions


def _wbgetentities(entity_ids: list[str], **params: str) -> tuple[Any, int]:
    """One ``wbgetentities`` request (``maxlag=5``, retried); return its decoded body and the attempts.

    Raises:
        ValueError: not 1 to 50 ids.
        FetchFailed: the request failed for good, or the answer is not JSON, or an API error.
    """
    if not 0 < len(entity_ids) <= MAX_BATCH:
        raise ValueError(f"wbgetentities takes 1 to {MAX_BATCH} ids, not {len(entity_ids)}")
    query = urllib.parse.urlencode(
        {"action": "wbgetentities", "ids": "|".join(entity_ids), **params, "format": "json"}
    )
    url = urllib.parse.urljoin(settings.WIKIDATA_BASE_URL, "w/api.php") + f"?{query}&maxlag=5"
    headers = {"User-Agent": settings.WIKIDATA_USER_AGENT}
    attempts = 0
    for lagged in range(settings.WIKIDATA_MAX_RETRIES + 1):
        answer, tries = _get(url, headers)
        attempts += tries
        if answer.status == 403:
            raise FetchFailed(USER_AGENT_HELP, attempts)
        if answer.status >= 300:
            message = f"HTTP {answer.status} {answer.reason} after {attempts} attempts"
            raise FetchFailed(f"wbgetentities: {message}", attempts)
        try:
            check_values(answer.body, settings.WIKIDATA_MAX_RESPONSE_VALUES)
            body = loads(answer.body)
        except TooManyValues as too_many:
            raise FetchFailed(
                f"wbgetentities: the response is too large to decode: {too_many}", attempts
            ) from None
        except ValueError as not_json:
            message = f"wbgetentities: the response is not JSON ({not_json!s:.200})"
            raise FetchFailed(message, attempts) from None
        api_error = body.get("error") if isinstance(body, dict) else None
        lag = isinstance(api_error, dict) and api_error.get("code") == "maxlag"
        if lag and lagged < settings.WIKIDATA_MAX_RETRIES:
            # The servers lag behind: every process sharing the budget waits, not only this one
            # (already paused by _get when the answer said for how long, as Wikidata's does).
            if "Retry-After" not in answer.headers:
                request_budget().pause(_wait(answer.headers, lagged + 1))
            continue
        if api_error is not None:
            raise FetchFailed(f"wbgetentities: API error {api_error!s:.500}", attempts)
        return body, attempts
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _batch(entity_ids: list[str], body: Any, attempts: int) -> Batch:
    entities = body.get("entities") if isinstance(body, dict) else None
    if not isinstance(entities, dict):
        raise FetchFailed("wbgetentities: the response has an unexpected shape (no entities)", attempts)
    documents: dict[str, Mapping[str, Any]] = {}
    failed: dict[str, str] = {}
    missing, absent = [], []
    for entity_id in entity_ids:
        entry = entities.get(entity_id)
        if not isinstance(entry, dict):
            absent.append(entity_id)
        elif "missing" in entry:
            missing.append(entity_id)
        elif isinstance(entry.get("id"), str) and isinstance(entry.get("type"), str):
            refusal = _refusal(entity_id, entry)
            if refusal is None:
                documents[entity_id] = entry
            else:
                failed[entity_id] = f"{entity_id}: {refusal}"
        else:
            absent.append(entity_id)
    return Batch(documents, missing, absent, attempts, failed)


def _refusal(asked: str, entry: Mapping[str, Any]) -> str | None:
    """Why a wbgetentities entry cannot be stored for ``asked``, or None when it can.

    Wikidata answers a merged id with the target's document and marks it so
    (``"redirects": {"from": asked, "to": target}``); another entity's document without that
    mark would overwrite that entity with whatever the answer says.
    """
    target = entry["id"]
    if target != asked:
        if not _same_kind(asked, target):
            return f"answered with the document of {target!r:.{MAX_ECHO}}, {_NOT_SAME_KIND}"
        if entry.get("redirects") != {"from": asked, "to": target}:
            return f"answered with the document of {target} without Wikidata's redirect marker: refused"
    try:
        check(entry)
    except UnusableDocument as error:
        return f"could not store the document: {error}"
    return None


def _same_kind(asked: str, target: str) -> bool:
    """Whether ``target`` is a canonical id of the kind of ``asked``: an item for an item, and so on."""
    return ENTITY_ID.fullmatch(target) is not None and target[0] == asked[0]


# HTTP


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer: its status, headers and body (decoded, and at most the size cap)."""

    status: int
    reason: str
    headers: urllib3.HTTPHeaderDict
    body: bytes


UNRESOLVED_HOST = (
    "the host name does not resolve: check the network connection (or a proxy), and "
    "WIKIDATA_BASE_URL, which says where entities are fetched from"
)


class _Retryable(Exception):
    """An attempt that gave no complete answer (a connection error, a timeout, the deadline)."""


class _Unusable(Exception):
    """A complete answer that cannot be used, and would not be better the next time."""


def _get(url: str, headers: dict[str, str]) -> tuple[Answer, int]:
    """GET ``url`` with the retry policy; return the final answer and the attempts made.

    429 and 5xx answers, connection errors, timeouts and attempts cut off at the deadline are
    tried again, ``WIKIDATA_MAX_RETRIES`` times; the last answer is returned whatever its status.

    Raises:
        FetchFailed: no complete answer after the retries; or an unusable one (larger than
            ``WIKIDATA_MAX_RESPONSE_BYTES``, in an encoding not asked for, redirected to another
            host), which is not tried again.
    """
    budget = request_budget()
    attempt = 1
    while True:
        try:
            with budget.slot():  # every attempt, retries too, goes through the shared budget
                answer = _attempt(url, headers)
                if answer.status == 429 or "Retry-After" in answer.headers:
                    # Wikimedia asks this client to slow down: all its processes, not this one
                    # alone. Before the slot goes back, or another process could take it first.
                    budget.pause(_wait(answer.headers, attempt))
        except _Unusable as error:
            raise FetchFailed(f"{url}: {error}", attempt) from None
        except (_Retryable, BudgetUnavailable) as error:
            if attempt > settings.WIKIDATA_MAX_RETRIES:
                raise FetchFailed(f"{url}: gave up after {attempt} attempts: {error}", attempt) from None
            time.sleep(_backoff(attempt))
        else:
            if answer.status not in RETRIED_STATUSES or attempt > settings.WIKIDATA_MAX_RETRIES:
                return answer, attempt
            if not (answer.status == 429 or "Retry-After" in answer.headers):  # else paused above
                time.sleep(_wait(answer.headers, attempt))
        attempt += 1


def _attempt(url: str, headers: dict[str, str]) -> Answer:
    """One attempt: a request, and its redirects within the host, within WIKIDATA_ATTEMPT_DEADLINE.

    Raises:
        _Retryable: no complete answer in time, or the connection failed.
        _Unusable: a redirect to another host, or too many; an answer larger than the cap, or
            in an encoding not asked for.
    """
    with _Deadline(settings.WIKIDATA_ATTEMPT_DEADLINE) as deadline:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            answer = _request(current, headers, deadline)
            location = answer.headers.get("Location") if answer.status in REDIRECT_STATUSES else None
            if location is None:
                return answer
            current = _redirect_target(url, current, location)
        raise _Unusable(f"more than {MAX_REDIRECTS} redirects")


def _request(url: str, headers: dict[str, str], deadline: _Deadline) -> Answer:
    """One request; return its answer, read whole within the size cap (but not one to retry or follow)."""
    response: urllib3.BaseHTTPResponse | None = None
    reusable = False
    if deadline.remaining <= 0:  # a redirect came at the last moment
        raise _Retryable(deadline.explanation)
    # Connecting is the one wait the watchdog cannot cut short: it gets no more than what is left.
    timeout = urllib3.Timeout(
        connect=min(settings.WIKIDATA_TIMEOUT, deadline.remaining), read=settings.WIKIDATA_TIMEOUT
    )
    try:
        response = _pool().request(
            "GET",
            url,
            headers={**headers, "Accept-Encoding": ACCEPT_ENCODING},
            retries=False,
            redirect=False,
            preload_content=False,
            decode_content=False,
            timeout=timeout,
        )
        if response.status in RETRIED_STATUSES or response.status in REDIRECT_STATUSES:
            body = b""  # closing the connection costs less than reading what it would say
        else:
            body = _read_body(response)
            reusable = True
    except (urllib3.exceptions.HTTPError, _Unusable) as error:
        if deadline.expired:
            raise _Retryable(deadline.explanation) from None
        if isinstance(error, _Unusable):
            raise
        if isinstance(error, urllib3.exceptions.NameResolutionError):
            # Offline, or a mistyped host: waiting and asking again would not change the answer.
            raise _Unusable(f"{error.conn.host}: {UNRESOLVED_HOST}") from None
        raise _Retryable(str(error)) from None
    finally:
        deadline.unwatch()
        if response is not None:
            if not reusable or deadline.expired:
                response.close()
            response.release_conn()
    if deadline.expired:  # a body without a length ends when the connection does
        raise _Retryable(deadline.explanation)
    return Answer(response.status, response.reason or "", response.headers, body)


def _read_body(response: urllib3.BaseHTTPResponse) -> bytes:
    """The body of ``response``, decoded from gzip when it came so, of at most WIKIDATA_MAX_RESPONSE_BYTES.

    Raises:
        _Unusable: larger than that (as sent or decoded), in an encoding not asked for, or not
            valid gzip.
        urllib3.exceptions.HTTPError: the connection failed while reading.
    """
    limit = settings.WIKIDATA_MAX_RESPONSE_BYTES
    too_large = _Unusable(f"the answer is larger than WIKIDATA_MAX_RESPONSE_BYTES ({limit:,} bytes)")
    length = response.headers.get("Content-Length", "").strip()
    if length.isdigit() and int(length) > limit:
        raise too_large
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in {"identity", *GZIP_ENCODINGS}:
        raise _Unusable(f"the answer is encoded as {encoding!r:.40}, which was not asked for")
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in GZIP_ENCODINGS else None
    body = bytearray()
    received = 0
    for chunk in response.stream(CHUNK, decode_content=False):
        received += len(chunk)
        if decoder is None:
            body += chunk
        else:
            try:
                # At most one byte beyond the cap: enough to know, whatever the chunk would inflate to.
                body += decoder.decompress(chunk, limit + 1 - len(body))
            except zlib.error as error:
                raise _Unusable(f"the answer is not valid gzip ({error})") from None
        if received > limit or len(body) > limit:
            raise too_large
    if decoder is not None and received and not decoder.eof:
        raise _Unusable("the answer's gzip stream is cut short")
    if decoder is not None and decoder.unused_data:
        raise _Unusable("the answer's gzip stream is followed by other data")
    return bytes(body)


def _redirect_target(origin: str, current: str, location: str) -> str:
    """The URL a redirect from ``current`` to ``location`` leads to, if it is at ``origin``'s host.

    Raises:
        _Unusable: it leads to another scheme, host or port (a downgrade to HTTP is another host
            too), or is no URL that can be requested.
    """
    invalid = _Unusable(f"redirected to an invalid URL ({location!r:.200})")
    try:
        target = urllib.parse.urljoin(current, location.strip())
        first, second = urllib.parse.urlsplit(origin), urllib.parse.urlsplit(target)
        same = (first.scheme, first.hostname, first.port) == (second.scheme, second.hostname, second.port)
    except ValueError:  # a port that is not a number, a broken IPv6 address
        raise invalid from None
    if not (target.isascii() and target.isprintable() and " " not in target):
        raise invalid
    if not same:
        raise _Unusable(f"redirected to another host ({target!r:.200}): refused")
    return target


def _backoff(retry: int) -> float:
    """Seconds before retry ``retry`` (1, 2, ...): factor * 2^(retry-1), at most the cap, plus jitter."""
    factor = settings.WIKIDATA_BACKOFF_FACTOR
    exponential = min(factor * 2.0 ** min(retry - 1, 64), settings.WIKIDATA_BACKOFF_MAX)
    return float(exponential + random.uniform(0, factor))


def _wait(headers: Mapping[str, str], retry: int) -> float:
    """Seconds before retry ``retry`` after an answer: its Retry-After (capped), or the backoff if longer."""
    asked = _retry_after(headers)
    backoff = _backoff(retry)
    if asked is None:
        return backoff
    return max(backoff, min(asked, float(settings.WIKIDATA_RETRY_AFTER_MAX)))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds an answer's ``Retry-After`` asks to wait: a number of seconds, or an HTTP date.

    Returns None when there is no such header, or it is neither (a negative number, NaN, a
    word, a broken date): then the backoff applies. A date in the past asks for no wait.
    """
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if DELAY_SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        date = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if date.tzinfo is None:  # "-0000": UTC, says RFC 5322, from a source that does not know its zone
        date = date.replace(tzinfo=UTC)
    return max((date - datetime.now(UTC)).total_seconds(), 0.0)


class _Deadline:
    """The end of one attempt: when it passes, the connection in use is shut down, whatever it awaits.

    A read timeout bounds each wait for data, not the answer: a server sending a byte a second
    never trips it, whether in the headers or the body. The watchdog thread shuts the socket
    down, which makes the blocked read return at once; the connection is then closed, not reused.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
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
        return f"no complete answer within WIKIDATA_ATTEMPT_DEADLINE ({self.seconds:g} s)"

    def __enter__(self) -> _Deadline:
        _attempts.deadline = self
        _watchdog.watch(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self.finished = True
            self._sock = None
        _attempts.deadline = None

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
        self._due: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: _Deadline) -> None:
        with self._changed:
            heapq.heappush(self._due, (deadline.at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wikidata-deadlines", daemon=True)
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
_attempts = threading.local()


def _shut_down(sock: socket.socket) -> None:
    # The plain socket's shutdown: a TLS socket's own would drop its TLS state under the reader.
    with contextlib.suppress(OSError):  # closed already
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _resolve(host: str, port: int, seconds: float) -> list[str]:
    """The addresses of ``host``, in the resolver's order, looked up within ``seconds``.

    ``getaddrinfo`` blocks in C for as long as the resolver takes (its timeouts times its servers
    and tries), beyond any socket timeout and the watchdog's reach: that wait ran outside the
    attempt's deadline, and past the budget slot's lease. Here it runs on a thread of its own,
    waited for no longer than the attempt has left; a lookup still hanging then is left to end.

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
        found = lookup.result(timeout=max(seconds, 0))
    except FutureTimeout:
        raise TimeoutError(f"looking up {host} took longer than the attempt had left") from None
    return list(dict.fromkeys(str(address[4][0]) for address in found))


@functools.cache
def _resolver() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="wikidata-resolve")


os.register_at_fork(after_in_child=_resolver.cache_clear)  # a forked child has none of its threads


class _WatchedHTTPConnection(HTTPConnection):
    """A connection that the current attempt's deadline can cut off while it waits for the answer,
    whose host name is looked up within that deadline too."""

    def _new_conn(self) -> socket.socket:
        deadline: _Deadline | None = getattr(_attempts, "deadline", None)
        seconds = deadline.remaining if deadline is not None else settings.WIKIDATA_TIMEOUT
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
        deadline: _Deadline | None = getattr(_attempts, "deadline", None)
        if deadline is not None and self.sock is not None:
            deadline.watch(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The same, over TLS."""


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def request_budget() -> Budget:
    """The request budget every process fetching from Wikidata with these settings shares.

    In Redis at ``WIKIDATA_LIMITER_URL`` when there is one, else in this process's memory; at
    most ``WIKIDATA_MAX_IN_FLIGHT`` requests at once, ``WIKIDATA_MAX_REQUESTS_PER_MINUTE`` a minute.
    """
    return budget_for(
        settings.WIKIDATA_LIMITER_URL,
        settings.WIKIDATA_LIMITER_KEY,
        settings.WIKIDATA_MAX_IN_FLIGHT,
        settings.WIKIDATA_ATTEMPT_DEADLINE + LEASE_GRACE,
        settings.WIKIDATA_MAX_REQUESTS_PER_MINUTE,
    )


@functools.cache
def budget_for(url: str, key: str, limit: int, lease_seconds: float, per_minute: int | None) -> Budget:
    """The budget of one configuration, one a process: its threads share it (and a local one's count)."""
    if url:
        return RedisBudget(url, key, limit, lease_seconds, per_minute)
    return LocalBudget(limit, lease_seconds, per_minute)


@functools.cache
def _pool() -> urllib3.PoolManager:
    # One pool a process, made on first use: after a worker forks, not before.
    manager = urllib3.PoolManager(maxsize=8)
    manager.pool_classes_by_scheme = {
        "http": _WatchedHTTPConnectionPool,
        "https": _WatchedHTTPSConnectionPool,
    }
    return manager


class PooledOpener(urllib.request.OpenerDirector):
    """An opener for ``wikidata.client.Client`` that sends its requests through ``_get``.

    The client sets the User-Agent in ``addheaders`` before each request; giving it an opener
    of its own keeps it from changing the headers of urllib's global opener. ``status`` is the
    last answer's HTTP status, ``attempts`` the requests made for it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0
        self.status = 0

    def open(self, fullurl: str | urllib.request.Request, data: Any = None, timeout: Any = None) -> Any:
        url = fullurl if isinstance(fullurl, str) else fullurl.full_url
        self.attempts = 1
        try:
            answer, self.attempts = _get(url, dict(self.addheaders))
        except FetchFailed as error:
            self.attempts = error.attempts
            raise
        self.status = answer.status
        if answer.status >= 300:
            headers = email.message.Message()
            for name, value in answer.headers.items():
                headers[name] = value
            raise urllib.error.HTTPError(url, answer.status, answer.reason, headers, io.BytesIO(answer.body))
        # Before the client decodes it: bytes alone do not bound the memory it takes.
        check_values(answer.body, settings.WIKIDATA_MAX_RESPONSE_VALUES)
        return io.BytesIO(answer.body)


def longest_fetch_seconds() -> float:
    """An upper bound of the time one ``fetch_entity`` may take, retries included.

    Each attempt ends by ``WIKIDATA_ATTEMPT_DEADLINE``, connecting included (``WIKIDATA_TIMEOUT``
    bounds each wait within it); between attempts it waits at most the longer of the backoff cap
    (plus jitter) and the ``Retry-After`` cap.
    """
    attempts = settings.WIKIDATA_MAX_RETRIES + 1
    longest_wait = max(
        settings.WIKIDATA_BACKOFF_MAX + settings.WIKIDATA_BACKOFF_FACTOR, settings.WIKIDATA_RETRY_AFTER_MAX
    )
    return float(attempts * settings.WIKIDATA_ATTEMPT_DEADLINE + (attempts - 1) * longest_wait)
