"""What a worker's main process refuses before its pool, judged on kombu messages built here.

The same refusals on real workers over Redis and RabbitMQ: tests/production/test_message_faults.py.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from kombu import Message

from core.receiving import _make_safe, _refusal

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
CALL: list[Any] = [["Recorder", "echo", [1], {}], {}, EMBED]


def message(body: Any = CALL, content_type: str = "application/json", **headers: Any) -> Message:
    """A message as a worker's consumer receives it: JSON only accepted."""
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return Message(
        body=raw,  # type: ignore[arg-type]  # kombu takes bytes too
        content_type=content_type,
        content_encoding="utf-8",
        headers={"id": "7f0c1a2e", "task": "core.call_importer_method", **headers},
        accept=["application/json"],
    )


def test_a_method_call_as_the_sender_makes_it_passes() -> None:
    assert _refusal(message(), None) is None


@pytest.mark.parametrize(
    ("received", "reason"),
    [
        (message(id="a\nINFO forged"), "its task id 'a\\nINFO forged' is not 1 to 255 printable ASCII"),
        (message(id=""), "its task id '' is not"),
        (message(id="x" * 256), "is not 1 to 255 printable ASCII characters"),
        (message(id=7), "its task id 7 is not"),
        (message("[[", content_type="application/json"), "its body cannot be decoded: DecodeError: "),
        (message(b"\x80", content_type="application/x-python-serialize"), "ContentDisallowed"),
        (message({"args": [], "kwargs": {}}), "its body is not [args, kwargs, embed]"),
        (message([[], {}]), "its body is not [args, kwargs, embed]"),
        (message([[], [], EMBED]), "its body is not [args, kwargs, embed]"),
        (message([[], {}, None]), "its body is not [args, kwargs, embed]"),
        (message("[" * 97 + "]" * 97), "its body is not"),  # shape first: a list of one
        # The body and its args take two levels.
        (message([[json.loads("[" * 95 + "]" * 95)], {}, EMBED]), "it nests deeper than 96 levels"),
        (message([[json.loads("[" * 94 + "]" * 94)], {}, EMBED]), None),
        (message(forged=json.loads("[" * 96 + "]" * 96)), "it nests deeper than 96 levels"),
    ],
)
def test_a_message_unsafe_for_the_main_process_is_refused_with_the_reason(
    received: Message, reason: str | None
) -> None:
    refusal = _refusal(received, None)
    if reason is None:
        assert refusal is None
    else:
        assert refusal is not None
        assert reason in refusal


def test_a_body_larger_than_the_limit_is_refused_unread(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.IMPORTER_MAX_MESSAGE_BYTES = 64 * 1024
    received = message([["Recorder", "echo", ["x" * 70_000], {}], {}, EMBED])
    monkeypatch.setattr(received, "decode", lambda: pytest.fail("the body was decoded"))
    assert _refusal(received, None) == (
        f"its body is {len(received.body or ''):,} bytes, beyond IMPORTER_MAX_MESSAGE_BYTES (65,536)"
    )


def test_a_message_of_celerys_protocol_1_is_refused() -> None:
    assert _refusal(message(), {"task": "core.call_importer_method", "args": []}) == (
        "it is not a message of Celery's task protocol 2"
    )


@pytest.mark.parametrize(
    ("shadow", "logged"),
    [
        ("Recorder.echo", "Recorder.echo"),  # as the sender names a call
        ("add\nCRITICAL forged", "'add\\nCRITICAL forged'"),
        ("Recorder.echo ", "'Recorder.echo '"),
        ("Récorder.echo", "'Récorder.echo'"),
        ("x" * 201, repr("x" * 201)[:200]),
        (["a", "list"], "['a', 'list']"),
        (None, None),  # Celery names it by the task then
    ],
)
def test_a_shadow_header_that_is_not_a_dotted_name_is_quoted(shadow: Any, logged: str | None) -> None:
    headers: dict[str, Any] = {"shadow": shadow}
    _make_safe(headers, CALL[0], LIMITS)
    assert headers["shadow"] == logged


LIMITS = SimpleNamespace(task_time_limit=660, task_soft_time_limit=600)  # as CELERY_TASK_*_TIME_LIMIT
STALL_BRIEFLY = ["Misbehaving", "stall_briefly", [1], {}]  # declares time_limit=2, soft_time_limit=1


@pytest.mark.parametrize(
    ("args", "asked", "limits"),
    [
        (CALL[0], [1000, 1000], [660, 600]),
        (CALL[0], None, [660, 600]),
        (CALL[0], [5, None], [5.0, 600]),  # lowered: kept
        (CALL[0], [5, 1.5], [5.0, 1.5]),
        (CALL[0], [0, -1], [660, 600]),
        (CALL[0], [float("nan"), float("inf")], [660, 600]),
        (CALL[0], ["5", True], [660, 600]),
        (CALL[0], "ab", [660, 600]),  # Celery would unpack it into two letters
        (CALL[0], [1, 2, 3], [660, 600]),
        (STALL_BRIEFLY, [1000, 1000], [2, 1]),
        (STALL_BRIEFLY, None, [2, 1]),
        (STALL_BRIEFLY, [1.5, 0.5], [1.5, 0.5]),
        ([42, *STALL_BRIEFLY], [1000, 1000], [2, 1]),  # in a chain, after the previous result
        (["Nope", "x", [], {}], [1000, 1000], [660, 600]),
        (["Misbehaving", "nope", [], {}], [1000, 1000], [660, 600]),
        ([[], {}, [], {}], [1000, 1000], [660, 600]),
    ],
)
def test_a_timelimit_header_lowers_the_time_limits_and_never_lifts_them(
    args: list[Any], asked: Any, limits: list[Any]
) -> None:
    headers = {"timelimit": asked}
    _make_safe(headers, args, LIMITS)
    assert headers["timelimit"] == limits
