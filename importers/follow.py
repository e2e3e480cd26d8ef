"""Following Wikidata: read EventStreams' recentchange stream, and send the changed entities as batch imports.

The stream (https://wikitech.wikimedia.org/wiki/Event_Platform/EventStreams_HTTP_Service) is
server-sent events from every Wikimedia wiki. A ``Follower`` keeps Wikidata's entity edits,
gathers their ids (the highest revision of each) and sends a batch through
``WikidataImporter.import_bulk`` when it holds 50 ids or its oldest change is
``WIKIDATA_FOLLOW_BATCH_SECONDS`` old. The stream position is saved in the same transaction as the
batch is sent, so a restart resumes (``Last-Event-ID``) after the last change sent, and loses none.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from django.conf import settings
from django.db import transaction

from .entity_ids import InvalidEntityId, normalize
from .importers import WikidataImporter
from .models import FollowPosition, ImportOutcome, Status, WikidataEntity
from .storage import Storage
from .wikidata_api import MAX_BATCH

__all__ = (
    "Change",
    "Disconnected",
    "Event",
    "EventStream",
    "Follower",
    "Pending",
    "parse_change",
    "read_events",
)

logger = logging.getLogger(__name__)

WIKI = "wikidatawiki"
# Wikidata's entity namespaces and the title prefix of each: items, Property:, Lexeme:.
PREFIXES = {0: "", 120: "Property:", 146: "Lexeme:"}
LETTERS = {0: "Q", 120: "P", 146: "L"}
# Recentchange types that make a new revision; "log" (deletions, ...) and others carry none.
REVISION_TYPES = ("edit", "new")
# The stream sends several events a second; a connection silent this long is dead.
READ_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
# Reconnecting waits this long, doubling after each connection that brought no event, up to the most.
RECONNECT_FIRST = 0.5
RECONNECT_MOST = 60.0
# The primary key of the one row of FollowPosition.
POSITION_ROW = 1
# The outcome's error of an entity removed because its page was deleted on Wikidata.
DELETED = "deleted on Wikidata (a deletion on the change feed)"
# The longest event accepted; recentchange events are a few KB.
MAX_EVENT_BYTES = 1 << 20
# Events read ahead of the batching: the reader waits beyond this, so memory stays bounded.
MAX_QUEUED = 10_000


@dataclass(frozen=True)
class Event:
    """One server-sent event: its ``id`` (None when the event set none), ``event`` type and ``data``."""

    id: str | None
    event: str
    data: str


@dataclass(frozen=True)
class Change:
    """A new revision of a Wikidata entity, or its deletion (``deleted``) or restore (revision 0)."""

    wikidata_id: str
    revision: int
    deleted: bool = False


@dataclass(frozen=True)
class Disconnected:
    """The stream ended or failed; ``error`` says why, for the log; ``retry_after``: the seconds
    the stream asked to wait before the next connection (a 429's or 503's ``Retry-After``)."""

    error: str
    retry_after: float = 0.0


class Refused(ConnectionError):
    """The stream answered a connection with an error status."""

    def __init__(self, status: int, retry_after: float) -> None:
        super().__init__(f"the stream answered HTTP {status}")
        self.retry_after = retry_after


def parse_change(data: Mapping[str, Any]) -> Change | None:
    """Return the entity change a recentchange event records, or None for any other event.

    Kept: Wikidata (``wiki == "wikidatawiki"``) edits and creations in the item, property and
    lexeme namespaces, and the log events of a page's deletion and restore there (``log_type``
    ``delete``, ``log_action`` ``delete`` or ``restore``). Dropped: canary events
    (``meta.domain == "canary"``, Wikimedia's monitoring), other wikis, other namespaces, other
    log events, and anything malformed.
    """
    meta = data.get("meta")
    if not isinstance(meta, dict) or meta.get("domain") == "canary" or data.get("wiki") != WIKI:
        return None
    if data.get("type") == "log" and data.get("log_type") == "delete":
        wikidata_id = entity_id(data.get("namespace"), data.get("title"))
        action = data.get("log_action")
        if wikidata_id is None or action not in ("delete", "restore"):
            return None
        return Change(wikidata_id, 0, deleted=action == "delete")
    if data.get("type") not in REVISION_TYPES:
        return None
    wikidata_id = entity_id(data.get("namespace"), data.get("title"))
    revision = data.get("revision")
    new = revision.get("new") if isinstance(revision, dict) else None
    if wikidata_id is None or type(new) is not int:
        return None
    return Change(wikidata_id, new)


def entity_id(namespace: Any, title: Any) -> str | None:
    """Return the entity id of a page title (``Q42``, ``Property:P31``, ``Lexeme:L7``), or None."""
    if type(namespace) is not int or namespace not in PREFIXES or not isinstance(title, str):
        return None
    prefix = PREFIXES[namespace]
    if not title.startswith(prefix) or title[len(prefix) : len(prefix) + 1] != LETTERS[namespace]:
        return None
    try:
        return normalize(title[len(prefix) :])
    except InvalidEntityId:
        return None


def read_events(chunks: Iterator[bytes]) -> Iterator[Event]:
    """Yield the events of a server-sent event stream, given its bytes in chunks of any size.

    Per https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation:
    ``:`` starts a comment, a blank line ends an event, ``data`` lines are joined with newlines.
    Lines end with LF or CRLF (what EventStreams sends; a lone CR is not taken as a line end).
    An event longer than ``MAX_EVENT_BYTES`` is logged and yielded without its data (so that its
    id still moves the position on), never held whole: one bad event cannot stop the follower.
    """
    buffer = b""
    event_id: str | None = None
    data: list[str] = []
    kind, size = "", 0
    oversized = tail = False  # dropping an event's data; dropping the rest of an overlong line
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            if tail:
                tail = False
                continue
            line = raw.removesuffix(b"\r").decode("utf-8", errors="replace")
            if not line:
                if oversized:
                    logger.warning("An event over %d bytes was skipped (id %s).", MAX_EVENT_BYTES, event_id)
                if data or oversized:
                    yield Event(event_id, kind or "message", "\n".join(data))
                kind, data, size, oversized = "", [], 0, False
                continue
            size += len(raw)
            if size > MAX_EVENT_BYTES:
                data, oversized = [], True
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "data" and not oversized:
                data.append(value)
            elif name == "id" and "\0" not in value:
                event_id = value
        if len(buffer) > MAX_EVENT_BYTES:
            buffer, data, oversized, tail = b"", [], True, True


class EventStream:
    """One connection to the stream, read on a thread of its own into ``items``.

    A small reader on urllib3 (already a dependency, behind the Wikidata client) rather than an SSE
    package: the format is a few lines to read, and the reconnecting, backoff and position that an
    SSE client would add are the follower's own (they must go with the database transaction).
    """

    def __init__(self, url: str, last_event_id: str, since: str | None = None) -> None:
        self.items: queue.Queue[Event | Disconnected] = queue.Queue(maxsize=MAX_QUEUED)
        self._url, self._last_event_id, self._since = url, last_event_id, since
        self._response: urllib3.BaseHTTPResponse | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="follow-wikidata-stream", daemon=True)

    def start(self) -> EventStream:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop reading: the connection is shut, and the thread ends."""
        self._closed.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # already gone: nothing to shut
                response.shutdown()
        self._thread.join(timeout=5)

    def _read(self) -> None:
        try:
            for event in read_events(self._chunks()):
                self._put(event)
            self._put(Disconnected("the stream ended"))
        except Exception as error:  # any failure is a reconnection, logged by the follower
            retry_after = error.retry_after if isinstance(error, Refused) else 0.0
            self._put(Disconnected(f"{type(error).__name__}: {error}", retry_after))

    def _put(self, item: Event | Disconnected) -> None:
        while not self._closed.is_set():
            try:
                self.items.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _chunks(self) -> Iterator[bytes]:
        headers = {"User-Agent": settings.WIKIDATA_USER_AGENT, "Accept": "text/event-stream"}
        if self._last_event_id:
            headers["Last-Event-ID"] = self._last_event_id
        fields = {"since": self._since} if self._since and not self._last_event_id else None
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT)
        http = urllib3.PoolManager(retries=False, timeout=timeout)
        response = http.request(
            "GET", self._url, fields=fields, headers=headers, preload_content=False, decode_content=True
        )
        self._response = response
        try:
            if response.status != 200:
                raise Refused(response.status, _seconds(response.headers.get("Retry-After")))
            while not self._closed.is_set() and (chunk := response.read1(65536)):
                yield chunk
        finally:
            response.release_conn()
            http.clear()


@dataclass
class Pending:
    """The changes read and not sent yet: each id with its highest revision (0: restored, import
    whatever is there), the ids deleted, and the position after them."""

    changes: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    position: str = ""
    # When the first event not saved yet arrived (monotonic); None: nothing to save.
    since: float | None = None

    def add(self, event: Event, change: Change | None, now: float) -> None:
        """Take an event: its position, and its change if any (revisions compared, never arrival order)."""
        if event.id is not None:
            self.position = event.id
        if self.since is None:
            self.since = now
        if change is None:
            return
        if change.deleted:  # the page is gone: its revisions with it, until a restore
            self.deleted.add(change.wikidata_id)
            self.changes.pop(change.wikidata_id, None)
            return
        self.deleted.discard(change.wikidata_id)
        known = self.changes.get(change.wikidata_id)
        if known is None or change.revision > known:
            self.changes[change.wikidata_id] = change.revision

    def due(self, now: float, seconds: float) -> bool:
        """Whether to send now: a full batch, or an unsaved event ``seconds`` old."""
        held = len(self.changes) + len(self.deleted)
        return held >= MAX_BATCH or (self.since is not None and now - self.since >= seconds)

    def wait(self, now: float, seconds: float) -> float:
        """How long to wait for the next event before it is time to send (1 s at most)."""
        return 1.0 if self.since is None else max(0.0, min(1.0, self.since + seconds - now))


class Follower:
    """Follows the stream until ``stop`` is set: reads, batches, sends, saves its position, reconnects.

    Only the stored entities (``WikidataEntity``) are followed, unless ``follow_all``.
    """

    def __init__(self, follow_all: bool = False, since: str | None = None) -> None:
        self.follow_all = follow_all
        self.since = since
        self.stop = threading.Event()
        self.pending = Pending(position=self.saved_position())
        self.sent = 0

    @staticmethod
    def saved_position() -> str:
        """The position saved by the last batch sent; empty: none yet."""
        row = FollowPosition.objects.filter(pk=POSITION_ROW).first()
        return row.last_event_id if row is not None else ""

    def halt(self) -> None:
        """Ask ``run`` to stop (from a signal handler or another thread): it saves its position first."""
        self.stop.set()

    def run(self) -> None:
        """Follow until ``halt()``; each connection resumes after the saved position, with backoff."""
        delay = RECONNECT_FIRST
        while not self.stop.is_set():
            stream = EventStream(settings.WIKIDATA_STREAM_URL, self.pending.position, self.since).start()
            try:
                events, ended = self.consume(stream)
            finally:
                stream.close()
            # What this connection brought is sent, and the position saved, before the next one.
            self.flush()
            if self.stop.is_set():
                break
            delay = RECONNECT_FIRST if events else min(delay * 2, RECONNECT_MOST)
            wait = max(delay, min(ended.retry_after, settings.WIKIDATA_RETRY_AFTER_MAX))
            logger.warning("The stream disconnected (%s); reconnecting in %.1f s.", ended.error, wait)
            self.stop.wait(wait)

    def consume(self, stream: EventStream) -> tuple[int, Disconnected]:
        """Batch the events of one connection until it ends or ``stop``; return how many, and why it ended."""
        seconds = settings.WIKIDATA_FOLLOW_BATCH_SECONDS
        events = 0
        while not self.stop.is_set():
            try:
                item = stream.items.get(timeout=self.pending.wait(time.monotonic(), seconds))
            except queue.Empty:
                item = None
            if isinstance(item, Disconnected):
                return events, item
            if item is not None:
                events += 1
                self.pending.add(item, _change(item), time.monotonic())
            if self.pending.due(time.monotonic(), seconds):
                self.flush()
        return events, Disconnected("stopped")

    def flush(self) -> None:
        """Send the pending changes that need importing, and save the position, in one transaction.

        If sending fails, the position is not saved and the changes stay pending.
        """
        pending = self.pending
        if pending.since is None:
            return
        with transaction.atomic():
            self.remove(pending.deleted)
            wanted = self.wanted(pending.changes)
            if wanted:
                revisions = {wikidata_id: pending.changes[wikidata_id] for wikidata_id in wanted}
                self.sent += WikidataImporter().import_bulk(wanted, batch_size=MAX_BATCH, at_least=revisions)
            FollowPosition.objects.update_or_create(
                pk=POSITION_ROW, defaults={"last_event_id": pending.position}
            )
        self.pending = Pending(position=pending.position)

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

    def wanted(self, changes: Mapping[str, int]) -> list[str]:
        """The changed ids to import: stored (or any, when following all) and not stored at that revision.

        A restored one (revision 0) is imported if it was stored until its deletion removed it.
        """
        stored = dict(WikidataEntity.objects.filter(pk__in=list(changes)).values_list("pk", "lastrevid"))
        restored = [wikidata_id for wikidata_id, revision in changes.items() if revision == 0]
        removed = set(
            ImportOutcome.objects.filter(pk__in=restored, error=DELETED).values_list("pk", flat=True)
        )
        return [
            wikidata_id
            for wikidata_id, revision in changes.items()
            if (self.follow_all or wikidata_id in stored or wikidata_id in removed)
            and ((known := stored.get(wikidata_id)) is None or known < revision)
        ]


def _seconds(retry_after: str | None) -> float:
    """A ``Retry-After`` header's seconds; 0 for none, or for a date (EventStreams sends seconds)."""
    try:
        return max(0.0, float(retry_after or 0))
    except ValueError:
        return 0.0


def _change(event: Event) -> Change | None:
    """The change an event records, or None (not a JSON object, or not an entity change)."""
    try:
        data = json.loads(event.data)
    except ValueError:
        return None
    return parse_change(data) if isinstance(data, dict) else None
