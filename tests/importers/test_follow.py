"""``follow_wikidata``: recent changes, read from a stand-in EventStreams, refresh the stored entities."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections

from core.exceptions import EnqueueFailed
from importers.documents import Batch
from importers.follow import Change, Event, Follower, Pending, parse_change, read_events
from importers.follow import follower as follower_module
from importers.follow import recent_changes as recent_changes_module
from importers.follow import stream as stream_module
from importers.follow.changes import merged_with
from importers.follow.status import LagWindow, Unseen, event_time
from importers.management.commands.follow_wikidata import Command as FollowCommand
from importers.models import FollowPosition, ImportOutcome, WikidataEntity, WikidataRedirect
from importers.storage import Storage
from tests.importers.entities import LEXEME, item, texts
from tests.support.event_stream import TOPIC, StandInEventStream
from tests.support.waiting import wait_until
from tests.support.wikidata_server import StandInWikidata
from tests.support.workers import CeleryWorker

ROOT = Path(__file__).resolve().parents[2]

# The follower runs on a thread of its own, with a database connection of its own: it must see
# what the test stored, and the test what it stored.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stream(settings: Any) -> Iterator[StandInEventStream]:
    """A stand-in stream, ``WIKIDATA_STREAM_URL`` pointing at it, batches going after 0.2 s."""
    with StandInEventStream() as server:
        settings.WIKIDATA_STREAM_URL = server.url
        settings.WIKIDATA_FOLLOW_BATCH_SECONDS = 0.2
        yield server


def stored(wikidata: StandInWikidata, *numbers: int) -> None:
    """Items Q<n> stored at revision 1000 + n, and served at revision 2000 + n (changed since)."""
    documents: dict[str, Mapping[str, Any]] = {
        f"Q{n}": item(f"Q{n}", f"Item {n}", lastrevid=1000 + n) for n in numbers
    }
    Storage().store_batch(Batch(documents, [], [], 1))
    for n in numbers:
        wikidata.add_entity(item(f"Q{n}", f"Item {n} changed", lastrevid=2000 + n))
    wikidata.clear_log()


def revisions() -> dict[str, int | None]:
    return dict(WikidataEntity.objects.values_list("pk", "lastrevid"))


def saved_offset() -> int | None:
    """The offset of the stream position saved in the database; None: none saved."""
    row = FollowPosition.objects.first()
    if row is None or not row.last_event_id:
        return None
    return int(json.loads(row.last_event_id)[0]["offset"])


@contextlib.contextmanager
def following(follow_all: bool = False, since: str | None = None) -> Iterator[Follower]:
    """Run a follower on a thread until the block ends; then stop it, and raise what it raised."""
    follower = Follower(follow_all=follow_all, since=since)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            follower.run()
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield follower
    finally:
        follower.halt()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the follower did not stop"
    if errors:
        raise errors[0]


def test_only_stored_entities_are_refreshed(wikidata: StandInWikidata, stream: StandInEventStream) -> None:
    stored(wikidata, 1, 2)
    wikidata.add_entity(item("Q3", "Not stored", lastrevid=2003))
    stream.edit("Q1", 2001)
    last = stream.edit("Q3", 2003)
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 2001, "Q2": 1002}
    assert [request.entity_ids for request in wikidata.requests] == [("Q1",)]


def test_with_all_every_changed_entity_is_imported(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    stored(wikidata, 1)
    wikidata.add_entity(item("Q3", "Not stored", lastrevid=2003))
    stream.edit("Q1", 2001)
    last = stream.edit("Q3", 2003, kind="new")
    with following(follow_all=True):
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 2001, "Q3": 2003}


def test_a_backlog_is_fetched_as_many_requests_at_once_as_the_budget_allows_also_in_process(
    wikidata: StandInWikidata, stream: StandInEventStream, settings: Any
) -> None:
    wikidata.latency = 0.3  # while a flush waits, the reader queues the rest of the backlog
    for n in range(1, 601):
        wikidata.add_entity(item(f"Q{n}", f"Item {n}", lastrevid=2000 + n))
        last = stream.edit(f"Q{n}", 2000 + n, kind="new")
    with following(follow_all=True):
        wait_until(lambda: saved_offset() == last)
    assert len(revisions()) == 600
    assert wikidata.most_in_flight == settings.WIKIDATA_MAX_IN_FLIGHT == 3
    assert all(len(request.entity_ids) <= 50 for request in wikidata.requests)


def test_other_wikis_canaries_and_other_namespaces_are_ignored(
    wikidata: StandInWikidata, stream: StandInEventStream, settings: Any
) -> None:
    stored(wikidata, 1, 2)
    stream.edit("Q2", 2002, wiki="enwiki")
    stream.canary("Q2", 2002)
    talk = {"meta": {"domain": "www.wikidata.org"}, "wiki": "wikidatawiki", "type": "edit"}
    stream.add({**talk, "namespace": 1, "title": "Talk:Q2", "revision": {"new": 2002}})
    stream.log("Q2", "protect")  # a log event that changes no content
    last = stream.edit("Q1", 2001)
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 2001, "Q2": 1002}
    assert wikidata.count("Q2") == 0
    assert stream.requests[0].headers["User-Agent"] == settings.WIKIDATA_USER_AGENT


def test_duplicates_and_events_out_of_order_keep_the_highest_revision(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    stored(wikidata, 1)
    for revision in (2001, 1500, 2001, 1800):
        stream.edit("Q1", revision)
    with following():
        wait_until(lambda: revisions()["Q1"] == 2001)
        # An older revision, later: the stored one is newer, nothing is fetched.
        last = stream.edit("Q1", 1900)
        wait_until(lambda: saved_offset() == last)
    assert wikidata.count("Q1") == 1
    assert revisions() == {"Q1": 2001}


def test_a_dropped_connection_resumes_from_the_saved_position_losing_and_redoing_nothing(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    numbers = range(1, 7)
    stored(wikidata, *numbers)
    stream.drop_after(3)
    for n in numbers:
        last = stream.edit(f"Q{n}", 2000 + n)
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {f"Q{n}": 2000 + n for n in numbers}
    assert [wikidata.count(f"Q{n}") for n in numbers] == [1] * 6
    first, second = stream.requests
    assert "Last-Event-Id" not in first.headers
    assert json.loads(second.headers["Last-Event-Id"]) == [{"topic": TOPIC, "partition": 0, "offset": 2}]
    assert second.start == 3


def test_with_a_broker_the_batch_goes_to_a_worker(
    wikidata: StandInWikidata, stream: StandInEventStream, live: CeleryWorker
) -> None:
    stored(wikidata, 1, 2)
    stream.edit("Q1", 2001)
    last = stream.edit("Q2", 2002)
    with following():
        wait_until(lambda: saved_offset() == last)
        wait_until(lambda: revisions() == {"Q1": 2001, "Q2": 2002}, why=live.log_tail)
    assert "WikidataImporter.import_batch" in live.log_text()  # the worker ran it
    assert [wikidata.count("Q1"), wikidata.count("Q2")] == [1, 1]


def test_with_a_broker_the_lag_runs_to_the_row_the_worker_stored_not_to_the_broker(
    wikidata: StandInWikidata, stream: StandInEventStream, live: CeleryWorker
) -> None:
    stored(wikidata, 1, 2)
    wikidata.latency = 1.5  # the worker's request: the rows come at least 1.5 s after the batch went
    made = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    stream.edit("Q1", 2001, dt=made)
    stream.edit("Q2", 2002, dt=made)
    with following():
        wait_until(lambda: revisions() == {"Q1": 2001, "Q2": 2002}, why=live.log_tail)
        # Another wiki's event: a batch with nothing to send, which saves the status.
        last = stream.edit("Q9", 9, wiki="enwiki")
        wait_until(lambda: saved_offset() == last)
    lag = FollowPosition.objects.get().status["lag"]["minute"]
    assert lag["count"] == 2
    assert lag["p50"] >= 1.5


def test_a_connection_dropped_mid_event_loses_no_change(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    stored(wikidata, 1, 2)
    stream.drop_after(1, "mid_event")  # half of Q2's event, then the connection closes
    stream.edit("Q1", 2001)
    last = stream.edit("Q2", 2002)
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 2001, "Q2": 2002}
    assert [request.start for request in stream.requests] == [0, 1]


def test_a_stalled_connection_is_dropped_and_resumed(
    wikidata: StandInWikidata, stream: StandInEventStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "READ_TIMEOUT", 1.0)  # 60 s in production
    stored(wikidata, 1, 2)
    stream.drop_after(1, "stall")
    stream.edit("Q1", 2001)
    last = stream.edit("Q2", 2002)
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 2001, "Q2": 2002}
    assert [wikidata.count("Q1"), wikidata.count("Q2")] == [1, 1]
    assert stream.requests[-1].start == 1


def test_a_refused_connection_is_tried_again(wikidata: StandInWikidata, stream: StandInEventStream) -> None:
    stored(wikidata, 1)
    stream.refuse(429)
    stream.refuse(503)
    last = stream.edit("Q1", 2001)
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 2001}
    assert [request.start for request in stream.requests] == [0, 0, 0]


def test_a_refusal_s_retry_after_is_waited_for(wikidata: StandInWikidata, stream: StandInEventStream) -> None:
    stored(wikidata, 1)
    stream.refuse(429, retry_after=2)  # the follower's own backoff would wait 1 s
    last = stream.edit("Q1", 2001)
    with following():
        wait_until(lambda: saved_offset() == last)
    refused, accepted = stream.requests
    assert accepted.time - refused.time >= 2.0


def test_a_restarted_follower_resumes_after_the_saved_position(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    stored(wikidata, 1, 2)
    first = stream.edit("Q1", 2001)
    with following():
        wait_until(lambda: saved_offset() == first)
    # Changed while no follower ran: not lost.
    last = stream.edit("Q2", 2002)
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 2001, "Q2": 2002}
    assert [wikidata.count("Q1"), wikidata.count("Q2")] == [1, 1]
    assert stream.requests[1].start == first + 1


def test_since_is_asked_for_only_without_a_saved_position(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    stored(wikidata, 1)
    last = stream.edit("Q1", 2001)
    for _ in range(2):
        with following(since="2026-12-05T02:00:00Z"):
            wait_until(lambda: saved_offset() == last)
    first, second = stream.requests
    assert first.path.endswith("/recentchange?since=2026-12-05T02%3A00%3A00Z")
    assert "Last-Event-Id" not in first.headers
    assert second.path.endswith("/recentchange")
    assert "Last-Event-Id" in second.headers


def test_a_full_batch_of_50_ids_goes_in_one_request(
    wikidata: StandInWikidata, stream: StandInEventStream, settings: Any
) -> None:
    settings.WIKIDATA_FOLLOW_BATCH_SECONDS = 3600.0  # only a full batch goes
    numbers = range(1, 51)
    stored(wikidata, *numbers)
    for n in numbers:
        last = stream.edit(f"Q{n}", 2000 + n)
    with following():
        wait_until(lambda: saved_offset() == last)
    assert len(wikidata.requests) == 1
    assert revisions() == {f"Q{n}": 2000 + n for n in numbers}


def test_stopping_sends_the_pending_changes_and_saves_the_position(
    wikidata: StandInWikidata, stream: StandInEventStream, settings: Any
) -> None:
    settings.WIKIDATA_FOLLOW_BATCH_SECONDS = 3600.0  # nothing goes but by stopping
    stored(wikidata, 1)
    last = stream.edit("Q1", 2001)
    with following() as follower:
        wait_until(lambda: "Q1" in follower.pending.changes)
        assert saved_offset() is None
    assert saved_offset() == last
    assert revisions() == {"Q1": 2001}


def test_sigterm_stops_the_command_with_its_position_saved(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    stored(wikidata, 1)
    last = stream.edit("Q1", 2001)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "WIKIDATA_BASE_URL": wikidata.base_url,
        "WIKIDATA_STREAM_URL": stream.url,
        "WIKIDATA_FOLLOW_BATCH_SECONDS": "0.2",
    }
    command = [sys.executable, "manage.py", "follow_wikidata"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: saved_offset() == last or process.poll() is not None, timeout=120)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.splitlines()[-1].startswith("Stopped: 1 ids sent; position [")
    assert saved_offset() == last
    assert revisions() == {"Q1": 2001}


def test_pending_changes_keep_each_ids_highest_revision_and_the_last_position() -> None:
    pending = Pending()
    for position, (wikidata_id, revision) in enumerate(
        [("Q1", 7), ("Q2", 3), ("Q1", 5), ("Q1", 9), ("Q1", 8)]
    ):
        pending.add(Event(str(position), "message", ""), Change(wikidata_id, revision), now=1.0)
    pending.add(Event(None, "message", ""), None, now=1.5)  # an event without an id keeps the position
    assert pending.changes == {"Q1": 9, "Q2": 3}
    assert pending.position == "4"
    assert not pending.due(now=2.9, seconds=2.0)
    assert pending.due(now=3.0, seconds=2.0)  # the oldest unsent event is 2 s old


@pytest.mark.parametrize(
    ("event", "change"),
    [
        ({"wiki": "wikidatawiki", "namespace": 0, "title": "Q42"}, Change("Q42", 7)),
        ({"wiki": "wikidatawiki", "namespace": 120, "title": "Property:P31"}, Change("P31", 7)),
        ({"wiki": "wikidatawiki", "namespace": 146, "title": "Lexeme:L7"}, Change("L7", 7)),
        ({"wiki": "wikidatawiki", "namespace": 0, "title": "Q42", "type": "new"}, Change("Q42", 7)),
        ({"wiki": "enwiki", "namespace": 0, "title": "Q42"}, None),
        ({"wiki": "wikidatawiki", "namespace": 0, "title": "Q42", "meta": {"domain": "canary"}}, None),
        ({"wiki": "wikidatawiki", "namespace": 0, "title": "Q42", "type": "log"}, None),
        ({"wiki": "wikidatawiki", "namespace": 0, "title": "Property:P31"}, None),
        ({"wiki": "wikidatawiki", "namespace": 120, "title": "P31"}, None),
        ({"wiki": "wikidatawiki", "namespace": 1, "title": "Talk:Q42"}, None),
        ({"wiki": "wikidatawiki", "namespace": 0, "title": "Wikidata:Main Page"}, None),
        ({"wiki": "wikidatawiki", "namespace": 0, "title": "Q42", "revision": {"new": "7"}}, None),
    ],
)
def test_only_wikidata_entity_edits_are_changes(event: dict[str, Any], change: Change | None) -> None:
    base = {"meta": {"domain": "www.wikidata.org"}, "type": "edit", "revision": {"old": 6, "new": 7}}
    assert parse_change(base | event) == change


def test_events_are_read_whatever_the_chunks() -> None:
    body = (
        b':ok\n\nevent: message\nid: [{"offset":1}]\ndata: {"a":\ndata: 1}\n\n'
        b": a comment\r\nevent: message\r\ndata: {}\r\n\r\n"
    )
    expected = [Event('[{"offset":1}]', "message", '{"a":\n1}'), Event('[{"offset":1}]', "message", "{}")]
    assert list(read_events(iter([body]))) == expected
    assert list(read_events(body[i : i + 1] for i in range(len(body)))) == expected


def test_a_broker_that_cannot_be_reached_stops_the_command_with_the_position_kept(
    wikidata: StandInWikidata, stream: StandInEventStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored(wikidata, 1)
    stream.edit("Q1", 2001)

    class Unreachable:
        def import_bulk(self, ids: list[str], batch_size: int, at_least: Any = None) -> int:
            raise EnqueueFailed(0, ConnectionRefusedError("refused"), "redis://broker:6379/0")

    monkeypatch.setattr(follower_module, "WikidataImporter", Unreachable)
    with pytest.raises(CommandError, match="position was kept: start follow_wikidata again"):
        call_command("follow_wikidata", stdout=io.StringIO())
    assert saved_offset() is None
    assert revisions() == {"Q1": 1001}


def test_an_oversized_event_is_skipped_without_its_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_module, "MAX_EVENT_BYTES", 20)
    body = (
        b"id: 1\ndata: " + b"x" * 50 + b"\n\n"  # one overlong line
        b"id: 2\ndata: 0123456789\ndata: 0123456789\n\n"  # lines of an overlong event
        b"id: 3\ndata: {}\n\n"
    )
    expected = [Event("1", "message", ""), Event("2", "message", ""), Event("3", "message", "{}")]
    assert list(read_events(body[i : i + 7] for i in range(0, len(body), 7))) == expected


def test_an_oversized_event_on_the_stream_moves_the_position_on(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    stored(wikidata, 1)
    stream.add({"wiki": "wikidatawiki", "padding": "x" * (2 << 20)})
    last = stream.edit("Q1", 2001)
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 2001}
    assert len(stream.requests) == 1


def test_since_must_be_an_iso_time_with_a_time_zone() -> None:
    for since, message in (("yesterday", "is not an ISO time"), ("2026-12-05T02:00:00", "has no time zone")):
        with pytest.raises(CommandError, match=message):
            call_command("follow_wikidata", "--since", since, stdout=io.StringIO())
    assert not FollowPosition.objects.exists()
    assert FollowCommand().parse_since("2026-12-05T03:00:00+01:00") == "2026-12-05T02:00:00Z"


def test_the_follower_sends_each_changes_revision_for_a_lagging_answer_to_be_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[dict[str, int]] = []

    class Recording:
        def import_bulk(self, ids: list[str], batch_size: int, at_least: Any = None) -> int:
            sent.append(dict(at_least))
            return len(ids)

    monkeypatch.setattr(follower_module, "WikidataImporter", Recording)
    follower = Follower(follow_all=True)
    follower.pending.changes = {"Q1": 2400000001, "P31": 2400000002}
    follower.pending.since = 0.0
    follower.flush()
    assert sent == [{"Q1": 2400000001, "P31": 2400000002}]


def test_a_deleted_entity_is_removed_and_recorded_missing_and_a_restore_imports_it_again(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    stored(wikidata, 1, 2)
    stream.edit("Q1", 2001)
    last = stream.log("Q1", "delete")
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q2": 1002}
    outcome = ImportOutcome.objects.get(pk="Q1")
    assert (outcome.status, outcome.error) == ("missing", follower_module.DELETED)
    last = stream.log("Q1", "delete", "restore")
    with following():
        wait_until(lambda: saved_offset() == last)
        wait_until(lambda: "Q1" in revisions())
    assert revisions() == {"Q1": 2001, "Q2": 1002}  # what the API serves after the restore


@pytest.mark.parametrize(
    ("action", "change"),
    [
        ("delete", Change("Q42", 0, deleted=True)),
        ("restore", Change("Q42", 0)),
        ("revision", None),  # a revision's visibility changed: no content change
        ("event", None),
    ],
)
def test_a_page_deletion_and_restore_are_changes(action: str, change: Change | None) -> None:
    event = {"meta": {"domain": "www.wikidata.org"}, "wiki": "wikidatawiki", "type": "log",
             "log_type": "delete", "log_action": action, "namespace": 0, "title": "Q42"}  # fmt: skip
    assert parse_change(event) == change


def test_a_merged_entity_becomes_a_redirect_to_its_refreshed_target_without_lag_retries(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    stored(wikidata, 1)  # Q2, its target, is not stored: it is followed for the merge's sake
    wikidata.add_entity(item("Q2", "Target", lastrevid=3001))
    wikidata.add_redirect("Q1", "Q2")
    last = stream.merge("Q1", "Q2", 3000)
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q2": 3001}
    assert dict(WikidataRedirect.objects.values_list("pk", "target_id")) == {"Q1": "Q2"}
    # The redirect's answer carries Q2's revision, older than Q1's last event (3002): that is
    # Q1's answer, asked for once, not a lagging replica's, asked for again.
    assert [wikidata.count("Q1"), wikidata.count("Q2")] == [1, 1]
    assert ImportOutcome.objects.get(pk="Q1").status == "redirected"


def test_the_target_of_a_merge_is_refreshed_at_its_merge_revision(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    stored(wikidata, 1)
    wikidata.add_entity(item("Q2", "Target", lastrevid=3001))
    wikidata.add_redirect("Q1", "Q2")
    last = stream.edit("Q2", 3001, comment="/* wbmergeitems-from:0||Q1 */ duplicate entry")
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 1001, "Q2": 3001}  # Q1's own events will make it a redirect
    assert [request.entity_ids for request in wikidata.requests] == [("Q2",)]


def lexeme(entity_id: str, lemma: str, lastrevid: int) -> dict[str, Any]:
    """A lexeme document, shaped like ``LEXEME`` (L7)."""
    return {**LEXEME, "pageid": 1000 + int(entity_id[1:]), "title": f"Lexeme:{entity_id}", "id": entity_id,
            "lastrevid": lastrevid, "lemmas": texts(en=lemma)}  # fmt: skip


def test_a_merged_lexeme_becomes_a_redirect_to_its_refreshed_target(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    Storage().store_batch(Batch({"L1": lexeme("L1", "colour", 1001)}, [], [], 1))
    wikidata.add_entity(lexeme("L2", "color", 3001))  # L2, the target, is not stored
    wikidata.add_redirect("L1", "L2")
    last = stream.merge("L1", "L2", 3000)
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"L2": 3001}
    assert dict(WikidataRedirect.objects.values_list("pk", "target_id")) == {"L1": "L2"}
    assert [wikidata.count("L1"), wikidata.count("L2")] == [1, 1]
    assert ImportOutcome.objects.get(pk="L1").status == "redirected"


def test_the_target_of_a_lexeme_merge_is_refreshed_at_its_merge_revision(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    Storage().store_batch(Batch({"L1": lexeme("L1", "colour", 1001)}, [], [], 1))
    wikidata.add_entity(lexeme("L2", "color", 3001))
    wikidata.add_redirect("L1", "L2")
    last = stream.edit("L2", 3001, comment="/* wblmergelexemes-from:0||L1 */")
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"L1": 1001, "L2": 3001}  # L1's own events will make it a redirect
    assert [request.entity_ids for request in wikidata.requests] == [("L2",)]


@pytest.mark.parametrize(
    ("title", "comment", "partner"),
    [
        # As WikibaseLexeme's MergeLexemesInteractor and Wikibase's SummaryFormatter build them
        # (see MERGE_COMMENT): the source, the target, a user summary (the API's "summary"), the
        # source's redirect.
        ("Lexeme:L1", "/* wblmergelexemes-to:0||L2 */", "L2"),
        ("Lexeme:L2", "/* wblmergelexemes-from:0||L1 */", "L1"),
        ("Lexeme:L1", "/* wblmergelexemes-to:0||L2 */ duplicate lexeme", "L2"),
        ("Lexeme:L1", "/* wbcreateredirect:0||L1|L2 */", "L2"),
        ("Lexeme:L1", "/* wblmergelexemes-to:0||L1 */", None),  # itself: no other side
        ("Lexeme:L1", "/* wblmergelexemes:0||L2 */", None),  # no direction: not a merge
        ("Lexeme:L1", "", None),
    ],
)
def test_a_lexeme_merge_or_redirect_edit_names_the_other_side(
    title: str, comment: str, partner: str | None
) -> None:
    event = {"meta": {"domain": "www.wikidata.org"}, "wiki": "wikidatawiki", "type": "edit", "namespace": 146,
             "title": title, "comment": comment, "revision": {"old": 1, "new": 2}}  # fmt: skip
    assert parse_change(event) == Change(title.removeprefix("Lexeme:"), 2, merged_with=partner)
    assert merged_with(title.removeprefix("Lexeme:"), comment) == partner


@pytest.mark.parametrize(
    ("title", "comment", "partner"),
    [
        (
            "Q26212910",
            "/* wbmergeitems-to:0||Q1216649 */ [[MediaWiki:Gadget-Merge.js|merge.js]]  dup",
            "Q1216649",
        ),
        (
            "Q1216649",
            "/* wbmergeitems-from:0||Q26212910 */ [[MediaWiki:Gadget-Merge.js|merge.js]]  dup",
            "Q26212910",
        ),
        ("Q26212910", "/* wbcreateredirect:0||Q26212910|Q1216649 */", "Q1216649"),
        ("Q26212910", "/* wbmergeitems-to:0||q1216649 */", "Q1216649"),
        ("Q26212910", "/* wbsetlabel-add:1|en */ wbmergeitems-to:0||Q5", None),  # not the autocomment
        ("Q26212910", "/* wbmergeitems-to:0||Q26212910 */", None),  # itself: no other side
        ("Q26212910", "/* wbmergeitems-to:0||Wikidata:Sandbox */", None),
        ("Q26212910", "", None),
    ],
)
def test_a_merge_or_redirect_edit_names_the_other_side(title: str, comment: str, partner: str | None) -> None:
    # Real comments, from the recentchange events of a merge (offsets 2146136449 to 2146136453).
    event = {"meta": {"domain": "www.wikidata.org"}, "wiki": "wikidatawiki", "type": "edit", "namespace": 0,
             "title": title, "comment": comment, "revision": {"old": 1, "new": 2}}  # fmt: skip
    assert parse_change(event) == Change(title, 2, merged_with=partner)


@pytest.fixture
def shared_lease(settings: Any) -> Iterator[redis.Redis]:
    """The follower's lease in the test Redis, under a key of this test's own, lasting 3 s."""
    settings.WIKIDATA_LIMITER_URL = settings.TEST_REDIS_URL
    settings.WIKIDATA_LIMITER_KEY = f"follow-test-{uuid.uuid4().hex}"
    settings.WIKIDATA_FOLLOW_LEASE_SECONDS = 3.0
    client = redis.Redis.from_url(settings.TEST_REDIS_URL)
    yield client
    client.delete(f"{settings.WIKIDATA_LIMITER_KEY}:follower")
    client.close()


def test_a_second_follower_waits_as_a_standby_and_takes_over_when_the_first_stops(
    wikidata: StandInWikidata, stream: StandInEventStream, shared_lease: redis.Redis
) -> None:
    stored(wikidata, 1, 2)
    first_change = stream.edit("Q1", 2001)
    with following() as first, following() as second:
        wait_until(lambda: saved_offset() == first_change)
        wait_until(lambda: "standby" in (first.mode, second.mode))
        holder, standby = (first, second) if second.mode == "standby" else (second, first)
        holder.halt()
        wait_until(lambda: standby.mode == "stream")
        last = stream.edit("Q2", 2002)
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 2001, "Q2": 2002}
    assert stream.most_open == 1
    assert [request.start for request in stream.requests] == [0, first_change + 1]


def test_a_follower_that_loses_its_lease_stops_reading_until_it_takes_it_again(
    wikidata: StandInWikidata, stream: StandInEventStream, shared_lease: redis.Redis, settings: Any
) -> None:
    stored(wikidata, 1)
    key = f"{settings.WIKIDATA_LIMITER_KEY}:follower"
    with following() as follower:
        wait_until(lambda: stream.open == 1)
        shared_lease.set(key, "another-host:1:00000000", px=60_000)  # as if it expired, and was taken
        wait_until(lambda: stream.open == 0)
        last = stream.edit("Q1", 2001)
        wait_until(lambda: follower.mode == "standby")
        shared_lease.delete(key)
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 2001}
    assert stream.most_open == 1


def test_a_standby_command_takes_over_from_a_killed_one_without_two_connections(
    wikidata: StandInWikidata, stream: StandInEventStream, settings: Any
) -> None:
    stored(wikidata, 1, 2)
    key = f"follow-test-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "WIKIDATA_BASE_URL": wikidata.base_url,
        "WIKIDATA_STREAM_URL": stream.url,
        "WIKIDATA_FOLLOW_BATCH_SECONDS": "0.2",
        "WIKIDATA_LIMITER_URL": settings.TEST_REDIS_URL,
        "WIKIDATA_LIMITER_KEY": key,
        "WIKIDATA_FOLLOW_LEASE_SECONDS": "3",
    }

    def start() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "follow_wikidata"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        assert process.stdout.readline().startswith("Following ")  # about to take the lease, or wait
        return process

    first = start()
    second = None
    try:
        wait_until(lambda: stream.open == 1, timeout=120)
        second = start()
        change = stream.edit("Q1", 2001)
        wait_until(lambda: saved_offset() == change, timeout=120)
        first.kill()  # SIGKILL: no position saved, no lease given up
        first.wait(timeout=60)
        last = stream.edit("Q2", 2002)
        wait_until(lambda: saved_offset() == last, timeout=120)
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    finally:
        for process in (first, second):
            if process is not None:
                process.kill()
                process.wait(timeout=60)
        redis.Redis.from_url(settings.TEST_REDIS_URL).delete(f"{key}:follower")
    assert second.returncode == 0
    assert revisions() == {"Q1": 2001, "Q2": 2002}
    assert stream.most_open == 1
    assert len(stream.requests) == 2


def test_status_shows_the_lag_of_each_change_the_backlog_the_position_s_age_and_the_mode(
    wikidata: StandInWikidata, stream: StandInEventStream
) -> None:
    stored(wikidata, 1, 2)
    # Made 100 s ago: whatever the machine's speed, each change's lag is at least that.
    made = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 100))
    stream.edit("Q1", 2001, dt=made)
    stream.edit("Q2", 2002, dt=made)
    last = stream.edit("Q3", 2003, dt=made)  # not stored: not sent, no lag
    with following():
        wait_until(lambda: saved_offset() == last)
    status = FollowPosition.objects.get().status
    assert status["mode"] == "stream"
    assert status["pending"] == 3  # the ids of the batch, read and not sent yet as it was saved
    assert status["written_at"] - status["position_time"] >= 100
    for window in ("minute", "hour"):
        lag = status["lag"][window]
        assert lag["count"] == 2
        assert 100 <= lag["p50"] <= lag["p95"] <= lag["p99"]
    out = io.StringIO()
    call_command("follow_wikidata", "--status", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"Position {FollowPosition.objects.get().last_event_id}, saved ")
    assert lines[1].startswith("mode stream; lag over the last minute p50 1")
    assert "(2 changes); lag over the last hour p50 1" in lines[1]
    assert "; 3 ids pending; position 1" in lines[1]


def test_status_without_a_follower_says_none_is_saved() -> None:
    out = io.StringIO()
    call_command("follow_wikidata", "--status", stdout=out)
    assert out.getvalue() == "No status saved: no follower has sent a batch here yet.\n"
    assert not FollowPosition.objects.exists()


def test_the_status_is_logged_once_a_minute(
    wikidata: StandInWikidata, stream: StandInEventStream, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(follower_module, "REPORT_SECONDS", 0.0)  # 60 s in production
    stored(wikidata, 1)
    last = stream.edit("Q1", 2001)
    with caplog.at_level(logging.INFO, logger=follower_module.__name__), following():
        wait_until(lambda: saved_offset() == last)
        wait_until(lambda: any("(1 changes)" in record.message for record in caplog.records))
    assert any(record.message.startswith("Follower: mode stream; lag over the last minute p50 ")
               for record in caplog.records)  # fmt: skip


def test_lag_percentiles_are_nearest_rank_over_the_last_minute_and_hour() -> None:
    window = LagWindow()
    window.add(now=0.0, lags=[100.0])  # more than an hour before the last: forgotten
    window.add(now=1000.0, lags=[float(lag) for lag in range(1, 101)])
    window.add(now=3650.0, lags=[7.0])
    assert window.summary(now=3650.0) == {
        "minute": {"count": 1, "p50": 7.0, "p95": 7.0, "p99": 7.0},
        "hour": {"count": 101, "p50": 50.0, "p95": 95.0, "p99": 99.0},
    }
    assert window.summary(now=8000.0)["hour"]["count"] == 0


def test_a_change_s_lag_runs_to_a_row_at_its_revision_or_later_and_the_unseen_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unseen = Unseen()
    unseen.add({"Q1": 5, "Q2": 7}, {"Q1": 100.0, "Q2": 101.0}, now=102.0)
    unseen.add({"Q1": 6}, {"Q1": 103.0}, now=104.0)  # sent again: the newer revision, the first time
    assert unseen.seen([("Q1", 5, 105.0), ("Q2", 8, 106.0)], now=106.0) == [5.0]  # Q1 not at 6 yet
    assert unseen.seen([("Q1", 6, 107.0)], now=107.0) == [7.0]
    assert len(unseen) == 0
    unseen.add({"Q3": 1}, {"Q3": 0.0}, now=0.0)
    assert unseen.seen([], now=Unseen.FORGET + 1) == []  # its row never came: forgotten
    assert len(unseen) == 0
    monkeypatch.setattr(Unseen, "MOST", 2)
    unseen.add({"Q1": 1, "Q2": 1, "Q3": 1}, {"Q1": 0.0, "Q2": 0.0, "Q3": 0.0}, now=0.0)
    assert unseen.ids() == ["Q2", "Q3"]  # the oldest sent forgotten first


@pytest.mark.parametrize(
    ("dt", "expected"),
    [("2020-02-02T13:21:46Z", 1580649706.0), ("2020-02-02T13:21:46.500Z", 1580649706.5), ("yesterday", None),
     (1580649706, None)],
)  # fmt: skip
def test_an_event_s_time_is_its_meta_dt(dt: Any, expected: float | None) -> None:
    assert event_time({"meta": {"dt": dt}}) == expected


def test_the_admin_shows_the_follower_s_status_read_only(admin_client: Any) -> None:
    now = time.time()
    lag = {"count": 3, "p50": 1.5, "p95": 2.0, "p99": 4.0}
    status = {"mode": "stream", "holder": "web.1:7:abcd1234", "pending": 4, "queued": 0,
              "position_time": now - 2, "lag": {"minute": lag, "hour": lag}, "written_at": now}  # fmt: skip
    FollowPosition.objects.create(pk=1, last_event_id='[{"offset": 7}]', status=status)
    page = admin_client.get("/admin/importers/followposition/").content.decode()
    assert "mode stream; lag over the last minute p50 1.5 s, p95 2.0 s, p99 4.0 s (3 changes)" in page
    assert "web.1:7:abcd1234" in page
    assert admin_client.get("/admin/importers/followposition/add/").status_code == 403


def iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def save_position(offset: int, made: float) -> None:
    """A position saved by an earlier follower, its last event made at ``made`` (Unix time)."""
    position = json.dumps([{"topic": TOPIC, "partition": 0, "offset": offset}])
    FollowPosition.objects.create(pk=1, last_event_id=position, status={"position_time": made})


def test_a_position_older_than_the_stream_keeps_is_repaired_from_recent_changes_then_followed_after(
    wikidata: StandInWikidata, stream: StandInEventStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recent_changes_module, "LIMIT", 1)  # a page a change: the continuation is followed
    stored(wikidata, 1, 2, 3)
    now = time.time()
    save_position(0, now - 8 * 86400)  # the stream keeps 7 days
    wikidata.add_recent_change("Q1", 2001, iso(now - 8 * 86400 + 3600))
    wikidata.add_recent_change("Q2", 2002, iso(now - 86400))
    wikidata.add_recent_change("Q3", 0, iso(now - 60), kind="log", log_action="delete")
    stream.edit("Q9", 2009, wiki="enwiki")
    last = stream.edit("Q1", 2001)  # read again on the stream: changes nothing
    with following():
        wait_until(lambda: saved_offset() == last)
    assert revisions() == {"Q1": 2001, "Q2": 2002}
    assert ImportOutcome.objects.get(pk="Q3").error == follower_module.DELETED
    assert wikidata.count("Q1") == 1
    asked = [urllib.parse.parse_qs(urllib.parse.urlsplit(r.path).query) for r in wikidata.requests
             if "list=recentchanges" in r.path]  # fmt: skip
    assert len(asked) == 3
    assert {key: value[0] for key, value in asked[0].items() if key.startswith("rc")} == {
        "rcnamespace": "0|120|146", "rcprop": "title|ids|timestamp|loginfo", "rclimit": "1",
        "rcdir": "newer", "rcstart": iso(now - 8 * 86400), "rcend": asked[0]["rcend"][0],
    }  # fmt: skip
    assert [query.get("rccontinue") is not None for query in asked] == [False, True, True]
    # The stream cannot resume at the old position: it starts from the repair's end.
    (connection_,) = stream.requests
    assert "Last-Event-Id" not in connection_.headers
    assert "?since=" in connection_.path


def test_a_position_older_than_the_recent_changes_keep_stops_the_command_saying_what_to_run(
    stream: StandInEventStream,
) -> None:
    save_position(5, time.time() - 31 * 86400)
    with pytest.raises(CommandError, match=r"run refresh_wikidata .* or a dump import"):
        call_command("follow_wikidata", stdout=io.StringIO())
    assert stream.requests == []
    assert saved_offset() == 5


def test_a_stream_down_for_longer_than_the_setting_is_repaired_from_recent_changes(
    wikidata: StandInWikidata, stream: StandInEventStream, settings: Any
) -> None:
    settings.WIKIDATA_FOLLOW_REPAIR_AFTER = 0.5  # 300 s in production
    stored(wikidata, 1, 2)
    now = time.time()
    save_position(5, now - 600)
    wikidata.add_recent_change("Q1", 2001, iso(now - 300))
    stream.refuse(503, times=10_000)
    with following():
        wait_until(lambda: revisions()["Q1"] == 2001)
    assert revisions() == {"Q1": 2001, "Q2": 1002}
    assert saved_offset() == 5  # the stream, once back, resumes where it stopped
    assert len(stream.requests) >= 2
