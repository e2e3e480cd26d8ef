"""What the follower shows of itself: each change's lag, its percentiles over the last minute and
hour, and the status it saves beside its position for ``follow_wikidata --status`` to read.

A change's lag runs from its event's ``meta.dt`` (when Wikidata made it) to its row stored at that
revision or a later one (the row's ``fetched_at``: its import's commit follows within milliseconds),
by this process or by a worker: ``Unseen`` keeps the changes sent until their rows show them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ("LagWindow", "Unseen", "describe", "event_time", "summary_line")

# The windows the percentiles are kept over, in seconds.
WINDOWS = {"minute": 60.0, "hour": 3600.0}
PERCENTILES = (50, 95, 99)


def event_time(data: Mapping[str, Any]) -> float | None:
    """An event's ``meta.dt`` (ISO 8601, UTC: "2020-02-02T13:21:46Z") as a Unix time, or None."""
    meta = data.get("meta")
    moment = meta.get("dt") if isinstance(meta, dict) else None
    if not isinstance(moment, str):
        return None
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


class LagWindow:
    """The lags of the changes sent over the last hour, with when each was sent (Unix times)."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, lags: Iterable[float]) -> None:
        self._samples.extend((now, lag) for lag in lags)
        while self._samples and self._samples[0][0] < now - WINDOWS["hour"]:
            self._samples.popleft()

    def summary(self, now: float) -> dict[str, dict[str, float]]:
        """For each window: ``count`` changes sent in it, and their lag's ``p50``, ``p95``, ``p99`` (s)."""
        result = {}
        for name, seconds in WINDOWS.items():
            lags = sorted(lag for when, lag in self._samples if when >= now - seconds)
            result[name] = {"count": len(lags)} | {f"p{p}": _percentile(lags, p) for p in PERCENTILES}
        return result


class Unseen:
    """The changes sent and not seen stored yet: each id's revision, and when Wikidata made its first
    change sent (Unix times).

    Bounded: at most ``MOST`` ids (the oldest forgotten first, as after a backlog's burst), each for
    ``FORGET`` seconds (a change whose row never comes: its import failed, or the entity became a
    redirect or was deleted); a forgotten change counts in no percentile.
    """

    MOST = 10_000
    FORGET = 600.0

    def __init__(self) -> None:
        self._sent: dict[str, tuple[int, float, float]] = {}  # id: (revision, made, sent)

    def add(self, revisions: Mapping[str, int], made: Mapping[str, float], now: float) -> None:
        """Keep the ids of ``revisions`` that have a time in ``made``, sent at ``now``."""
        for wikidata_id, revision in revisions.items():
            if wikidata_id not in made:
                continue
            known = self._sent.pop(wikidata_id, None)  # re-added last: the dict stays in sending order
            first = made[wikidata_id] if known is None else min(known[1], made[wikidata_id])
            self._sent[wikidata_id] = (max(revision, known[0] if known else revision), first, now)
        while len(self._sent) > self.MOST:
            del self._sent[next(iter(self._sent))]

    def ids(self) -> list[str]:
        return list(self._sent)

    def seen(self, rows: Iterable[tuple[str, int | None, float]], now: float) -> list[float]:
        """Given rows (id, revision, stored at), return the lags of the changes they show, forgotten
        since; forget the changes sent more than ``FORGET`` seconds ago."""
        lags = []
        for wikidata_id, revision, stored_at in rows:
            sent = self._sent.get(wikidata_id)
            if sent is not None and revision is not None and revision >= sent[0]:
                lags.append(max(0.0, stored_at - sent[1]))
                del self._sent[wikidata_id]
        while self._sent and next(iter(self._sent.values()))[2] < now - self.FORGET:  # in sending order
            del self._sent[next(iter(self._sent))]
        return lags

    def __len__(self) -> int:
        return len(self._sent)


def _percentile(ordered: list[float], percent: int) -> float:
    """The nearest-rank percentile of ``ordered`` (sorted); 0 for none."""
    if not ordered:
        return 0.0
    return round(ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)], 3)


def summary_line(status: Mapping[str, Any], now: float) -> str:
    """One line of a status: the follower's log line a minute, and the first of ``describe``."""
    parts = [f"mode {status.get('mode', '?')}"]
    lags = status.get("lag") or {}
    for name, lag in ((name, lags[name]) for name in WINDOWS if name in lags):  # jsonb keeps no key order
        parts.append(
            f"lag over the last {name} p50 {lag['p50']:.1f} s, p95 {lag['p95']:.1f} s, p99 "
            f"{lag['p99']:.1f} s ({lag['count']} changes)"
        )
    parts.append(f"{status.get('pending', 0)} ids pending")
    position_time = status.get("position_time")
    if position_time is not None:
        parts.append(f"position {now - position_time:.1f} s old")
    return "; ".join(parts)


def describe(status: Mapping[str, Any], now: float) -> list[str]:
    """The lines ``follow_wikidata --status`` shows of a saved status (empty: none saved)."""
    if not status:
        return []
    written = status.get("written_at", now)
    return [
        summary_line(status, written),
        f"Saved {now - written:.0f} s ago by {status.get('holder') or 'a follower'} (a follower saves "
        "it with each batch: much older, and none is running).",
    ]
