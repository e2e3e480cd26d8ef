"""Hostile and broken HTTP answers: bounded in time and size, never followed elsewhere, never fatal.

Most cases run in both modes: one request per id (the ``wikidata`` package's client), and a
``wbgetentities`` batch (which falls back to one request per id when the batch fails).
"""

from __future__ import annotations

import email.utils
import gzip
import json
import os
import socket
import threading
import time
import tracemalloc
import urllib.parse
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from config.celery_app import app
from importers.importers import WikidataImporter
from importers.models import ImportOutcome, WikidataEntity
from importers.wikidata_api import FetchFailed, fetch_entity, longest_fetch_seconds
from tests.importers.conftest import import_in
from tests.importers.entities import STUTTGART, item, texts
from tests.support.outcomes import wait_for_outcomes
from tests.support.wikidata_server import Fault, StandInWikidata
from tests.support.workers import CeleryWorker

pytestmark = pytest.mark.django_db
Status = ImportOutcome.Status
MODES = ["single", "batch"]
JSON = {"Content-Type": "application/json; charset=utf-8"}


def entity_data(document: dict[str, Any]) -> bytes:
    """The body Special:EntityData answers for ``document`` (wbgetentities accepts the shape too)."""
    return json.dumps({"entities": {document["id"]: document}}).encode()


def stored(wikidata_id: str = "Q1022") -> bool:
    return WikidataEntity.objects.filter(pk=wikidata_id).exists()


# Time


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers-and-body"])
@pytest.mark.parametrize("mode", MODES)
def test_an_answer_dripped_a_byte_at_a_time_is_cut_off_at_the_attempt_deadline(
    served: StandInWikidata, settings: Any, mode: str, headers_too: bool
) -> None:
    settings.WIKIDATA_TIMEOUT = 1.0  # every byte comes much sooner than that
    settings.WIKIDATA_ATTEMPT_DEADLINE = 0.5
    settings.WIKIDATA_MAX_RETRIES = 1
    body = entity_data(STUTTGART)  # about 15 s at this pace
    served.add_fault("Q1022", Fault.drip(body, every=0.025, headers_too=headers_too), times=100)
    start = time.monotonic()
    failed = import_in(mode)
    assert time.monotonic() - start < 5
    assert failed.status == Status.FAILED
    assert "no complete answer within WIKIDATA_ATTEMPT_DEADLINE (0.5 s)" in failed.error
    assert failed.attempts == 2
    assert not stored()


@pytest.mark.parametrize(
    "fault",
    [
        Fault.drip(entity_data(STUTTGART), every=0.025),
        Fault.drip(entity_data(STUTTGART), every=0.025, headers_too=True),
        Fault.hang(5),
    ],
    ids=["dripped-body", "dripped-headers", "silent"],
)
def test_a_fetch_takes_no_longer_than_longest_fetch_seconds_says(
    wikidata: StandInWikidata, settings: Any, fault: Fault
) -> None:
    settings.WIKIDATA_TIMEOUT = 2.0  # longer than the deadline: only the deadline can end an attempt
    settings.WIKIDATA_ATTEMPT_DEADLINE = 0.3
    settings.WIKIDATA_MAX_RETRIES = 2
    settings.WIKIDATA_RETRY_AFTER_MAX = 0.1
    wikidata.add_fault("Q1022", fault, times=100)
    start = time.monotonic()
    with pytest.raises(FetchFailed, match="gave up after 3 attempts"):
        fetch_entity("Q1022")
    assert time.monotonic() - start <= longest_fetch_seconds() + 0.1  # about 1.1 s


@pytest.mark.django_db(transaction=True)  # the worker must see what the test commits
def test_a_worker_process_cuts_a_dripping_answer_off_at_the_deadline(
    served: StandInWikidata, settings: Any, tmp_path: Path
) -> None:
    # A forked pool process has a deadline watchdog of its own (its parent's thread is not forked).
    queue = f"deadline-{os.getpid()}"
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "WIKIDATA_BASE_URL": served.base_url,
        "WIKIDATA_ATTEMPT_DEADLINE": "0.5",
    }
    served.add_fault("Q1022", Fault.drip(entity_data(STUTTGART), every=0.025), times=100)
    worker = CeleryWorker(f"deadline-{os.getpid()}", [queue], env=env, log=tmp_path / "worker.log")
    app.conf.CELERY_TASK_ALWAYS_EAGER = False
    try:
        with worker:
            start = time.monotonic()
            WikidataImporter().import_single.as_task.apply_async(kwargs={"wikidata_id": "Q1022"}, queue=queue)
            assert wait_for_outcomes(["Q1022"], why=worker.log_tail) == {"Q1022": "failed"}
            elapsed = time.monotonic() - start
    finally:
        app.conf.CELERY_TASK_ALWAYS_EAGER = True
    assert elapsed < 10  # four attempts of 0.5 s, where the answer alone would take 15 s
    assert "WIKIDATA_ATTEMPT_DEADLINE (0.5 s)" in ImportOutcome.objects.get(pk="Q1022").error


def test_an_answer_cut_short_is_retried(served: StandInWikidata) -> None:
    body = entity_data(STUTTGART)
    short = Fault.drip(body[:100], every=0, headers={"Content-Length": str(len(body))})
    served.add_fault("Q1022", short)
    assert import_in("single").status == Status.IMPORTED
    assert served.count("Q1022") == 2


# Size


BIG = item("Q1022", "Stuttgart", description="x" * 200_000)


@pytest.mark.parametrize(
    "fault",
    [Fault.status(200, entity_data(BIG), JSON), Fault.drip(entity_data(BIG), every=0)],
    ids=["with-a-content-length", "without-one"],
)
@pytest.mark.parametrize("mode", MODES)
def test_an_answer_larger_than_the_cap_is_failed_and_not_retried(
    served: StandInWikidata, settings: Any, mode: str, fault: Fault
) -> None:
    settings.WIKIDATA_MAX_RESPONSE_BYTES = 100_000
    served.add_fault("Q1022", fault, times=100)
    failed = import_in(mode)
    assert failed.status == Status.FAILED
    assert "larger than WIKIDATA_MAX_RESPONSE_BYTES (100,000 bytes)" in failed.error
    assert served.count("Q1022") == (1 if mode == "single" else 2)  # a batch falls back to one by one
    assert not stored()


@pytest.mark.parametrize("mode", MODES)
def test_an_answer_of_millions_of_empty_arrays_within_the_byte_cap_is_failed_undecoded(
    served: StandInWikidata, mode: str
) -> None:
    """12 MB of ``[]``, under the 16 MiB cap: before, 4 million lists decoded (880 MB) and stored."""
    document = {**item("Q1022", "Stuttgart"), "claims": {"P31": [[]] * 4_000_000}}
    body = entity_data(document)
    assert len(body) < 16 * 1024 * 1024
    served.add_fault("Q1022", Fault.status(200, body, JSON), times=100)
    tracemalloc.start()
    try:
        failed = import_in(mode)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert failed.status == Status.FAILED
    assert "too large to decode" in failed.error
    assert "more than the 1,000,000 allowed" in failed.error
    assert peak < 100_000_000  # the answer's bytes, a few times over: never its decoded lists
    assert not stored()


def gzip_bomb(megabytes: int) -> bytes:
    """Gzip of ``megabytes`` MiB of zeros: about a thousandth of that size."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(compressor.compress(zeros) for _ in range(megabytes)) + compressor.flush()


@pytest.mark.parametrize("mode", MODES)
def test_a_gzip_bomb_is_refused_within_the_size_cap(
    served: StandInWikidata, settings: Any, mode: str
) -> None:
    settings.WIKIDATA_MAX_RESPONSE_BYTES = 1_000_000
    bomb = gzip_bomb(100)
    assert len(bomb) < 200_000
    served.add_fault("Q1022", Fault.status(200, bomb, {**JSON, "Content-Encoding": "gzip"}), times=100)
    tracemalloc.start()
    try:
        failed = import_in(mode)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert failed.status == Status.FAILED
    assert "larger than WIKIDATA_MAX_RESPONSE_BYTES" in failed.error
    assert peak < 20_000_000
    assert not stored()


@pytest.mark.parametrize("mode", MODES)
def test_a_gzip_answer_is_asked_for_and_decoded(served: StandInWikidata, mode: str) -> None:
    served.add_fault(
        "Q1022",
        Fault.status(200, gzip.compress(entity_data(STUTTGART)), {**JSON, "Content-Encoding": "gzip"}),
    )
    assert import_in(mode).status == Status.IMPORTED
    assert WikidataEntity.objects.get(pk="Q1022").data == STUTTGART
    assert served.requests[0].headers["Accept-Encoding"] == "gzip"


@pytest.mark.parametrize(
    ("encoding", "body", "reason"),
    [
        ("br", entity_data(STUTTGART), "encoded as 'br', which was not asked for"),
        ("deflate", zlib.compress(entity_data(STUTTGART)), "encoded as 'deflate', which was not asked for"),
        ("gzip, gzip", gzip.compress(gzip.compress(entity_data(STUTTGART))), "not asked for"),
        ("gzip", entity_data(STUTTGART), "not valid gzip"),
        ("gzip", gzip.compress(entity_data(STUTTGART))[:-30], "gzip stream is cut short"),
        ("gzip", gzip.compress(entity_data(STUTTGART)) + b"junk", "followed by other data"),
    ],
    ids=["brotli", "deflate", "gzip-twice", "not-gzip", "truncated-gzip", "trailing-junk"],
)
@pytest.mark.parametrize("mode", MODES)
def test_an_answer_in_an_encoding_not_asked_for_or_broken_is_failed(
    served: StandInWikidata, mode: str, encoding: str, body: bytes, reason: str
) -> None:
    served.add_fault("Q1022", Fault.status(200, body, {**JSON, "Content-Encoding": encoding}), times=100)
    failed = import_in(mode)
    assert failed.status == Status.FAILED
    assert reason in failed.error
    assert not stored()


# Redirects


@pytest.fixture
def elsewhere() -> Iterator[StandInWikidata]:
    """A second server, on another port: another host, as far as HTTP is concerned."""
    with StandInWikidata() as other:
        other.add_entity({**STUTTGART, "labels": texts(en="Not from Wikidata")})
        yield other


def redirect(location: str, code: int = 302) -> Fault:
    return Fault.status(code, b"", {"Location": location})


# (where the redirect leads, what the outcome's error says); {other} is the other server's
# base URL, {port} the stand-in's port.
FOREIGN_LOCATIONS = [
    pytest.param(
        "{other}wiki/Special:EntityData/Q1022.json", "redirected to another host", id="another-port"
    ),
    pytest.param("http://localhost:{port}/wiki/", "redirected to another host", id="another-name"),
    pytest.param("https://127.0.0.1:{port}/wiki/", "redirected to another host", id="another-scheme"),
    pytest.param("//example.org/wiki/", "redirected to another host", id="scheme-relative"),
    pytest.param("http://127.0.0.1:{port}@example.org/", "redirected to another host", id="user-info"),
    pytest.param("http://[::1/wiki/", "redirected to an invalid URL", id="a-broken-address"),
    pytest.param("http://127.0.0.1:port/wiki/", "redirected to an invalid URL", id="a-broken-port"),
    pytest.param(
        "/wiki/Special:EntityData/Q1022.json?\x7f", "redirected to an invalid URL", id="a-control-character"
    ),
]


@pytest.mark.parametrize(("location", "reason"), FOREIGN_LOCATIONS)
@pytest.mark.parametrize("mode", MODES)
def test_a_redirect_to_another_host_or_no_url_is_refused(
    served: StandInWikidata, elsewhere: StandInWikidata, mode: str, location: str, reason: str
) -> None:
    port = served.base_url.split(":")[-1].strip("/")
    location = location.format(other=elsewhere.base_url, port=port)
    served.add_fault("Q1022", redirect(location), times=100)
    failed = import_in(mode)
    assert failed.status == Status.FAILED
    assert reason in failed.error
    assert elsewhere.requests == []
    assert not stored()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("mode", MODES)
def test_a_redirect_within_the_host_is_followed(served: StandInWikidata, mode: str, code: int) -> None:
    served.add_fault("Q1022", redirect("/wiki/Special:EntityData/Q1022.json?canonical=1", code))
    assert import_in(mode).status == Status.IMPORTED
    assert served.requests[1].path == "/wiki/Special:EntityData/Q1022.json?canonical=1"


def test_a_redirect_loop_is_failed(served: StandInWikidata) -> None:
    served.add_fault("Q1022", redirect("/wiki/Special:EntityData/Q1022.json"), times=100)
    failed = import_in("single")
    assert failed.status == Status.FAILED
    assert "more than 3 redirects" in failed.error


# Retry-After


def http_date(seconds_from_now: float) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


# (Retry-After, the shortest and the longest wait before the second request). The test
# settings' backoff is at most 0.06 s; junk of any kind means the backoff.
RETRY_AFTERS = [
    pytest.param("1", 1.0, 2.0, id="seconds"),
    pytest.param("0.5", 0.5, 1.5, id="a-fraction"),
    pytest.param(" 1 ", 1.0, 2.0, id="spaces"),
    pytest.param("date+2", 0.9, 3.0, id="an-http-date"),  # whole seconds: 1 to 2 s from now
    pytest.param("date-3600", 0.0, 0.5, id="a-date-past"),
    pytest.param("99999999999999999999", 0.3, 1.3, id="huge-capped"),
    pytest.param("-1", 0.0, 0.5, id="negative"),
    pytest.param("NaN", 0.0, 0.5, id="nan"),
    pytest.param("inf", 0.0, 0.5, id="infinity"),
    pytest.param("1e999", 0.0, 0.5, id="an-exponent"),
    pytest.param("soon", 0.0, 0.5, id="a-word"),
    pytest.param("", 0.0, 0.5, id="empty"),
    pytest.param("Mon, 99 Foo 2024 99:99:99 GMT", 0.0, 0.5, id="a-broken-date"),
]


@pytest.mark.parametrize(("retry_after", "shortest", "longest"), RETRY_AFTERS)
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_obeyed_when_it_is_a_time_and_the_backoff_applies_otherwise(
    wikidata: StandInWikidata, settings: Any, status: int, retry_after: str, shortest: float, longest: float
) -> None:
    settings.WIKIDATA_RETRY_AFTER_MAX = 0.3 if retry_after.startswith("9999") else 60
    if retry_after.startswith("date"):
        retry_after = http_date(float(retry_after.removeprefix("date")))
    wikidata.add_entity(STUTTGART)
    wikidata.add_fault("Q1022", Fault.status(status, headers={"Retry-After": retry_after}))
    assert import_in("single").status == Status.IMPORTED
    first, second = wikidata.requests
    assert shortest <= second.time - first.time < longest


# Bodies that decode to no entity document


UNUSABLE = [
    pytest.param(b"null", "JSON null", id="null"),
    pytest.param(b"", "not JSON", id="empty"),
    pytest.param(entity_data(STUTTGART)[:-10], "not JSON", id="truncated-json"),
    pytest.param(b'{"entities": {"Q1022": {"id": "Q1022\xff"}}}', "not JSON", id="not-utf-8"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "not JSON", id="nested-too-deep"),
    pytest.param(b'"Q1022"', "unexpected shape", id="a-string"),
    pytest.param(b'{"entities": null}', "unexpected shape", id="null-entities"),
]


@pytest.mark.parametrize(("body", "reason"), UNUSABLE)
@pytest.mark.parametrize("mode", MODES)
def test_an_answer_that_decodes_to_no_document_is_failed_for_what_it_is(
    served: StandInWikidata, mode: str, body: bytes, reason: str
) -> None:
    served.add_fault("Q1022", Fault.status(200, body, JSON), times=100)
    failed = import_in(mode)
    assert failed.status == Status.FAILED
    assert reason in failed.error
    assert "HTTP 400" not in failed.error
    assert not stored()


def test_a_host_that_does_not_resolve_ends_the_id_at_once_with_a_hint(settings: Any) -> None:
    # Offline, a newcomer's first import used to retry a DNS failure for 32 s, five warnings long.
    settings.WIKIDATA_BASE_URL = "http://www.wikidata.invalid/"
    started = time.monotonic()
    with pytest.raises(FetchFailed) as caught:
        fetch_entity("Q1022")
    assert time.monotonic() - started < 2
    assert caught.value.attempts == 1
    assert "www.wikidata.invalid: the host name does not resolve: check the network" in str(caught.value)
    assert "WIKIDATA_BASE_URL" in str(caught.value)


def test_a_name_lookup_that_hangs_is_cut_off_at_the_attempts_deadline(
    settings: Any, served: StandInWikidata, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the lookup ran outside the attempt's deadline and the budget slot's lease, for as long
    as the resolver took (released here after 20 s)."""
    port = urllib.parse.urlsplit(settings.WIKIDATA_BASE_URL).port
    settings.WIKIDATA_BASE_URL = f"http://wikidata.slow-dns.test:{port}/"
    settings.WIKIDATA_ATTEMPT_DEADLINE = 0.5
    settings.WIKIDATA_MAX_RETRIES = 1
    released = threading.Event()
    threading.Timer(20, released.set).start()
    lookup = socket.getaddrinfo

    def hanging(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "wikidata.slow-dns.test":
            released.wait()
            return lookup("127.0.0.1", *args, **kwargs)
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        with pytest.raises(FetchFailed) as caught:
            fetch_entity("Q1022")
        assert not released.is_set()  # given up on before the resolver answered
    finally:
        released.set()
    assert caught.value.attempts == 2  # each attempt cut off at its deadline, and retried
    assert "gave up after 2 attempts: no complete answer within WIKIDATA_ATTEMPT_DEADLINE" in str(
        caught.value
    )


def test_a_name_with_several_addresses_is_reached_at_the_first_that_answers(
    settings: Any, served: StandInWikidata, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looked up on a thread of its own, a name is still tried at each of its addresses in turn."""
    port = urllib.parse.urlsplit(settings.WIKIDATA_BASE_URL).port
    settings.WIKIDATA_BASE_URL = f"http://wikidata.two-addresses.test:{port}/"
    lookup = socket.getaddrinfo

    def two_addresses(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "wikidata.two-addresses.test":  # nothing listens on the first
            return lookup("127.0.0.2", *args, **kwargs) + lookup("127.0.0.1", *args, **kwargs)
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
    assert fetch_entity("Q1022").document["id"] == "Q1022"
    assert served.count("Q1022") == 1
