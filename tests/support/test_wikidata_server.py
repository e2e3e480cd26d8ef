"""The stand-in Wikidata answers like the real one, over real HTTP on loopback."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from wikidata.client import Client
from wikidata.entity import EntityId, EntityState

from tests.support.shared import SHARED
from tests.support.wikidata_server import USER_AGENT_POLICY_BODY, Fault, StandInWikidata

ROOT = Path(__file__).resolve().parents[2]

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real Wikidata documents not found at {SHARED} (outside the repository)"
)

# No proxy: loopback must not go through one. Not urllib's global opener either, nor one
# shared with a wikidata Client, which overwrites the User-Agent of the opener it uses.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

STUTTGART = {
    "type": "item",
    "id": "Q1022",
    "labels": {"en": {"language": "en", "value": "Stuttgart"}},
    "descriptions": {"en": {"language": "en", "value": "capital of Baden-Württemberg, Germany"}},
    "aliases": {},
    "claims": {},
    "sitelinks": {},
}


def item(entity_id: str, label: str = "") -> dict[str, Any]:
    return {
        "type": "item",
        "id": entity_id,
        "labels": {"en": {"language": "en", "value": label or entity_id}},
    }


def new_client(wd: StandInWikidata) -> Client:
    return Client(wd.base_url, opener=urllib.request.build_opener(urllib.request.ProxyHandler({})))


def port(wd: StandInWikidata) -> int:
    return urllib.parse.urlsplit(wd.base_url).port or 80


def shared(name: str) -> Any:
    return json.loads((SHARED / name).read_text())


def fetch(
    url: str, timeout: float = 5, headers: Mapping[str, str] | None = None
) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


@pytest.fixture(scope="module")
def server() -> Iterator[StandInWikidata]:
    with StandInWikidata() as stand_in:
        yield stand_in


@pytest.fixture
def wd(server: StandInWikidata) -> Iterator[StandInWikidata]:
    """The module's server, emptied around each test (starting one per test costs ~50 ms)."""
    server.reset()
    yield server
    server.reset()


def entity_data(wd: StandInWikidata, entity_id: str, **kwargs: Any) -> tuple[int, Message, bytes]:
    return fetch(f"{wd.base_url}wiki/Special:EntityData/{entity_id}.json", **kwargs)


def wbgetentities(wd: StandInWikidata, ids: str, extra: str = "") -> tuple[int, Message, Any]:
    code, headers, body = fetch(f"{wd.base_url}w/api.php?action=wbgetentities&ids={ids}&format=json{extra}")
    return code, headers, json.loads(body)


# Through the wikidata package


def test_client_loads_a_document(wd: StandInWikidata) -> None:
    wd.add_entity(STUTTGART)
    client = new_client(wd)
    entity = client.get(EntityId("Q1022"), load=True)
    assert entity.data == STUTTGART
    assert str(entity.label) == "Stuttgart"
    assert wd.requests[-1].path == "/wiki/Special:EntityData/Q1022.json"
    assert wd.requests[-1].headers["User-Agent"].startswith("WikidataClientPython")


def test_client_follows_a_redirect_to_the_target(wd: StandInWikidata) -> None:
    karlsruhe = item("Q1040", "Karlsruhe")
    wd.add_entity(karlsruhe)
    wd.add_redirect("Q32063953", "Q1040")
    entity = new_client(wd).get(EntityId("Q32063953"), load=True)
    assert entity.id == "Q1040"
    assert entity.data == karlsruhe
    assert wd.count("Q32063953") == 1


def test_client_treats_invalid_id_as_non_existent_and_raises_on_404(wd: StandInWikidata) -> None:
    client = new_client(wd)
    assert client.get(EntityId("bogus"), load=True).state is EntityState.non_existent
    with pytest.raises(urllib.error.HTTPError) as raised:
        client.get(EntityId("Q404"), load=True)
    raised.value.close()
    assert raised.value.code == 404


# Special:EntityData


def test_entity_data_wraps_the_document_byte_for_byte(wd: StandInWikidata) -> None:
    wd.add_entity(STUTTGART)
    code, headers, body = entity_data(wd, "Q1022")
    assert code == 200
    assert headers.get_content_type() == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    assert body == ('{"entities": {"Q1022": ' + json.dumps(STUTTGART) + "}}").encode()


def test_entity_data_serves_a_snapshot_of_the_document(wd: StandInWikidata) -> None:
    document = item("Q1", "universe")
    wd.add_entity(document)
    document["labels"] = {}
    assert json.loads(entity_data(wd, "Q1")[2])["entities"]["Q1"]["labels"]["en"]["value"] == "universe"


def test_entity_data_redirect_answers_with_the_target_keyed_by_the_target(wd: StandInWikidata) -> None:
    wd.add_entity(item("Q1040"))
    wd.add_redirect("Q32063953", "Q1040")
    code, _, body = entity_data(wd, "Q32063953")
    assert code == 200
    assert json.loads(body) == {"entities": {"Q1040": item("Q1040")}}


def test_unknown_removed_and_malformed_ids(wd: StandInWikidata) -> None:
    assert entity_data(wd, "Q6")[0] == 404
    wd.add_entity(item("Q6"))
    assert entity_data(wd, "Q6")[0] == 200
    wd.remove("Q6")
    assert entity_data(wd, "Q6")[0] == 404
    for malformed in ("bogus", "Q0", "q42", "Q-1", "X1"):
        code, _, body = entity_data(wd, malformed)
        assert code == 400, malformed
        assert b"Invalid ID" in body
    assert wd.count("bogus") == 1


def test_other_paths_are_404(wd: StandInWikidata) -> None:
    assert fetch(f"{wd.base_url}wiki/Q42")[0] == 404


def test_add_entity_and_add_redirect_check_ids(wd: StandInWikidata) -> None:
    with pytest.raises(ValueError, match="valid 'id'"):
        wd.add_entity({"type": "item"})
    with pytest.raises(ValueError, match="not an entity id"):
        wd.add_redirect("Q1", "nope")
    with pytest.raises(ValueError, match="itself"):
        wd.add_redirect("Q1", "Q1")


# Faults


@pytest.mark.parametrize(
    ("fault", "code", "header", "body"),
    [
        (Fault.status(429, headers={"Retry-After": "2"}), 429, ("Retry-After", "2"), b"Too Many Requests"),
        (Fault.status(500), 500, None, b"Internal Server Error"),
        (Fault.status(502, b"upstream gone"), 502, None, b"upstream gone"),
        (Fault.status(503), 503, None, b"Service Unavailable"),
        (Fault.status(403), 403, None, USER_AGENT_POLICY_BODY),
        (Fault.status(404), 404, None, b"Not Found"),
        (Fault.status(400), 400, None, b"Invalid ID"),
        (Fault.not_json(), 200, ("Content-Type", "text/html; charset=utf-8"), b"<!DOCTYPE html>"),
        (
            Fault.wrong_shape({"foo": 1}),
            200,
            ("Content-Type", "application/json; charset=utf-8"),
            b'{"foo": 1}',
        ),
        (Fault.wrong_shape([]), 200, None, b"[]"),
    ],
    ids=["429", "500", "502", "503", "403", "404", "400", "not_json", "wrong_shape_dict", "wrong_shape_list"],
)
def test_a_fault_answers_once_then_the_normal_answer_resumes(
    wd: StandInWikidata, fault: Fault, code: int, header: tuple[str, str] | None, body: bytes
) -> None:
    wd.add_entity(item("Q1"))
    wd.add_fault("Q1", fault)
    got_code, headers, got_body = entity_data(wd, "Q1")
    assert got_code == code
    assert body in got_body
    assert int(headers["Content-Length"]) == len(got_body)
    if header is not None:
        assert headers[header[0]] == header[1]
    assert entity_data(wd, "Q1")[0] == 200


def test_not_json_is_not_json(wd: StandInWikidata) -> None:
    wd.add_fault(None, Fault.not_json())
    with pytest.raises(json.JSONDecodeError):
        json.loads(entity_data(wd, "Q1")[2])


def test_reset_drops_the_connection(wd: StandInWikidata) -> None:
    wd.add_entity(item("Q1"))
    wd.add_fault("Q1", Fault.reset())
    with pytest.raises(ConnectionError):
        entity_data(wd, "Q1")
    assert entity_data(wd, "Q1")[0] == 200
    assert wd.count("Q1") == 2


def test_hang_delays_the_normal_answer(wd: StandInWikidata) -> None:
    wd.add_entity(item("Q1"))
    wd.add_fault("Q1", Fault.hang(0.2))
    started = time.monotonic()
    assert entity_data(wd, "Q1")[0] == 200
    assert time.monotonic() - started >= 0.2


def test_hang_makes_a_client_time_out_without_noise(
    wd: StandInWikidata, capfd: pytest.CaptureFixture[str]
) -> None:
    wd.add_entity(item("Q1"))
    wd.add_fault("Q1", Fault.hang(0.3))
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        entity_data(wd, "Q1", timeout=0.1)
    time.sleep(0.3)  # the handler now writes to a connection the client closed
    assert entity_data(wd, "Q1")[0] == 200
    assert capfd.readouterr().err == ""


def test_times_and_queue_order(wd: StandInWikidata) -> None:
    wd.add_entity(item("Q1"))
    wd.add_entity(item("Q2"))
    wd.add_fault("Q1", Fault.status(503), times=2)
    wd.add_fault("Q1", Fault.status(502))
    codes = [entity_data(wd, "Q1")[0]]
    assert entity_data(wd, "Q2")[0] == 200  # another id is not concerned
    codes += [entity_data(wd, "Q1")[0] for _ in range(3)]
    assert codes == [503, 503, 502, 200]
    assert wd.count("Q1") == 4
    assert wd.count("Q2") == 1
    with pytest.raises(ValueError, match="at least 1"):
        wd.add_fault("Q1", Fault.status(500), times=0)


def test_a_fault_for_any_request(wd: StandInWikidata) -> None:
    wd.add_entity(item("Q2"))
    wd.add_fault(None, Fault.status(500), times=2)
    assert entity_data(wd, "Q2")[0] == 500
    assert fetch(f"{wd.base_url}w/api.php?action=wbgetentities&ids=Q2")[0] == 500
    assert entity_data(wd, "Q2")[0] == 200


def test_latency_and_concurrency(wd: StandInWikidata) -> None:
    wd.add_entity(item("Q1"))
    wd.latency = 0.3
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(lambda _: entity_data(wd, "Q1")[0], range(6)))
    elapsed = time.monotonic() - started
    assert codes == [200] * 6
    assert 0.3 <= elapsed < 1.2  # six requests side by side, not one after another
    wd.latency = 0.0
    started = time.monotonic()
    entity_data(wd, "Q1")
    assert time.monotonic() - started < 0.2


def test_keep_alive_reuses_the_connection(wd: StandInWikidata) -> None:
    wd.add_entity(item("Q1"))
    connection = http.client.HTTPConnection("127.0.0.1", port(wd), timeout=5)
    try:
        connection.request("GET", "/wiki/Special:EntityData/Q1.json")
        first = connection.getresponse()
        first.read()
        sock = connection.sock
        connection.request("GET", "/wiki/Special:EntityData/Q404.json")
        second = connection.getresponse()
        second.read()
        assert (first.status, second.status) == (200, 404)
        assert connection.sock is sock
    finally:
        connection.close()


def test_request_log(wd: StandInWikidata) -> None:
    wd.add_entity(item("Q1"))
    before = time.monotonic()
    entity_data(wd, "Q1", headers={"User-Agent": "ImporterTests/1.0 (test@example.org)"})
    fetch(f"{wd.base_url}w/api.php?action=wbgetentities&ids=Q1|Q2&format=json&maxlag=5")
    first, second = wd.requests
    assert first.path == "/wiki/Special:EntityData/Q1.json"
    assert first.entity_ids == ("Q1",)
    assert first.headers["User-Agent"] == "ImporterTests/1.0 (test@example.org)"
    assert second.path == "/w/api.php?action=wbgetentities&ids=Q1|Q2&format=json&maxlag=5"
    assert second.entity_ids == ("Q1", "Q2")
    assert second.headers["User-Agent"].startswith("Python-urllib/")
    assert before <= first.time <= second.time <= time.monotonic()
    assert (wd.count("Q1"), wd.count("Q2"), wd.count("Q3")) == (2, 1, 0)


def test_reset_forgets_everything(wd: StandInWikidata) -> None:
    wd.add_entity(item("Q1"))
    wd.add_redirect("Q2", "Q1")
    wd.add_fault(None, Fault.status(500))
    wd.latency = 0.5
    wd.reset()
    assert (wd.requests, wd.latency) == ([], 0.0)
    assert entity_data(wd, "Q1")[0] == 404
    assert entity_data(wd, "Q2")[0] == 404


# wbgetentities


def test_wbgetentities_known_missing_and_redirected(wd: StandInWikidata) -> None:
    wd.add_entity(item("Q1"))
    wd.add_entity(item("Q1040"))
    wd.add_redirect("Q32063953", "Q1040")
    code, headers, body = wbgetentities(wd, "Q1|Q6|Q32063953", "&maxlag=5")
    assert code == 200
    assert headers.get_content_type() == "application/json"
    assert body == {
        "entities": {
            "Q1": item("Q1"),
            "Q6": {"id": "Q6", "missing": ""},
            # Keyed by the id asked for, unlike Special:EntityData.
            "Q32063953": {**item("Q1040"), "redirects": {"from": "Q32063953", "to": "Q1040"}},
        },
        "success": 1,
    }


def test_wbgetentities_maxlag(wd: StandInWikidata) -> None:
    wd.add_entity(item("Q1"))
    wd.add_entity(item("Q2"))
    wd.add_fault("Q2", Fault.maxlag())
    code, headers, body = wbgetentities(wd, "Q1|Q2", "&maxlag=5")
    assert code == 200
    assert headers["Retry-After"] == "5"
    assert headers["MediaWiki-API-Error"] == "maxlag"
    assert body["error"]["code"] == "maxlag"
    assert "seconds lagged" in body["error"]["info"]
    assert wbgetentities(wd, "Q1|Q2", "&maxlag=5")[2]["success"] == 1


def test_wbgetentities_errors(wd: StandInWikidata) -> None:
    assert wbgetentities(wd, "Q1|bogus")[2]["error"]["code"] == "no-such-entity"
    assert wbgetentities(wd, "")[2]["error"]["code"] == "param-missing"
    assert wbgetentities(wd, "|".join(f"Q{n}" for n in range(1, 52)))[2]["error"]["code"] == "toomanyvalues"
    code, _, body = fetch(f"{wd.base_url}w/api.php?action=query&format=json")
    assert (code, json.loads(body)["error"]["code"]) == (200, "badvalue")


# Against real Wikidata documents


@needs_shared
@pytest.mark.parametrize(
    "name", ["Q42.json", "Q2112.json", "P279.json", "P8098.json", "L525.json", "L3354.json", "L3872.json"]
)
def test_a_real_document_comes_back_unchanged(wd: StandInWikidata, name: str) -> None:
    document = shared(name)
    wd.add_entity(document)
    code, _, body = entity_data(wd, document["id"])
    assert code == 200
    assert json.loads(body) == {"entities": {document["id"]: document}}


@needs_shared
def test_a_real_document_through_the_client(wd: StandInWikidata) -> None:
    document = shared("Q42.json")
    wd.add_entity(document)
    entity = new_client(wd).get(EntityId("Q42"), load=True)
    assert entity.data == document
    assert str(entity.label) == "Douglas Adams"


@needs_shared
def test_wbgetentities_matches_a_real_response_with_a_missing_item(wd: StandInWikidata) -> None:
    real = shared("wbgetentities_Q6-Q42-P31.json")
    wd.add_entity(real["entities"]["Q42"])
    wd.add_entity(real["entities"]["P31"])
    assert wbgetentities(wd, "Q6|Q42|P31")[2] == real


@needs_shared
def test_wbgetentities_matches_a_real_redirect_response(wd: StandInWikidata) -> None:
    real = shared("Q32063953.json")
    target = {key: value for key, value in real["entities"]["Q32063953"].items() if key != "redirects"}
    wd.add_entity(target)
    wd.add_redirect("Q32063953", "Q1040")
    answer = wbgetentities(wd, "Q32063953")[2]
    assert answer == real
    assert list(answer["entities"]["Q32063953"]) == list(real["entities"]["Q32063953"])  # same key order


@needs_shared
def test_wbgetentities_errors_are_shaped_like_real_ones(wd: StandInWikidata) -> None:
    real = shared("wbgetentities_error_no-such-entity.json")
    ours = wbgetentities(wd, "bogus")[2]
    assert set(ours) == set(real)
    assert set(ours["error"]) == set(real["error"])
    for key in ("code", "info", "messages"):
        assert ours["error"][key] == real["error"][key]

    wd.add_fault(None, Fault.maxlag())
    maxlag = wbgetentities(wd, "Q1", "&maxlag=5")[2]
    assert set(shared("api_error_maxlag.json")["error"]) <= set(maxlag["error"])
    full = shared("api_error_maxlag_full.json")
    assert set(maxlag) == set(full)
    assert set(maxlag["error"]) <= set(full["error"])


# Life cycle (servers of their own)


def test_stop_is_prompt_with_a_hanging_request_and_an_idle_connection() -> None:
    stand_in = StandInWikidata().start()
    idle = http.client.HTTPConnection("127.0.0.1", port(stand_in), timeout=5)
    idle.request("GET", "/nothing")
    idle.getresponse().read()  # the connection stays open, its handler waiting for more
    stand_in.add_fault(None, Fault.hang(30))
    errors: list[BaseException] = []

    def hung_request() -> None:
        try:
            fetch(f"{stand_in.base_url}wiki/Special:EntityData/Q1.json", timeout=10)
        except (OSError, http.client.HTTPException) as error:
            errors.append(error)

    client = threading.Thread(target=hung_request)
    client.start()
    while len(stand_in.requests) < 2:
        time.sleep(0.01)
    started = time.monotonic()
    stand_in.stop()
    assert time.monotonic() - started < 1
    client.join(timeout=2)
    idle.close()
    assert not client.is_alive()
    assert len(errors) == 1
    with pytest.raises(urllib.error.URLError, match="refused"):
        fetch(f"{stand_in.base_url}wiki/Special:EntityData/Q1.json", timeout=1)


def test_start_twice_and_restart() -> None:
    stand_in = StandInWikidata()
    with stand_in:
        with pytest.raises(RuntimeError, match="already running"):
            stand_in.start()
        stand_in.add_entity(item("Q1"))
    stand_in.stop()  # a second stop is harmless
    with stand_in:
        assert stand_in.base_url.startswith("http://127.0.0.1:")
        assert entity_data(stand_in, "Q1")[0] == 200
