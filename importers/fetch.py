"""Fetching entity documents from Wikidata with the ``wikidata`` package, robustly.

The package's ``Client`` does the request and understands Wikidata's answers (a redirect
answers with the target's document; a 400 "Invalid ID" means no such id). Underneath, it
gets an opener of its own that sends requests through urllib3: pooled connections, a
timeout, and retries with backoff and jitter that obey ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import email.message
import functools
import io
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import urllib3
from django.conf import settings
from wikidata.client import Client
from wikidata.entity import EntityId, EntityState

from .documents import Batch, Fetched
from .jsoncodec import loads

__all__ = (
    "EntityInvalid",
    "EntityMissing",
    "FetchError",
    "FetchFailed",
    "fetch_batch",
    "fetch_entity",
)

# wbgetentities answers at most this many ids a request (for clients without bot rights).
MAX_BATCH = 50

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
        FetchFailed: anything else that gave no document, after retries where they help.
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
    except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, or nested beyond decoding
        message = f"{entity_id}: the response is not JSON ({error!s:.200})"
        raise FetchFailed(message, opener.attempts) from None
    except (KeyError, TypeError, AssertionError, StopIteration) as error:
        raise FetchFailed(
            f"{entity_id}: the response has an unexpected shape ({type(error).__name__}: {error})",
            opener.attempts,
        ) from None
    if entity.state is EntityState.non_existent:
        raise EntityInvalid(f"{entity_id}: Wikidata says this is not a valid id (HTTP 400)", opener.attempts)
    document = entity.data
    if not (
        isinstance(document, dict)
        and document.get("id") == entity.id
        and isinstance(document.get("type"), str)
    ):
        raise FetchFailed(
            f"{entity_id}: the response has an unexpected shape (no entity document for {entity.id})",
            opener.attempts,
        )
    return Fetched(str(entity.id), document, opener.attempts)


def fetch_batch(entity_ids: list[str]) -> Batch:
    """Fetch up to 50 entities with one ``wbgetentities`` request (``maxlag=5``).

    A maxlag error (sent with HTTP 200) is retried like a 429: after its ``Retry-After``.

    Raises:
        FetchFailed: the request failed for good, or the answer is not a usable response.
    """
    if not 0 < len(entity_ids) <= MAX_BATCH:
        raise ValueError(f"wbgetentities takes 1 to {MAX_BATCH} ids, not {len(entity_ids)}")
    query = urllib.parse.urlencode({"action": "wbgetentities", "ids": "|".join(entity_ids), "format": "json"})
    url = urllib.parse.urljoin(settings.WIKIDATA_BASE_URL, "w/api.php") + f"?{query}&maxlag=5"
    headers = {"User-Agent": settings.WIKIDATA_USER_AGENT}
    attempts = 0
    for lagged in range(settings.WIKIDATA_MAX_RETRIES + 1):
        response, tries = _get(url, headers)
        attempts += tries
        if response.status == 403:
            raise FetchFailed(USER_AGENT_HELP, attempts)
        if response.status >= 400:
            message = f"HTTP {response.status} {response.reason} after {attempts} attempts"
            raise FetchFailed(f"wbgetentities: {message}", attempts)
        try:
            body = loads(response.data)
        except (ValueError, RecursionError) as not_json:  # or nested beyond decoding
            message = f"wbgetentities: the response is not JSON ({not_json!s:.200})"
            raise FetchFailed(message, attempts) from None
        api_error = body.get("error") if isinstance(body, dict) else None
        lag = isinstance(api_error, dict) and api_error.get("code") == "maxlag"
        if lag and lagged < settings.WIKIDATA_MAX_RETRIES:
            time.sleep(min(_retry_after(response), settings.WIKIDATA_RETRY_AFTER_MAX))
            continue
        if api_error is not None:
            raise FetchFailed(f"wbgetentities: API error {api_error}", attempts)
        return _batch(entity_ids, body, attempts)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _batch(entity_ids: list[str], body: Any, attempts: int) -> Batch:
    entities = body.get("entities") if isinstance(body, dict) else None
    if not isinstance(entities, dict):
        raise FetchFailed("wbgetentities: the response has an unexpected shape (no entities)", attempts)
    documents: dict[str, Mapping[str, Any]] = {}
    missing, absent = [], []
    for entity_id in entity_ids:
        entry = entities.get(entity_id)
        if not isinstance(entry, dict):
            absent.append(entity_id)
        elif "missing" in entry:
            missing.append(entity_id)
        elif isinstance(entry.get("id"), str) and isinstance(entry.get("type"), str):
            documents[entity_id] = entry
        else:
            absent.append(entity_id)
    return Batch(documents, missing, absent, attempts)


def _get(url: str, headers: dict[str, str]) -> tuple[urllib3.BaseHTTPResponse, int]:
    """GET ``url`` with the retry policy; return the final response and the attempts made."""
    retry = _retry_policy()
    try:
        response = _pool().request("GET", url, headers=headers, retries=retry, timeout=_timeout())
    except urllib3.exceptions.MaxRetryError as error:
        attempts = retry.total + 1 if isinstance(retry.total, int) else 1
        raise FetchFailed(f"{url}: gave up after {attempts} attempts: {error.reason}", attempts) from None
    except urllib3.exceptions.HTTPError as error:  # a failure that is not retried
        raise FetchFailed(f"{url}: {error}", 1) from None
    history = response.retries.history if response.retries else ()
    return response, len(history) + 1


def _retry_after(response: urllib3.BaseHTTPResponse) -> float:
    """Seconds to wait before the next try: the answer's ``Retry-After`` (seconds or an HTTP date).

    A value that is neither, or negative, means the default of 5 s.
    """
    value = response.headers.get("Retry-After")
    if value is not None:
        with contextlib.suppress(urllib3.exceptions.InvalidHeader):
            return max(urllib3.Retry().parse_retry_after(value), 0.0)
    return 5.0


def _timeout() -> urllib3.Timeout:
    return urllib3.Timeout(settings.WIKIDATA_TIMEOUT)


class PooledOpener(urllib.request.OpenerDirector):
    """An opener for ``wikidata.client.Client`` that sends its requests through urllib3.

    The client sets the User-Agent in ``addheaders`` before each request; giving it an opener
    of its own keeps it from changing the headers of urllib's global opener.
    """

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def open(self, fullurl: str | urllib.request.Request, data: Any = None, timeout: Any = None) -> Any:
        url = fullurl if isinstance(fullurl, str) else fullurl.full_url
        self.attempts = 1
        try:
            response, self.attempts = _get(url, dict(self.addheaders))
        except FetchFailed as error:
            self.attempts = error.attempts
            raise
        if response.status >= 400:
            headers = email.message.Message()
            for name, value in response.headers.items():
                headers[name] = value
            raise urllib.error.HTTPError(
                url, response.status, response.reason or "", headers, io.BytesIO(response.data)
            )
        return io.BytesIO(response.data)


def longest_fetch_seconds() -> float:
    """An upper bound of the time one ``fetch_entity`` may take, retries included.

    Each attempt may wait ``WIKIDATA_TIMEOUT`` to connect and as long again to read; between
    attempts it waits at most the longer of the backoff cap (plus jitter) and the
    ``Retry-After`` cap.
    """
    attempts = settings.WIKIDATA_MAX_RETRIES + 1
    longest_wait = max(
        settings.WIKIDATA_BACKOFF_MAX + settings.WIKIDATA_BACKOFF_FACTOR, settings.WIKIDATA_RETRY_AFTER_MAX
    )
    return float(attempts * 2 * settings.WIKIDATA_TIMEOUT + (attempts - 1) * longest_wait)


def _retry_policy() -> urllib3.Retry:
    # 429 and 503 come with Retry-After, which urllib3 obeys (capped); the others back off.
    return urllib3.Retry(
        total=settings.WIKIDATA_MAX_RETRIES,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET",),
        backoff_factor=settings.WIKIDATA_BACKOFF_FACTOR,
        backoff_jitter=settings.WIKIDATA_BACKOFF_FACTOR,
        backoff_max=settings.WIKIDATA_BACKOFF_MAX,
        retry_after_max=settings.WIKIDATA_RETRY_AFTER_MAX,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


@functools.cache
def _pool() -> urllib3.PoolManager:
    # One pool a process, made on first use: after a worker forks, not before.
    return urllib3.PoolManager(maxsize=8)
