"""A bounded HTTP GET: retries with backoff and ``Retry-After`` through a shared budget, a deadline
on every attempt, a cap on every answer's size (gzip decoded within it), and redirects followed
only within the host asked. Its limits are the caller's (``Limits``), read from nowhere else.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
import urllib.parse
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import urllib3

from core.budget import Budget, BudgetUnavailable

from .connections import Deadline, pool

__all__ = ("Answer", "GetFailed", "Limits", "backoff", "get", "retry_wait")

# Rate limiting and the server's own trouble: worth another try, after Retry-After or the backoff.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# A redirect within the host asked (Wikidata's Special:EntityData sends a non-canonical URL, such
# as a lower-case id, to the canonical one) is harmless to follow. One anywhere else would make
# the caller fetch, and store, what another host says, or probe hosts only it can reach: refused.
# urllib3's Retry(redirect=...) follows a redirect to any host: kept.
MAX_REDIRECTS = 3
# An answer is read this much at a time, so that the size cap applies before memory is spent.
CHUNK = 64 * 1024
# Gzip is asked for (JSON shrinks about tenfold), and decoded here within the cap;
# urllib3 2.6 would decode any encoding it knows (deflate, br), and takes a gzip stream cut short
# or followed by junk without a word (tried): kept.
ACCEPT_ENCODING = "gzip"
GZIP_ENCODINGS = frozenset({"gzip", "x-gzip"})
# RFC 9110 says whole seconds; a fraction does no harm. urllib3's Retry.parse_retry_after refuses
# "0.5" (a test asks for it) and reads a "-0000" date as local time: kept.
DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class Limits:
    """The bounds of one ``get``, and how its messages name them (after the caller's settings)."""

    retries: int
    attempt_deadline: float
    timeout: float  # each wait for data, and for connecting
    max_bytes: int
    backoff_factor: float
    backoff_max: float
    retry_after_max: float
    deadline_name: str = "the attempt deadline"
    max_bytes_name: str = "the size cap"
    # What to check when the host name does not resolve.
    unresolved_hint: str = "check the network connection (or a proxy), and the URL"


class GetFailed(Exception):
    """No usable answer: no complete one after the retries, or one that would not be better next time."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer: its status, headers and body (decoded, and at most the size cap)."""

    status: int
    reason: str
    headers: urllib3.HTTPHeaderDict
    body: bytes


class _Retryable(Exception):
    """An attempt that gave no complete answer (a connection error, a timeout, the deadline)."""


class _Unusable(Exception):
    """A complete answer that cannot be used, and would not be better the next time."""


def get(url: str, headers: dict[str, str], limits: Limits, budget: Budget) -> tuple[Answer, int]:
    """GET ``url`` with the retry policy; return the final answer and the attempts made.

    429 and 5xx answers, connection errors, timeouts and attempts cut off at the deadline are
    tried again, ``limits.retries`` times; the last answer is returned whatever its status.

    Raises:
        GetFailed: no complete answer after the retries; or an unusable one (larger than
            ``limits.max_bytes``, in an encoding not asked for, redirected to another host, a
            host name that does not resolve), which is not tried again.
    """
    # urllib3's Retry sleeps within one urlopen, outside the budget's slot and its shared pause: kept.
    attempt = 1
    while True:
        try:
            with budget.slot():  # every attempt, retries too, goes through the shared budget
                answer = _attempt(url, headers, limits)
                if answer.status == 429 or "Retry-After" in answer.headers:
                    # Wikimedia asks this client to slow down: all its processes, not this one
                    # alone. Before the slot goes back, or another process could take it first.
                    budget.pause(retry_wait(answer.headers, attempt, limits))
        except _Unusable as error:
            raise GetFailed(f"{url}: {error}", attempt) from None
        except (_Retryable, BudgetUnavailable) as error:
            if attempt > limits.retries:
                raise GetFailed(f"{url}: gave up after {attempt} attempts: {error}", attempt) from None
            time.sleep(backoff(attempt, limits))
        else:
            if answer.status not in RETRIED_STATUSES or attempt > limits.retries:
                return answer, attempt
            if not (answer.status == 429 or "Retry-After" in answer.headers):  # else paused above
                time.sleep(retry_wait(answer.headers, attempt, limits))
        attempt += 1


def _attempt(url: str, headers: dict[str, str], limits: Limits) -> Answer:
    """One attempt: a request, and its redirects within the host, within ``limits.attempt_deadline``.

    Raises:
        _Retryable: no complete answer in time, or the connection failed.
        _Unusable: a redirect to another host, or too many; an answer larger than the cap, or
            in an encoding not asked for.
    """
    with Deadline(limits.attempt_deadline, limits.deadline_name) as deadline:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            answer = _request(current, headers, deadline, limits)
            location = answer.headers.get("Location") if answer.status in REDIRECT_STATUSES else None
            if location is None:
                return answer
            current = _redirect_target(url, current, location)
        raise _Unusable(f"more than {MAX_REDIRECTS} redirects")


def _request(url: str, headers: dict[str, str], deadline: Deadline, limits: Limits) -> Answer:
    """One request; return its answer, read whole within the size cap (but not one to retry or follow)."""
    response: urllib3.BaseHTTPResponse | None = None
    reusable = False
    if deadline.remaining <= 0:  # a redirect came at the last moment
        raise _Retryable(deadline.explanation)
    # Connecting is the one wait the watchdog cannot cut short: it gets no more than what is left.
    timeout = urllib3.Timeout(connect=min(limits.timeout, deadline.remaining), read=limits.timeout)
    try:
        response = pool().request(
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
            body = _read_body(response, limits)
            reusable = True
    except (urllib3.exceptions.HTTPError, _Unusable) as error:
        if deadline.expired:
            raise _Retryable(deadline.explanation) from None
        if isinstance(error, _Unusable):
            raise
        if isinstance(error, urllib3.exceptions.NameResolutionError):
            # Offline, or a mistyped host: waiting and asking again would not change the answer.
            message = f"{error.conn.host}: the host name does not resolve: {limits.unresolved_hint}"
            raise _Unusable(message) from None
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


def _read_body(response: urllib3.BaseHTTPResponse, limits: Limits) -> bytes:
    """The body of ``response``, decoded from gzip when it came so, of at most ``limits.max_bytes``.

    Raises:
        _Unusable: larger than that (as sent or decoded), in an encoding not asked for, or not
            valid gzip.
        urllib3.exceptions.HTTPError: the connection failed while reading.
    """
    limit = limits.max_bytes
    too_large = _Unusable(f"the answer is larger than {limits.max_bytes_name} ({limit:,} bytes)")
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


def backoff(retry: int, limits: Limits) -> float:
    """Seconds before retry ``retry`` (1, 2, ...): factor * 2^(retry-1), at most the cap, plus jitter."""
    factor = limits.backoff_factor
    exponential = min(factor * 2.0 ** min(retry - 1, 64), limits.backoff_max)
    return float(exponential + random.uniform(0, factor))


def retry_wait(headers: Mapping[str, str], retry: int, limits: Limits) -> float:
    """Seconds before retry ``retry`` after an answer: its Retry-After (capped), or the backoff if longer."""
    asked = _retry_after(headers)
    wait = backoff(retry, limits)
    if asked is None:
        return wait
    return max(wait, min(asked, float(limits.retry_after_max)))


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
