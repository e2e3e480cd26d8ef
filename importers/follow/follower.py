"""The follower: reads the stream, batches the changes, sends them as imports, saves its position.

A ``Follower`` keeps Wikidata's entity changes (``changes.parse_change``), gathers their ids (the
highest revision of each, ``pending.Pending``) and sends a batch through
``WikidataImporter.import_bulk`` when it holds 50 ids or its oldest change is
``WIKIDATA_FOLLOW_BATCH_SECONDS`` old. The stream position is saved once the batch is sent, so a
restart resumes (``Last-Event-ID``) after the last change sent, and loses none.
What the stream cannot give (a position older than the 7 days it keeps, or the stream down for
longer than ``WIKIDATA_FOLLOW_REPAIR_AFTER``) is repaired from the API's recent changes.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from ..importers import WikidataImporter
from ..models import FollowPosition, ImportOutcome, Status, WikidataEntity
from ..storage import Storage
from ..wikidata_api import MAX_BATCH
from .changes import Change, parse_change
from .lease import Keeper, Lease, LeaseUnavailable
from .lease import lease as follower_lease
from .pending import Pending
from .recent_changes import RecentChangesFailed, recent_changes
from .status import LagWindow, Unseen, event_time, summary_line
from .stream import Disconnected, Event, EventStream

__all__ = ("DELETED", "Follower", "PositionTooOld")

logger = logging.getLogger(__name__)

# Reconnecting waits this long, doubling after each connection that brought no event, up to the most.
RECONNECT_FIRST = 0.5
RECONNECT_MOST = 60.0
# What the follower is doing: starting, reading the stream, repairing a gap from the API's recent
# changes, or waiting for the lease.
STARTING, STREAM, REPAIR, STANDBY = "starting", "stream", "repair", "standby"
# How long the stream keeps its events (7 days), and the API its recent changes (30 days), with an
# hour's margin: a position older than the first is repaired, older than the second cannot be.
STREAM_KEEPS = 7 * 86400.0 - 3600.0
RECENT_CHANGES_KEEP = 30 * 86400.0 - 3600.0
# A repair's changes carry no stream position; the stream starts this many seconds before a
# repair's end (changes read twice change nothing).
REPAIRED = Event(None, "message", "")
REPAIR_OVERLAP = 60.0
# The status is logged this often (seconds).
REPORT_SECONDS = 60.0
# The rows of the changes sent are looked at this often (seconds) for their lag: with workers, they
# are stored after the batch is sent.
CONFIRM_SECONDS = 1.0
# The primary key of the one row of FollowPosition.
POSITION_ROW = 1
# The outcome's error of an entity removed because its page was deleted on Wikidata.
DELETED = "deleted on Wikidata (a deletion on the change feed)"


class PositionTooOld(Exception):
    """The saved position is older than the API's recent changes go back: the gap cannot be repaired."""


class Follower:
    """Follows the stream until ``stop`` is set: reads, batches, sends, saves its position, reconnects.

    Only the stored entities (``WikidataEntity``) are followed, unless ``follow_all``.
    """

    def __init__(
        self, follow_all: bool = False, since: str | None = None, lease: Lease | None = None
    ) -> None:
        self.follow_all = follow_all
        self.since = since
        self.stop = threading.Event()
        row = FollowPosition.objects.filter(pk=POSITION_ROW).first()
        self.pending = Pending(position=row.last_event_id, position_time=_read_to(row)) if row else Pending()
        self.sent = 0
        self.lease = lease if lease is not None else follower_lease()
        self.mode = STARTING
        self.lags = LagWindow()
        self.unseen = Unseen()
        self._next_confirm = 0.0
        self.queued = 0  # events read from the stream, not batched yet
        self._next_report = time.monotonic() + REPORT_SECONDS
        # When the stream went down (Unix time; None: it is up), whether a repair is due for it, and
        # the time the last repair ran to (None: none since the stream last brought events).
        self.down_since: float | None = None
        self.repair_due = False
        self.repaired_to: float | None = None

    @staticmethod
    def saved_position() -> str:
        """The position saved by the last batch sent; empty: none yet."""
        row = FollowPosition.objects.filter(pk=POSITION_ROW).first()
        return row.last_event_id if row is not None else ""

    def halt(self) -> None:
        """Ask ``run`` to stop (from a signal handler or another thread): it saves its position first."""
        self.stop.set()

    def run(self) -> None:
        """Follow until ``halt()``, holding the lease (a standby until it can take it); each
        connection resumes after the saved position, with backoff."""
        delay = RECONNECT_FIRST
        try:
            while not self.stop.is_set():
                taken_at = time.monotonic()
                if not self.lead():
                    continue
                # Another follower may have moved the position on since this one last read it.
                self.pending = replace(self.pending, position=self.saved_position() or self.pending.position)
                if (start := self.gap_start()) is not None:
                    self.repair(start, taken_at)
                    continue  # the lease taken again, and the stream tried again
                stream = EventStream(settings.WIKIDATA_STREAM_URL, self.pending.position, self.since).start()
                try:
                    with Keeper(self.lease, taken_at, lost=stream.close):
                        events, ended = self.consume(stream)
                finally:
                    stream.close()
                # What this connection brought is sent, and the position saved, before the next one.
                self.flush()
                if self.stop.is_set():
                    break
                delay = RECONNECT_FIRST if events else min(delay * 2, RECONNECT_MOST)
                self.note_down(events)
                wait = max(delay, min(ended.retry_after, settings.WIKIDATA_RETRY_AFTER_MAX))
                logger.warning("The stream disconnected (%s); reconnecting in %.1f s.", ended.error, wait)
                self.stop.wait(wait)
        finally:
            self.lease.release()

    def note_down(self, events: int) -> None:
        """After a connection: whether the stream is down (it brought no event), for how long, and
        whether a repair is due (down longer than ``WIKIDATA_FOLLOW_REPAIR_AFTER``)."""
        if events:
            self.down_since = self.repaired_to = None
            return
        now = time.time()
        self.down_since = self.down_since or now
        self.repair_due = now - self.down_since > settings.WIKIDATA_FOLLOW_REPAIR_AFTER

    def gap_start(self) -> float | None:
        """When the changes the stream cannot give begin (Unix time), or None: nothing to repair.

        A position older than the stream keeps: from it, and the stream starts after the repair
        (``since``), not at it. The stream down for long: from where the last repair, or the stream,
        left off.

        Raises:
            PositionTooOld: the gap begins before the API's recent changes (30 days).
        """
        now = time.time()
        read_to = self.repaired_to or self.pending.position_time
        if read_to is not None and now - read_to > RECENT_CHANGES_KEEP:
            raise PositionTooOld(
                f"The saved position is {(now - read_to) / 86400:.0f} days old, older than the 30 days "
                "the API's recent changes keep: run refresh_wikidata (the stored entities) or a dump "
                "import (with --all), delete the saved position (the admin's Follow positions), and "
                "start follow_wikidata again."
            )
        if read_to is not None and self.repaired_to is None and now - read_to > STREAM_KEEPS:
            self.pending = replace(self.pending, position="")
            return read_to
        if self.repair_due:
            self.repair_due = False
            return read_to or self.down_since
        return None

    def repair(self, start: float, taken_at: float) -> None:
        """Send the changes made since ``start`` (Unix time), read from the API's recent changes,
        holding the lease (taken at ``taken_at``); the stream then starts where they end."""
        self.mode, end = REPAIR, time.time()
        logger.warning("Repairing a gap from the API's recent changes, since %s.", _iso(start))
        lost = threading.Event()
        with Keeper(self.lease, taken_at, lost=lost.set):
            try:
                for data in recent_changes(start, end):
                    self.pending.add(REPAIRED, parse_change(data), time.monotonic(), event_time(data))
                    if self.pending.held >= self.full(backlog=True):
                        self.flush()
                    if self.stop.is_set() or lost.is_set():
                        break
                else:
                    self.repaired_to = end
                    self.since = _iso(end - REPAIR_OVERLAP)
            except RecentChangesFailed as error:  # what was read is sent; the rest is tried again
                logger.error("Could not repair the gap: %s; trying again in %.0f s.", error, RECONNECT_MOST)
                self.stop.wait(RECONNECT_MOST)
            finally:
                self.flush()

    def lead(self) -> bool:
        """Take (or renew) the lease: True; else, as a standby, wait ``lease.poll`` s: False."""
        try:
            held = self.lease.take()
        except LeaseUnavailable as error:
            logger.warning("Could not take the follower's lease: %s", error)
            held = False
        if held:
            if self.mode == STANDBY:
                logger.info("Took the follower's lease over: reading the stream.")
            self.mode = STREAM
            return True
        if self.mode != STANDBY:
            logger.info("Standby: another follower (%s) holds the lease.", self.lease.holder() or "unknown")
        self.mode = STANDBY
        self.report()
        self.stop.wait(self.lease.poll)
        return False

    def consume(self, stream: EventStream) -> tuple[int, Disconnected]:
        """Batch the events of one connection until it ends or ``stop``; return how many, and why it ended."""
        seconds = settings.WIKIDATA_FOLLOW_BATCH_SECONDS
        events = 0
        while not self.stop.is_set():
            if stream.closed:  # by the lease's keeper: the lease is lost, or about to be
                return events, Disconnected("the follower's lease was lost")
            try:
                item = stream.items.get(timeout=self.pending.wait(time.monotonic(), seconds))
            except queue.Empty:
                item = None
            if isinstance(item, Disconnected):
                return events, item
            if item is not None:
                events += 1
                change, at = _read(item)
                self.pending.add(item, change, time.monotonic(), at)
            self.queued = stream.items.qsize()
            if self.pending.due(time.monotonic(), seconds, self.full()):
                self.flush()
            elif time.monotonic() >= self._next_confirm:
                self.confirm()
            self.report()
        return events, Disconnected("stopped")

    def full(self, backlog: bool = False) -> int:
        """How many ids make the pending batch full: 50 (one request), or behind the stream (events
        queued, or a repair) as many as the budget's requests in flight take at once, so that a
        backlog is fetched that many requests at a time, also in process."""
        if backlog or self.queued:
            return MAX_BATCH * int(settings.WIKIDATA_MAX_IN_FLIGHT)
        return MAX_BATCH

    def flush(self) -> None:
        """Remove the deleted entities, send the changes that need importing, then save the position.

        The position is saved only once its changes are sent: if sending fails, it is not, and
        they are read again. Sending is outside any transaction, so that in process the batches
        run on threads, as many requests at once as the budget allows; a crash before the position
        is saved sends them again, which changes nothing (only a newer revision is written).
        """
        pending = self.pending
        if pending.since is None:
            return
        with transaction.atomic():
            self.remove(pending.deleted)
        wanted = self.wanted(pending.changes, pending.merged_with)
        if wanted:
            revisions = {wikidata_id: pending.changes[wikidata_id] for wikidata_id in wanted}
            self.sent += WikidataImporter().import_bulk(wanted, batch_size=MAX_BATCH, at_least=revisions)
            self.unseen.add(revisions, pending.times, time.time())
        self.confirm()
        now = time.time()
        FollowPosition.objects.update_or_create(
            pk=POSITION_ROW, defaults={"last_event_id": pending.position, "status": self.status(now)}
        )
        self.pending = Pending(position=pending.position, position_time=pending.position_time)

    def confirm(self) -> None:
        """Take the lags of the changes sent whose rows now show them (stored here or by a worker)."""
        self._next_confirm = time.monotonic() + CONFIRM_SECONDS
        if not self.unseen:
            return
        rows = WikidataEntity.objects.filter(pk__in=self.unseen.ids()).values_list(
            "pk", "lastrevid", "fetched_at"
        )
        now = time.time()
        self.lags.add(
            now, self.unseen.seen(((id, revision, at.timestamp()) for id, revision, at in rows), now)
        )

    def status(self, now: float) -> dict[str, Any]:
        """What ``--status`` shows (see ``status.describe``), as of ``now`` (Unix time)."""
        return {
            "mode": self.mode,
            "holder": self.lease.token,
            "pending": self.pending.held,
            "queued": self.queued,
            "position_time": self.pending.position_time,
            "lag": self.lags.summary(now),
            "written_at": now,
        }

    def report(self) -> None:
        """Log the status once a minute."""
        if time.monotonic() < self._next_report:
            return
        self._next_report = time.monotonic() + REPORT_SECONDS
        now = time.time()
        logger.info("Follower: %s.", summary_line(self.status(now), now))

    def remove(self, deleted: set[str]) -> None:
        """Delete the stored entities deleted on Wikidata, recording each ``missing``."""
        gone = list(WikidataEntity.objects.filter(pk__in=deleted).values_list("pk", flat=True))
        if not gone:
            return
        WikidataEntity.objects.filter(pk__in=gone).delete()
        storage = Storage()
        for wikidata_id in gone:
            storage.record(wikidata_id, Status.MISSING, error=DELETED)
        logger.info("Deleted on Wikidata, removed here: %s", " ".join(sorted(gone)))

    def wanted(self, changes: Mapping[str, int], merged_with: Mapping[str, str]) -> list[str]:
        """The changed ids to import: followed, and not stored at that revision.

        Followed: stored (or any, when following all); restored (revision 0) after a deletion
        removed it; or the other side of a merge or redirect with a stored entity, so that a merge
        into an entity not stored yet brings the target at its merge revision (an answer older
        than that is asked for again), and a source merged into a stored one becomes a redirect.
        """
        sides = [*changes, *(merged_with.get(wikidata_id, "") for wikidata_id in changes)]
        stored = dict(WikidataEntity.objects.filter(pk__in=sides).values_list("pk", "lastrevid"))
        restored = [wikidata_id for wikidata_id, revision in changes.items() if revision == 0]
        removed = set(
            ImportOutcome.objects.filter(pk__in=restored, error=DELETED).values_list("pk", flat=True)
        )
        followed = stored.keys() | removed | {id for id in changes if merged_with.get(id) in stored}
        return [
            wikidata_id
            for wikidata_id, revision in changes.items()
            if (self.follow_all or wikidata_id in followed)
            and ((known := stored.get(wikidata_id)) is None or known < revision)
        ]


def _read_to(row: FollowPosition) -> float | None:
    """When the last event the saved position covers was made (Unix time), or None: none saved.

    A position saved before the status was (migration 0006): when it was saved, a little after.
    """
    position_time = row.status.get("position_time")
    if isinstance(position_time, int | float):
        return float(position_time)
    return row.updated_at.timestamp() if row.last_event_id else None


def _iso(moment: float) -> str:
    """A Unix time as the stream's ``since`` takes it: ISO 8601, UTC."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(event: Event) -> tuple[Change | None, float | None]:
    """The change an event records (None: not a JSON object, or not an entity change), and when."""
    try:
        data = json.loads(event.data)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    return parse_change(data), event_time(data)
