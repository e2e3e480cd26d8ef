"""Wikidata's recent changes from the API (``list=recentchanges``, 30 days kept): how the follower
repairs a gap the stream cannot fill (a position older than its 7 days, or the stream down long).

The request is ``wikidata_api.recent_changes`` (bounded, retried, within the shared request
budget, as every Wikidata request); here each change is given in the stream's shape (a
recentchange event), so that ``changes.parse_change`` reads both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from .. import wikidata_api
from ..wikidata_api import FetchFailed

__all__ = ("RecentChangesFailed", "recent_changes")

# The most changes an answer holds (the API's limit for clients without the apihighlimits right).
LIMIT = wikidata_api.RECENT_CHANGES_LIMIT


class RecentChangesFailed(Exception):
    """The API did not give the recent changes (after retries); the message says why."""


def recent_changes(start: float, end: float) -> Iterator[dict[str, Any]]:
    """Yield the entity changes made from ``start`` to ``end`` (Unix times), oldest first, as
    recentchange events, following the API's continuation.

    Raises:
        RecentChangesFailed: a request failed for good, or the answer is not the API's.
    """
    try:
        for change in wikidata_api.recent_changes(_timestamp(start), _timestamp(end), LIMIT):
            yield as_event(change)
    except FetchFailed as error:
        raise RecentChangesFailed(str(error)) from None


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


def _timestamp(moment: float) -> str:
    """A Unix time as the API's ``rcstart`` takes it: ISO 8601, UTC."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
