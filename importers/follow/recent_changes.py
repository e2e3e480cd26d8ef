"""Wikidata's recent changes from the API (``list=recentchanges``, 30 days kept): how the follower
repairs a gap the stream cannot fill (a position older than its 7 days, or the stream down long).

https://www.mediawiki.org/wiki/API:RecentChanges. Each change is given in the stream's shape (a
recentchange event), so that ``changes.parse_change`` reads both. Every attempt holds a slot of
the shared request budget (``fetch.request_budget``), as every Wikidata request does. (A module of
its own, on fetch.py's public functions only, while fetch.py is being split.)
"""

from __future__ import annotations

import functools
import json
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
from django.conf import settings

from ..fetch import request_budget

__all__ = ("RecentChangesFailed", "recent_changes")

# Wikidata's entity namespaces: items, Property:, Lexeme:.
NAMESPACES = "0|120|146"
# The most changes an answer holds (the API's limit for clients without the apihighlimits right).
LIMIT = 500
# Answers that are worth asking again, after WIKIDATA_BACKOFF_FACTOR doubling (or Retry-After).
RETRY_STATUSES = (429, 500, 502, 503, 504)


class RecentChangesFailed(Exception):
    """The API did not give the recent changes (after retries); the message says why."""


def recent_changes(start: float, end: float) -> Iterator[dict[str, Any]]:
    """Yield the entity changes made from ``start`` to ``end`` (Unix times), oldest first, as
    recentchange events, following the API's continuation.

    Raises:
        RecentChangesFailed: a request failed for good, or the answer is not the API's.
    """
    params: dict[str, str] = {
        "action": "query",
        "list": "recentchanges",
        "rcnamespace": NAMESPACES,
        "rcprop": "title|ids|timestamp|loginfo",
        "rclimit": str(LIMIT),
        "rcdir": "newer",
        "rcstart": _timestamp(start),
        "rcend": _timestamp(end),
        "format": "json",
        "formatversion": "2",
    }
    while True:
        answer = _get(params)
        changes = answer.get("query", {}).get("recentchanges") if isinstance(answer, dict) else None
        if not isinstance(changes, list):
            raise RecentChangesFailed(f"list=recentchanges answered {json.dumps(answer)[:300]}")
        for change in changes:
            if isinstance(change, dict):
                yield as_event(change)
        more = answer.get("continue")
        if not isinstance(more, dict):
            return
        params.update({key: str(value) for key, value in more.items()})


def as_event(change: Mapping[str, Any]) -> dict[str, Any]:
    """A ``list=recentchanges`` entry as the stream's recentchange event would carry it."""
    return {
        "meta": {"domain": "www.wikidata.org", "dt": change.get("timestamp")},
        "wiki": "wikidatawiki",
        "type": change.get("type"),
        "namespace": change.get("ns"),
        "title": change.get("title"),
        "revision": {"old": change.get("old_revid"), "new": change.get("revid")},
        "log_type": change.get("logtype"),
        "log_action": change.get("logaction"),
    }


def _get(params: Mapping[str, str]) -> Any:
    """One API answer, decoded; a 429 or 5xx, or no answer, is asked again with backoff."""
    url = urllib.parse.urljoin(settings.WIKIDATA_BASE_URL, "w/api.php")
    headers = {"User-Agent": settings.WIKIDATA_USER_AGENT}
    timeout = urllib3.Timeout(connect=settings.WIKIDATA_TIMEOUT, read=settings.WIKIDATA_TIMEOUT)
    problem = ""
    for attempt in range(settings.WIKIDATA_MAX_RETRIES + 1):
        if attempt:
            time.sleep(min(settings.WIKIDATA_BACKOFF_FACTOR * 2**attempt, settings.WIKIDATA_BACKOFF_MAX))
        try:
            with request_budget().slot():
                response = _http().request("GET", url, fields=params, headers=headers, timeout=timeout)
        except urllib3.exceptions.HTTPError as error:
            problem = f"{type(error).__name__}: {error}"
            continue
        if response.status in RETRY_STATUSES:
            problem = f"HTTP {response.status}"
            retry_after = response.headers.get("Retry-After", "")
            if retry_after.isdigit():
                time.sleep(min(float(retry_after), settings.WIKIDATA_RETRY_AFTER_MAX))
            continue
        if response.status != 200:
            raise RecentChangesFailed(f"list=recentchanges: HTTP {response.status}")
        try:
            answer = json.loads(response.data)
        except ValueError:
            raise RecentChangesFailed("list=recentchanges answered something that is not JSON") from None
        if isinstance(answer, dict) and "error" in answer:
            raise RecentChangesFailed(f"list=recentchanges: {json.dumps(answer['error'])[:300]}")
        return answer
    raise RecentChangesFailed(
        f"list=recentchanges failed {settings.WIKIDATA_MAX_RETRIES + 1} times: {problem}"
    )


@functools.cache
def _http() -> urllib3.PoolManager:
    return urllib3.PoolManager(retries=False)


def _timestamp(moment: float) -> str:
    """A Unix time as the API's ``rcstart`` takes it: ISO 8601, UTC."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
