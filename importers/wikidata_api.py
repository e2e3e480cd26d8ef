"""The Wikidata API calls: one entity's document, a ``wbgetentities`` batch, current revisions.

Each reads its limits from the ``WIKIDATA_*`` settings and sends its requests through the
bounded GET of ``core.http`` (retries, a deadline on every attempt, a size cap, same-host
redirects), in the request budget every process fetching from Wikidata shares. One entity goes
through the ``wikidata`` package's ``Client``, which reads ``Special:EntityData``'s answer (a
merged id answers with the target's document); the client's own seam for requests
(``Client.request``) hands them to that GET, with no urllib opener in between.
"""

from __future__ import annotations

import functools
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings
from wikidata.client import Client
from wikidata.entity import EntityId, EntityState

from core.budget import Budget, LocalBudget, RedisBudget
from core.http import Answer, GetFailed, Limits, get, retry_wait

from .documents import Batch, Fetched, UnusableDocument, check
from .entity_ids import ENTITY_ID
from .jsoncodec import TooManyValues, check_values, loads

__all__ = (
    "LEASE_GRACE",
    "MAX_BATCH",
    "EntityInvalid",
    "EntityMissing",
    "FetchError",
    "FetchFailed",
    "budget_for",
    "fetch_batch",
    "fetch_entity",
    "fetch_revisions",
    "longest_fetch_seconds",
    "recent_changes",
    "request_budget",
)

# A slot of the request budget is a lease this much longer than an attempt's deadline, so that a
# request always ends (cut off at the deadline) before its lease does.
LEASE_GRACE = 1.0

# wbgetentities answers at most this many ids a request (for clients without bot rights).
MAX_BATCH = 50
# list=recentchanges answers at most this many changes a request (without the apihighlimits right).
RECENT_CHANGES_LIMIT = 500

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
    client = _EntityDataClient(entity_id)
    try:
        entity = client.get(EntityId(entity_id), load=True)
    except (KeyError, TypeError, AttributeError, AssertionError, StopIteration) as error:
        raise FetchFailed(
            f"{entity_id}: the response has an unexpected shape ({type(error).__name__}: {error!s:.200})",
            client.attempts,
        ) from None
    if entity.state is EntityState.non_existent:  # the client's word for a 200 whose body is JSON null
        raise FetchFailed(f"{entity_id}: the response is JSON null, not an entity document", client.attempts)
    document = entity.data
    if not (
        isinstance(document, dict)
        and document.get("id") == entity.id
        and isinstance(document.get("type"), str)
    ):
        message = f"the response has an unexpected shape (no entity document for {entity.id!r:.{MAX_ECHO}})"
        raise FetchFailed(f"{entity_id}: {message}", client.attempts)
    target = str(entity.id)
    if target != entity_id and not _same_kind(entity_id, target):
        message = f"{entity_id}: answered with the document of {target!r:.{MAX_ECHO}}, {_NOT_SAME_KIND}"
        raise FetchFailed(message, client.attempts)
    try:
        check(document)
    except UnusableDocument as error:
        raise FetchFailed(f"{entity_id}: could not store the document: {error}", client.attempts) from None
    return Fetched(target, document, client.attempts)


class _EntityDataClient(Client):
    """The ``wikidata`` package's client for one entity, its request made by ``core.http.get``, not urllib.

    ``Client.request(path)`` is the package's seam for fetching: it returns the decoded answer
    (``None`` for no such entity), which ``Entity.load`` understands. ``attempts`` counts the
    requests made for it.
    """

    def __init__(self, entity_id: str) -> None:
        # Never used (``request`` below makes the requests), but the client insists on an opener.
        super().__init__(settings.WIKIDATA_BASE_URL, opener=urllib.request.OpenerDirector())
        self.entity_id = entity_id
        self.attempts = 0

    def request(self, path: str) -> Any:
        name = self.entity_id
        headers = {"User-Agent": settings.WIKIDATA_USER_AGENT}
        answer, self.attempts = _get(urllib.parse.urljoin(self.base_url, path), headers)
        if answer.status == 404:
            raise EntityMissing(f"{name}: no such entity (HTTP 404)", self.attempts)
        if answer.status == 400 and b"Invalid ID" in answer.body:
            raise EntityInvalid(f"{name}: Wikidata says this is not a valid id (HTTP 400)", self.attempts)
        if answer.status == 403:
            raise FetchFailed(USER_AGENT_HELP, self.attempts)
        if answer.status >= 300:
            message = f"{name}: HTTP {answer.status} {answer.reason} after {self.attempts} attempts"
            raise FetchFailed(message, self.attempts)
        return _decoded(answer, name, self.attempts)


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
    """One ``wbgetentities`` request; return its decoded body and the attempts (see ``_api``).

    Raises:
        ValueError: not 1 to 50 ids.
        FetchFailed: as ``_api``.
    """
    if not 0 < len(entity_ids) <= MAX_BATCH:
        raise ValueError(f"wbgetentities takes 1 to {MAX_BATCH} ids, not {len(entity_ids)}")
    return _api("wbgetentities", {"action": "wbgetentities", "ids": "|".join(entity_ids), **params})


def recent_changes(start: str, end: str, limit: int = RECENT_CHANGES_LIMIT) -> Iterator[dict[str, Any]]:
    """Yield the changes to entities (items, properties, lexemes) made from ``start`` to ``end``
    (ISO 8601, UTC), oldest first, as ``list=recentchanges`` gives them, following its continuation.

    https://www.mediawiki.org/wiki/API:RecentChanges (30 days kept).

    Raises:
        FetchFailed: a request failed for good, or the answer is not the API's.
    """
    params = {
        "action": "query",
        "list": "recentchanges",
        "rcnamespace": "0|120|146",
        "rcprop": "title|ids|timestamp|loginfo",
        "rclimit": str(limit),
        "rcdir": "newer",
        "rcstart": start,
        "rcend": end,
        "formatversion": "2",
    }
    while True:
        body, attempts = _api("list=recentchanges", params)
        query = body.get("query") if isinstance(body, dict) else None
        changes = query.get("recentchanges") if isinstance(query, dict) else None
        if not isinstance(changes, list):
            raise FetchFailed("list=recentchanges: the response has an unexpected shape", attempts)
        yield from (change for change in changes if isinstance(change, dict))
        more = body.get("continue")
        if not isinstance(more, dict):
            return
        params = {**params, **{key: str(value) for key, value in more.items()}}


def _api(name: str, params: Mapping[str, str]) -> tuple[Any, int]:
    """One request to the Action API (``maxlag=5``, retried); return its decoded body and the attempts.

    Raises:
        FetchFailed: the request failed for good, or the answer is not JSON, or an API error.
    """
    query = urllib.parse.urlencode({**params, "format": "json"})
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
            raise FetchFailed(f"{name}: {message}", attempts)
        body = _decoded(answer, name, attempts)
        api_error = body.get("error") if isinstance(body, dict) else None
        lag = isinstance(api_error, dict) and api_error.get("code") == "maxlag"
        if lag and lagged < settings.WIKIDATA_MAX_RETRIES:
            # The servers lag behind: every process sharing the budget waits, not only this one
            # (already paused by _get when the answer said for how long, as Wikidata's does).
            if "Retry-After" not in answer.headers:
                request_budget().pause(retry_wait(answer.headers, lagged + 1, _limits()))
            continue
        if api_error is not None:
            raise FetchFailed(f"{name}: API error {api_error!s:.500}", attempts)
        return body, attempts
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _decoded(answer: Answer, name: str, attempts: int) -> Any:
    """The JSON body of ``answer``, its values counted before it is decoded.

    Raises:
        FetchFailed: it may hold more than ``WIKIDATA_MAX_RESPONSE_VALUES`` values (bytes alone do
            not bound the memory decoding takes), or it is not JSON.
    """
    try:
        check_values(answer.body, settings.WIKIDATA_MAX_RESPONSE_VALUES)
        return loads(answer.body)
    except TooManyValues as too_many:
        raise FetchFailed(f"{name}: the response is too large to decode: {too_many}", attempts) from None
    except ValueError as not_json:  # not JSON, not UTF-8, or nested beyond decoding
        raise FetchFailed(f"{name}: the response is not JSON ({not_json!s:.200})", attempts) from None


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


def _limits() -> Limits:
    """The bounds of every request to Wikidata, from the settings, named after them in messages."""
    return Limits(
        retries=settings.WIKIDATA_MAX_RETRIES,
        attempt_deadline=settings.WIKIDATA_ATTEMPT_DEADLINE,
        timeout=settings.WIKIDATA_TIMEOUT,
        max_bytes=settings.WIKIDATA_MAX_RESPONSE_BYTES,
        backoff_factor=settings.WIKIDATA_BACKOFF_FACTOR,
        backoff_max=settings.WIKIDATA_BACKOFF_MAX,
        retry_after_max=settings.WIKIDATA_RETRY_AFTER_MAX,
        deadline_name="WIKIDATA_ATTEMPT_DEADLINE",
        max_bytes_name="WIKIDATA_MAX_RESPONSE_BYTES",
        unresolved_hint="check the network connection (or a proxy), and WIKIDATA_BASE_URL, which says "
        "where entities are fetched from",
    )


def _get(url: str, headers: dict[str, str]) -> tuple[Answer, int]:
    """``core.http.get`` with Wikidata's limits and budget; its failure is a ``FetchFailed``."""
    try:
        return get(url, headers, _limits(), request_budget())
    except GetFailed as error:
        raise FetchFailed(str(error), error.attempts) from None


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
