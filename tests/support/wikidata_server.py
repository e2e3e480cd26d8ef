"""A stand-in Wikidata (Special:EntityData and wbgetentities) on loopback HTTP, with injectable faults."""

from __future__ import annotations

import contextlib
import html
import http.server
import json
import re
import socket
import struct
import threading
import time
import traceback
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal

__all__ = ["ENTITY_ID", "USER_AGENT_POLICY_BODY", "Fault", "Request", "StandInWikidata"]

# What the stand-in accepts as an id; real Wikibase also accepts lower case and lexeme forms.
ENTITY_ID = re.compile(r"^[QPL][1-9][0-9]*$")

ENTITY_DATA_PREFIX = "/wiki/Special:EntityData/"
API_PATH = "/w/api.php"
# wbgetentities' limit on "ids" for clients without the apihighlimits right (bots get 500).
MAX_IDS = 50

# The body Wikimedia's edge sends with a 403 when a client's User-Agent breaks the policy.
USER_AGENT_POLICY_BODY = (
    b"Please set a user-agent and respect our robot policy https://w.wiki/4wJS. See also T400119.\n"
)
_NOT_JSON_BODY = (
    b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Wikimedia Error</title>'
    b"</head><body><h1>Error</h1><p>Our servers are currently under maintenance or experiencing a "
    b"technical problem. Please try again in a few minutes.</p></body></html>\n"
)
_API_USAGE = "See https://www.wikidata.org/w/api.php for API usage."
_JSON = "application/json; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"


def _invalid_id_page(entity_id: str) -> bytes:
    # Real Special:EntityData answers a malformed id with an HTML page saying "Invalid ID";
    # the wikidata package looks for exactly those bytes in a 400 body.
    return f"<!DOCTYPE html><html><body><p>Invalid ID: {html.escape(entity_id)}</p></body></html>\n".encode()


def _default_body(code: int) -> tuple[bytes, str]:
    if code == HTTPStatus.FORBIDDEN:
        return USER_AGENT_POLICY_BODY, _TEXT
    if code == HTTPStatus.BAD_REQUEST:
        return _invalid_id_page("?"), _HTML
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    return f"{code} {phrase}\n".encode(), _TEXT


@dataclass(frozen=True)
class Request:
    """One request the stand-in received.

    ``path`` is the raw request target, query string included; ``entity_ids`` are the ids it
    asked for, as asked (malformed ones too); header names are normalised to Title-Case
    (``User-Agent``), since urllib sends ``User-agent``.
    """

    path: str
    entity_ids: tuple[str, ...]
    headers: dict[str, str]
    time: float


@dataclass(frozen=True)
class Answered:
    """An answer the stand-in finished sending: to which request, its status, and when (monotonic)."""

    request: Request
    status: int
    time: float


@dataclass(frozen=True)
class Fault:
    """What to do instead of the normal answer; build one with the classmethods below.

    - ``Fault.status(code, body=None, headers=None)``: answer ``code`` with ``body`` (default: a
      body like Wikimedia's for that code, e.g. the User-Agent policy text for 403, "Invalid ID"
      for 400) and extra ``headers`` (e.g. ``{"Retry-After": "2"}`` with 429).
    - ``Fault.not_json()``: 200 with an HTML error page.
    - ``Fault.wrong_shape(body)``: 200 with ``json.dumps(body)``.
    - ``Fault.maxlag(lag=2.0)``: wbgetentities' maxlag error (HTTP 200, ``Retry-After: 5``).
    - ``Fault.reset()``: close the connection (TCP RST) without answering.
    - ``Fault.hang(seconds)``: wait, then answer normally (cut short, unanswered, by ``stop()``).
    - ``Fault.drip(body, every, headers_too=False)``: answer 200 with ``body`` one byte every ``every``
      seconds (the status line and headers too, with ``headers_too``), without a Content-Length: the
      body ends when the connection closes, as HTTP/1.0 servers do.
    """

    kind: Literal["respond", "reset", "hang", "drip"]
    code: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    headers_too: bool = False

    @classmethod
    def status(
        cls, code: int, body: bytes | str | None = None, headers: Mapping[str, str] | None = None
    ) -> Fault:
        """Answer with HTTP ``code``; Content-Type is text/plain unless ``headers`` set it."""
        default_body, content_type = _default_body(code)
        if body is None:
            body = default_body
        elif isinstance(body, str):
            body = body.encode()
        headers = dict(headers or {})
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = content_type
        return cls("respond", code, body, tuple(headers.items()))

    @classmethod
    def not_json(cls, body: bytes = _NOT_JSON_BODY, content_type: str = _HTML) -> Fault:
        """Answer 200 with a body that is not JSON (by default an HTML error page)."""
        return cls("respond", 200, body, (("Content-Type", content_type),))

    @classmethod
    def wrong_shape(cls, body: Any) -> Fault:
        """Answer 200 with valid JSON of the caller's choosing, e.g. ``{"foo": 1}`` or ``[]``."""
        return cls("respond", 200, json.dumps(body).encode(), (("Content-Type", _JSON),))

    @classmethod
    def maxlag(cls, lag: float = 2.0) -> Fault:
        """Answer like MediaWiki when replication lag exceeds the client's ``maxlag``."""
        error = {
            "error": {
                "code": "maxlag",
                "info": f"Waiting for all: {lag:g} seconds lagged.",
                "host": "all",
                "lag": lag,
                "type": "db",
                "*": _API_USAGE,
            },
            "servedby": "stand-in",
        }
        headers = (
            ("Content-Type", _JSON),
            ("MediaWiki-API-Error", "maxlag"),
            # MediaWiki sends max(lag, 5) seconds.
            ("Retry-After", str(max(int(lag), 5))),
            ("X-Database-Lag", str(int(lag))),
        )
        return cls("respond", 200, json.dumps(error).encode(), headers)

    @classmethod
    def reset(cls) -> Fault:
        """Read the request, then drop the connection: the client sees a connection error."""
        return cls("reset")

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before answering normally, to make clients time out."""
        return cls("hang", seconds=seconds)

    @classmethod
    def drip(
        cls,
        body: bytes,
        every: float,
        headers: Mapping[str, str] | None = None,
        headers_too: bool = False,
    ) -> Fault:
        """Answer 200 with ``body``, a byte at a time, ``every`` seconds apart (0: all at once).

        No Content-Length is sent and the connection is closed after the last byte, so the client
        cannot tell a complete body from one cut short. Every single read is quick: only a
        deadline on the whole answer stops a client from waiting ``len(body) * every`` seconds.
        """
        all_headers = {"Content-Type": _JSON, **(headers or {})}
        return cls("drip", 200, body, tuple(all_headers.items()), every, headers_too)


@dataclass
class _Pending:
    entity_id: str | None
    fault: Fault
    remaining: int


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # The stock server_close() joins every handler thread, so one idle keep-alive connection
    # would block it forever; StandInWikidata.stop() closes connections and waits itself.
    block_on_close = False

    def __init__(self, stand_in: StandInWikidata) -> None:
        self.stand_in = stand_in
        self.connections: set[socket.socket] = set()
        self.connections_changed = threading.Condition()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_changed:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self.connections_changed:
            self.connections.discard(request)
            self.connections_changed.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Only connection errors get here (the handler answers its own bugs with a 500), and
        # clients hanging up is what fault tests do: nothing to report.
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as Wikimedia does; every answer has a Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body would
    # wait for the client's delayed ACK (about 40 ms a request on a kept-alive connection).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    logged: Request | None = None  # set by the stand-in as it logs the request
    arrived = 0.0  # when its request line was read (monotonic)
    counted = False  # whether the stand-in counts the request as in flight

    def parse_request(self) -> bool:
        # Called as soon as the request line is read: the request's arrival, for its latency.
        self.arrived = time.monotonic()
        return super().parse_request()

    def do_GET(self) -> None:
        stand_in = self.server.stand_in
        try:
            with stand_in._in_flight(self):
                stand_in._handle(self)
        except OSError:
            # The client went away (timed out, or stop() closed the socket).
            self.close_connection = True
        except Exception:
            # A bug in the stand-in: show it to the test that hit it rather than on stderr.
            self.send(500, traceback.format_exc().encode(), {"Content-Type": _TEXT})

    def send(self, code: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(code)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.server.stand_in._answering(self)
        self.end_headers()
        self.wfile.write(body)
        if self.logged is not None:
            self.server.stand_in._answered(self.logged, code)

    def drip(self, fault: Fault, stopping: threading.Event) -> None:
        """Send ``fault``'s answer close-delimited, a byte every ``fault.seconds`` (see ``Fault.drip``)."""
        self.server.stand_in._answering(self)
        self.close_connection = True
        lines = [f"HTTP/1.1 {fault.code} {HTTPStatus(fault.code).phrase}"]
        lines += [f"{name}: {value}" for name, value in fault.headers]
        lines += ["Connection: close", "", ""]
        head = "\r\n".join(lines).encode("latin-1")
        if not fault.seconds:
            self.wfile.write(head)
            self.wfile.write(fault.body)  # not joined: a test may measure the client's memory
            return
        if not fault.headers_too:
            self.wfile.write(head)
            head = b""
        data = head + fault.body
        for offset in range(len(data)):
            if stopping.wait(fault.seconds):
                return
            self.wfile.write(data[offset : offset + 1])

    def drop(self) -> None:
        """Close the connection with a TCP reset, sending nothing."""
        self.close_connection = True
        # Linger 0 makes close() send RST; rfile holds a reference that would delay the close.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()


class StandInWikidata:
    """Serves entity documents the test adds, like Wikidata does, on ``base_url`` once started.

    ``GET /wiki/Special:EntityData/{ID}.json`` and ``GET /w/api.php?action=wbgetentities&ids=...``
    are answered; everything else is a 404. Thread-safe: tests may change entities, faults and
    ``latency`` while requests are in flight.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self.latency = 0.0
        self.requests: list[Request] = []
        self.answers: list[Answered] = []
        # Requests received and not answered yet (the answer not begun), and the most there were at
        # once since the last reset or clear_log(): what a client's request budget bounds.
        self.in_flight = 0
        self.most_in_flight = 0
        # Serialised once at add time: served byte-for-byte, and later edits by the caller
        # of the mapping they passed do not leak in.
        self._entities: dict[str, str] = {}
        self._redirects: dict[str, str] = {}
        self._recent: list[dict[str, Any]] = []
        self._faults: list[_Pending] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Life cycle

    def start(self) -> StandInWikidata:
        if self._server is not None:
            raise RuntimeError("the stand-in Wikidata is already running")
        self._stopping.clear()
        self._server = _Server(self)
        port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}/"
        # A short poll interval keeps stop() fast; shutdown() waits for the loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"stand-in-wikidata-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # wakes handlers sleeping in latency or hang
        server.shutdown()
        with server.connections_changed:
            for connection in list(server.connections):
                # Unblocks handlers waiting on idle keep-alive connections.
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            server.connections_changed.wait_for(lambda: not server.connections, timeout=5)
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> StandInWikidata:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Content

    def add_entity(self, document: Mapping[str, Any]) -> None:
        """Serve ``document`` (a bare entity, as in a dump) under ``document["id"]``."""
        entity_id = document.get("id")
        if not isinstance(entity_id, str) or not ENTITY_ID.match(entity_id):
            raise ValueError(f"an entity document needs a valid 'id', got {entity_id!r}")
        serialised = json.dumps(document)
        with self._lock:
            self._entities[entity_id] = serialised
            self._redirects.pop(entity_id, None)

    def add_redirect(self, from_id: str, to_id: str) -> None:
        """Make ``from_id`` a merged item pointing at ``to_id``; replaces any entity ``from_id``."""
        for entity_id in (from_id, to_id):
            if not ENTITY_ID.match(entity_id):
                raise ValueError(f"not an entity id: {entity_id!r}")
        if from_id == to_id:
            raise ValueError(f"{from_id} cannot redirect to itself")
        with self._lock:
            self._redirects[from_id] = to_id
            self._entities.pop(from_id, None)

    def add_recent_change(
        self, entity_id: str, revision: int, timestamp: str, kind: str = "edit", log_action: str = ""
    ) -> None:
        """Keep a change for ``list=recentchanges``, as the API lists it with
        ``rcprop=title|ids|timestamp|loginfo`` and ``formatversion=2``
        (https://www.mediawiki.org/wiki/API:RecentChanges): ``kind`` ``edit``, ``new`` or ``log``
        (with ``log_action`` of a ``delete`` log entry); ``timestamp`` like "2026-11-27T02:00:00Z"."""
        namespace = {"Q": 0, "P": 120, "L": 146}[entity_id[0]]
        title = {0: "", 120: "Property:", 146: "Lexeme:"}[namespace] + entity_id
        with self._lock:
            rcid = len(self._recent) + 1
            change: dict[str, Any] = {"type": kind, "ns": namespace, "title": title, "pageid": 1000 + rcid,
                                      "revid": revision, "old_revid": max(revision - 1, 0), "rcid": rcid,
                                      "timestamp": timestamp}  # fmt: skip
            if kind == "log":
                change |= {"revid": 0, "old_revid": 0, "logid": change["rcid"], "logtype": "delete",
                           "logaction": log_action, "logparams": {}}  # fmt: skip
            self._recent.append(change)

    def remove(self, entity_id: str) -> None:
        """Forget an entity or redirect, as if deleted: 404 / "missing" from now on."""
        with self._lock:
            self._entities.pop(entity_id, None)
            self._redirects.pop(entity_id, None)

    # Faults and observation

    def add_fault(self, entity_id: str | None, fault: Fault, times: int = 1) -> None:
        """Answer the next ``times`` requests concerning ``entity_id`` (None: any) with ``fault``.

        Faults are used in the order they were added; a wbgetentities request concerns every
        id it asks for.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(_Pending(entity_id, fault, times))

    def count(self, entity_id: str) -> int:
        """How many requests asked for ``entity_id`` (a redirect counts for the id asked)."""
        with self._lock:
            return sum(entity_id in request.entity_ids for request in self.requests)

    def clear_log(self) -> None:
        """Forget the requests and answers seen so far, and the most in flight; keep everything else."""
        with self._lock:
            self.requests.clear()
            self.answers.clear()
            self.most_in_flight = self.in_flight

    def reset(self) -> None:
        """Forget entities, redirects, faults, the request log and latency; keep serving."""
        with self._lock:
            self._entities.clear()
            self._redirects.clear()
            self._faults.clear()
            self.requests.clear()
            self.answers.clear()
            self.most_in_flight = self.in_flight
            self.latency = 0.0

    # Serving (runs in handler threads)

    def _handle(self, handler: _Handler) -> None:
        url = urllib.parse.urlsplit(handler.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        if path.startswith(ENTITY_DATA_PREFIX):
            entity_ids: tuple[str, ...] = (path.removeprefix(ENTITY_DATA_PREFIX).partition(".")[0],)
        elif path == API_PATH:
            entity_ids = tuple(i for i in "|".join(query.get("ids", [])).split("|") if i)
        else:
            entity_ids = ()

        headers: dict[str, str] = {}
        for raw_name, value in handler.headers.items():
            name = "-".join(part.capitalize() for part in raw_name.split("-"))
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        with self._lock:
            # Logged before anything is sent, so a test that got its answer sees its request.
            handler.logged = Request(handler.path, entity_ids, headers, handler.arrived)
            self.requests.append(handler.logged)
            fault = self._take_fault(entity_ids)

        # Event.wait() rather than sleep(): stop() sets the event and cuts every wait short.
        # ``latency`` after the request arrived, the stand-in's own handling included, so that
        # ``latency`` is what a client waits (plus the network), not ``latency`` and then some.
        delay = max(self.latency - (time.monotonic() - handler.arrived), 0.0)
        delay += fault.seconds if fault is not None and fault.kind == "hang" else 0.0
        if self._stopping.wait(delay) or (fault is not None and fault.kind == "reset"):
            handler.drop()
        elif fault is not None and fault.kind == "respond":
            handler.send(fault.code, fault.body, dict(fault.headers))
        elif fault is not None and fault.kind == "drip":
            handler.drip(fault, self._stopping)
        elif path.startswith(ENTITY_DATA_PREFIX):
            code, body, content_type = self._entity_data(path.removeprefix(ENTITY_DATA_PREFIX))
            handler.send(code, body, {"Content-Type": content_type})
        elif path == API_PATH:
            body, extra = self._api(query, entity_ids)
            handler.send(200, body, {"Content-Type": _JSON, **extra})
        else:
            handler.send(404, b"Not Found\n", {"Content-Type": _TEXT})

    @contextlib.contextmanager
    def _in_flight(self, handler: _Handler) -> Iterator[None]:
        """Count the request as in flight from its arrival until its answer starts (or it ends unanswered).

        Not until the handler has finished: the client may read the answer and send its next
        request before this thread runs again, and two requests would seem in flight at once.
        """
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            handler.counted = True
        try:
            yield
        finally:
            self._answering(handler)

    def _answering(self, handler: _Handler) -> None:
        with self._lock:
            if handler.counted:
                handler.counted = False
                self.in_flight -= 1

    def _answered(self, request: Request, status: int) -> None:
        with self._lock:
            self.answers.append(Answered(request, status, time.monotonic()))

    def _take_fault(self, entity_ids: tuple[str, ...]) -> Fault | None:
        for pending in self._faults:
            if pending.entity_id is None or pending.entity_id in entity_ids:
                pending.remaining -= 1
                if not pending.remaining:
                    self._faults.remove(pending)
                return pending.fault
        return None

    def _entity_data(self, name: str) -> tuple[int, bytes, str]:
        entity_id, _, extension = name.partition(".")
        if not ENTITY_ID.match(entity_id):
            return 400, _invalid_id_page(entity_id), _HTML
        if extension != "json":
            # Real Wikidata also serves .ttl, .rdf, .nt ...; no test needs them.
            return 404, f"No {extension or 'bare'} format here, only .json\n".encode(), _TEXT
        with self._lock:
            entity_id = self._redirects.get(entity_id, entity_id)
            document = self._entities.get(entity_id)
        if document is None:
            return 404, f"No entity with ID {entity_id} was found.\n".encode(), _TEXT
        # The merged item's target, keyed by the target id: the wikidata package follows that.
        return 200, f'{{"entities": {{{json.dumps(entity_id)}: {document}}}}}'.encode(), _JSON

    def _recent_changes(self, query: dict[str, list[str]]) -> tuple[bytes, dict[str, str]]:
        """``list=recentchanges`` with ``rcdir=newer``: oldest first, ``rclimit`` a page, and a
        ``continue`` of ``rccontinue`` (the next one's "timestamp|rcid") while more remain."""

        def one(name: str, default: str = "") -> str:
            return query.get(name, [default])[-1]

        namespaces = {int(number) for number in one("rcnamespace").split("|") if number}
        start, end, after = one("rcstart"), one("rcend"), one("rccontinue")
        with self._lock:
            chosen = [
                change
                for change in self._recent
                if (not namespaces or change["ns"] in namespaces)
                and (not start or change["timestamp"] >= start)
                and (not end or change["timestamp"] <= end)
            ]
        chosen.sort(key=lambda change: (change["timestamp"], change["rcid"]))
        if after:
            moment, _, rcid = after.partition("|")
            chosen = [
                change
                for change in chosen
                if (_mw(change["timestamp"]), change["rcid"]) >= (moment, int(rcid))
            ]
        limit = int(one("rclimit", "10"))
        body: dict[str, Any] = {"batchcomplete": True, "query": {"recentchanges": chosen[:limit]}}
        if len(chosen) > limit:
            following = chosen[limit]
            body["continue"] = {
                "rccontinue": f"{_mw(following['timestamp'])}|{following['rcid']}",
                "continue": "-||",
            }
        return json.dumps(body).encode(), {}

    def _api(self, query: dict[str, list[str]], entity_ids: tuple[str, ...]) -> tuple[bytes, dict[str, str]]:
        action = query.get("action", [""])[-1]
        if action == "query" and query.get("list", [""])[-1] == "recentchanges":
            return self._recent_changes(query)
        if action != "wbgetentities":
            return _api_error("badvalue", f'Unrecognized value for parameter "action": {action}.')
        if not entity_ids:
            return _api_error(
                "param-missing",
                'Either provide the item "ids" or pairs of "sites" and "titles" for corresponding pages.',
            )
        if len(set(entity_ids)) > MAX_IDS:
            return _api_error(
                "toomanyvalues",
                f'Too many values supplied for parameter "ids". The limit is {MAX_IDS}.',
                limit=MAX_IDS,
                lowlimit=MAX_IDS,
                highlimit=500,
                parameter="ids",
            )
        for entity_id in entity_ids:
            if not ENTITY_ID.match(entity_id):
                # One bad id fails the whole request, as in the real API.
                return _api_error(
                    "no-such-entity",
                    f"Could not find such an entity (Invalid id: {entity_id})",
                    messages=[
                        {
                            "name": "wikibase-api-no-such-entity",
                            "parameters": [],
                            "html": {"*": "Could not find such an entity"},
                        }
                    ],
                )
        parts: dict[str, str] = {}
        with self._lock:
            for entity_id in entity_ids:
                target = self._redirects.get(entity_id)
                document = self._entities.get(target or entity_id)
                if document is None:
                    parts[entity_id] = json.dumps({"id": entity_id, "missing": ""})
                elif target is None:
                    parts[entity_id] = document
                else:
                    parts[entity_id] = json.dumps(_with_redirect(json.loads(document), entity_id, target))
        if query.get("props", [""])[-1] == "info":  # the page's facts, not the document
            parts = {key: json.dumps(_info(json.loads(value))) for key, value in parts.items()}
        entries = ", ".join(f"{json.dumps(key)}: {value}" for key, value in parts.items())
        return f'{{"entities": {{{entries}}}, "success": 1}}'.encode(), {}


def _mw(timestamp: str) -> str:
    """An ISO timestamp as MediaWiki writes it in a continuation ("20261127020000")."""
    return "".join(character for character in timestamp if character.isdigit())


def _with_redirect(document: dict[str, Any], from_id: str, to_id: str) -> dict[str, Any]:
    # Real wbgetentities keys a merged item by the id asked for, with the target's document
    # and "redirects" placed just after "modified".
    result: dict[str, Any] = {}
    for key, value in document.items():
        result[key] = value
        if key == "modified":
            result["redirects"] = {"from": from_id, "to": to_id}
    result.setdefault("redirects", {"from": from_id, "to": to_id})
    return result


def _info(entry: dict[str, Any]) -> dict[str, Any]:
    """What ``props=info`` keeps of an entry: its page, revision and kind, not its content."""
    kept = ("pageid", "ns", "title", "lastrevid", "modified", "type", "id", "missing", "redirects")
    return {key: value for key, value in entry.items() if key in kept}


def _api_error(code: str, info: str, **extra: Any) -> tuple[bytes, dict[str, str]]:
    body = {"servedby": "stand-in", "error": {"code": code, "info": info, **extra, "*": _API_USAGE}}
    # MediaWiki answers API errors with HTTP 200 and names the error in a header.
    return json.dumps(body).encode(), {"MediaWiki-API-Error": code}
