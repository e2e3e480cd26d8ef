"""What a worker's main process refuses before its pool, judged on kombu messages built here.

The same refusals on real workers over Redis and RabbitMQ: tests/production/test_message_faults.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kombu import Message

from core.receiving import _refusal

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
CALL = [["Recorder", "echo", [1], {}], {}, EMBED]


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
