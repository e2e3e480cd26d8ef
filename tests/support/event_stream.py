"""A stand-in Wikimedia EventStreams ``recentchange`` stream (server-sent events) on loopback HTTP.

The framing is stream.wikimedia.org's (https://wikitech.wikimedia.org/wiki/Event_Platform/EventStreams_HTTP_Service):
a ``:ok`` comment line first, then per event ``event: message``, ``id: [{"topic": ..., "partition":
0, "offset": N}]``, ``data: {json}`` and a blank line. A ``Last-Event-ID`` request header (that JSON
array, given back) resumes after its offset. Events follow the recentchange schema
(https://schema.wikimedia.org/#!/primary/jsonschema/mediawiki/recentchange).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import select
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

__all__ = ["TOPIC", "StandInEventStream", "StreamRequest"]

TOPIC = "eqiad.mediawiki.recentchange"
PATH = "/v2/stream/recentchange"
# Namespaces of Wikidata's entity pages: items (main), Property:, Lexeme:.
NAMESPACES = {"Q": 0, "P": 120, "L": 146}
PREFIXES = {0: "", 120: "Property:", 146: "Lexeme:"}


@dataclass(frozen=True)
class StreamRequest:
    """One connection to the stream: its path (query included), headers (Title-Case names), the
    offset it resumed from, and when it came (monotonic)."""

    path: str
    headers: dict[str, str]
    start: int
    time: float


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, stream: StandInEventStream) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stream = stream

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-stream is what clients do


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.stream._serve(self)


class StandInEventStream:
    """Serves the events a test adds on ``url``, waiting for more once a client has them all.

    Thread-safe: tests add events while clients read. ``drop_after(n)`` makes the next connection
    close after ``n`` events, as a dropped connection would.
    """

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[StreamRequest] = []
        self._events: list[bytes] = []
        self._drops: list[tuple[int, str]] = []
        self._refusals: list[tuple[int, int | None]] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        # Connections open now, and the most ever open at once (Wikimedia allows 2 per client address).
        self.open = 0
        self.most_open = 0

    def __enter__(self) -> StandInEventStream:
        self._server = _Server(self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
            for connection in list(self._sockets):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)

    # Content

    def add(self, event: dict[str, Any]) -> int:
        """Append a recentchange event to the stream; return its offset."""
        with self._changed:
            offset = len(self._events)
            position = json.dumps([{"topic": TOPIC, "partition": 0, "offset": offset}])
            self._events.append(f"event: message\nid: {position}\ndata: {json.dumps(event)}\n\n".encode())
            self._changed.notify_all()
            return offset

    def edit(
        self,
        entity_id: str,
        revision: int,
        wiki: str = "wikidatawiki",
        kind: str = "edit",
        domain: str = "",
        comment: str = "",
        dt: str = "",
    ) -> int:
        """Append an edit (``kind="new"``: a creation) of ``entity_id`` on ``wiki``; return its offset.

        ``comment`` is the edit summary, Wikibase's autocomment first (``/* wbmergeitems-to:0||Q2 */``);
        ``dt`` when it was made (``meta.dt``, e.g. "2020-02-02T13:21:46Z"), by default now.
        """
        namespace = NAMESPACES[entity_id[0]]
        domain = domain or ("www.wikidata.org" if wiki == "wikidatawiki" else f"{wiki}.example.org")
        return self.add(
            recentchange(
                wiki, domain, namespace, PREFIXES[namespace] + entity_id, revision, kind, comment, dt
            )
        )

    def merge(self, source: str, target: str, revision: int) -> int:
        """Append the three edits of merging item (or lexeme) ``source`` into ``target``; return the
        last offset.

        As Wikidata writes them (a real merge, recentchange offsets 2146136449 to 2146136453):
        the source emptied (``wbmergeitems-to``), the target given its content
        (``wbmergeitems-from``), then the source made a redirect (``wbcreateredirect``), at
        ``revision``, ``revision + 1`` and ``revision + 2``. Lexemes (``L…``) as WikibaseLexeme's
        Special:MergeLexemes writes them, with no user summary: ``wblmergelexemes-to`` and
        ``-from`` (src/Interactors/MergeLexemes/MergeLexemesInteractor.php), then the same
        ``wbcreateredirect`` (src/DataAccess/Store/MediaWikiLexemeRedirector.php).
        """
        name, summary = (
            ("wblmergelexemes", "") if source[0] == "L" else ("wbmergeitems", " merge.js duplicate entry")
        )
        self.edit(source, revision, comment=f"/* {name}-to:0||{target} */{summary}")
        self.edit(target, revision + 1, comment=f"/* {name}-from:0||{source} */{summary}")
        return self.edit(source, revision + 2, comment=f"/* wbcreateredirect:0||{source}|{target} */")

    def canary(self, entity_id: str, revision: int) -> int:
        """Append a canary event (Wikimedia's monitoring, ``meta.domain == "canary"``) for Wikidata."""
        return self.edit(entity_id, revision, domain="canary")

    def log(self, entity_id: str, log_type: str, log_action: str | None = None) -> int:
        """Append a log event of ``entity_id``; it carries no revision.

        As recentchange writes them (the mediawiki/recentchange schema): a page's deletion is
        ``log_type`` ``delete`` with ``log_action`` ``delete``, its restore the same type with
        ``restore``; ``log_action`` defaults to ``log_type``.
        """
        namespace = NAMESPACES[entity_id[0]]
        return self.add(
            {
                "meta": {"domain": "www.wikidata.org", "dt": "2026-12-05T02:00:00Z"},
                "type": "log",
                "log_type": log_type,
                "log_action": log_action or log_type,
                "namespace": namespace,
                "title": PREFIXES[namespace] + entity_id,
                "wiki": "wikidatawiki",
            }
        )

    def drop_after(self, events: int, how: Literal["close", "mid_event", "stall"] = "close") -> None:
        """After ``events`` events, the next connection closes (``mid_event``: after half the next
        one), or ``stall``s: stays open and sends nothing more."""
        with self._changed:
            self._drops.append((events, how))

    def refuse(self, status: int = 429, times: int = 1, retry_after: int | None = None) -> None:
        """Answer the next ``times`` connections with ``status`` (EventStreams sends 429 past its
        connection limit, 5xx when it is in trouble) and a JSON error body, as it does."""
        with self._changed:
            self._refusals += [(status, retry_after)] * times

    @property
    def offset(self) -> int:
        """The offset the next event will have."""
        with self._changed:
            return len(self._events)

    # Serving (runs in handler threads)

    def _serve(self, handler: _Handler) -> None:
        headers = {name.title(): value for name, value in handler.headers.items()}
        start = _resume_from(headers.get("Last-Event-Id", ""))
        with self._changed:
            self.requests.append(StreamRequest(handler.path, headers, start, time.monotonic()))
            refusal = self._refusals.pop(0) if self._refusals else None
            drop = self._drops.pop(0) if self._drops and refusal is None else None
            self._sockets.add(handler.connection)
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        try:
            if refusal is not None:
                status, retry_after = refusal
                body = json.dumps({"status": status, "type": "error", "title": "Too Many Requests"}).encode()
                handler.send_response(status)
                if retry_after is not None:
                    handler.send_header("Retry-After", str(retry_after))
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)
                return
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
            handler.send_header("Cache-Control", "no-cache")
            handler.end_headers()
            handler.wfile.write(b":ok\n\n")
            handler.wfile.flush()
            self._send_events(handler, start, drop)
        except OSError:
            pass  # the client went away
        finally:
            with self._changed:
                self._sockets.discard(handler.connection)
                self.open -= 1

    def _send_events(self, handler: _Handler, start: int, drop: tuple[int, str] | None) -> None:
        sent, index = 0, start
        while not self._stopping.is_set():
            with self._changed:
                if index >= len(self._events):
                    self._changed.wait(0.2)
                ready = self._events[index:]
            if _hung_up(handler.connection):  # counted open until then: find out without a write
                return
            for event in ready:
                if drop is not None and sent >= drop[0]:
                    if drop[1] == "stall":
                        self._stopping.wait()
                        return
                    if drop[1] == "mid_event":
                        handler.wfile.write(event[: len(event) // 2])
                        handler.wfile.flush()
                    handler.connection.shutdown(socket.SHUT_RDWR)
                    return
                handler.wfile.write(event)
                handler.wfile.flush()
                sent += 1
                index += 1


def recentchange(
    wiki: str,
    domain: str,
    namespace: int,
    title: str,
    revision: int,
    kind: str = "edit",
    comment: str = "",
    dt: str = "",
) -> dict[str, Any]:
    """A recentchange event of an edit (``kind="new"``: a creation), with every field of the schema
    (https://schema.wikimedia.org/repositories/primary/jsonschema/mediawiki/recentchange/1.0.0)
    that a real edit's event carries, so that events are as long as real ones (about 1 KB)."""
    dt = dt or _now()
    server = f"https://{domain}"
    url_title = title.replace(" ", "_")
    rcid = 2_200_000_000 + revision % 1_000_000_000
    return {
        "$schema": "/mediawiki/recentchange/1.0.0",
        "meta": {
            "uri": f"{server}/wiki/{url_title}",
            "request_id": f"b7c1d2e3-{revision % 10_000:04d}-4a5b-8c9d-0e1f2a3b4c5d",
            "id": f"5f0e7a1c-{revision % 10_000:04d}-4b2d-9e8f-7a6b5c4d3e2f",
            "dt": dt,
            "domain": domain,
            "stream": "mediawiki.recentchange",
            "topic": TOPIC,
            "partition": 0,
        },
        "id": rcid,
        "type": kind,
        "namespace": namespace,
        "title": title,
        "title_url": f"{server}/wiki/{url_title}",
        "comment": comment,
        "timestamp": int(datetime.fromisoformat(dt).timestamp()),
        "user": "ExampleBot",
        "bot": False,
        "notify_url": f"{server}/w/index.php?diff={revision}&oldid={revision - 1}&rcid={rcid}",
        "minor": False,
        "patrolled": True,
        "length": {"old": 18_211, "new": 18_402},
        "revision": {"old": revision - 1, "new": revision},
        "server_url": server,
        "server_name": domain,
        "server_script_path": "/w",
        "wiki": wiki,
        "parsedcomment": comment,
    }


def _now() -> str:
    """The time now as ``meta.dt`` is written (ISO 8601, UTC, "Z")."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hung_up(connection: socket.socket) -> bool:
    """Whether the client closed its end (it sends nothing after its request, so readable is closed)."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _resume_from(last_event_id: str) -> int:
    """The offset after the one ``Last-Event-ID`` names for this topic; 0 without one."""
    if not last_event_id:
        return 0
    for assignment in json.loads(last_event_id):
        if assignment.get("topic") == TOPIC and "offset" in assignment:
            return int(assignment["offset"]) + 1
    return 0
