"""Reading the stream: server-sent events from one connection, on a thread of its own.

The stream (https://wikitech.wikimedia.org/wiki/Event_Platform/EventStreams_HTTP_Service) is
server-sent events from every Wikimedia wiki; its position is the event ``id`` the server sends,
given back as ``Last-Event-ID`` on the next connection.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import urllib3
from django.conf import settings

__all__ = ("Disconnected", "Event", "EventStream", "read_events")

logger = logging.getLogger(__name__)

# The stream sends several events a second; a connection silent this long is dead.
READ_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
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

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (by the follower, or by its lease's keeper on another thread)."""
        return self._closed.is_set()

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


def _seconds(retry_after: str | None) -> float:
    """A ``Retry-After`` header's seconds; 0 for none, or for a date (EventStreams sends seconds)."""
    try:
        return max(0.0, float(retry_after or 0))
    except ValueError:
        return 0.0
