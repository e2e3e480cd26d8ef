"""``core.broker``: kombu's Redis transport on a full Redis loses no message it takes.

A Redis of the test's own, made full (``maxmemory`` below what it uses, ``noeviction``) once the
messages are queued; kombu's own client takes them, as a worker's consumer does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue

from core.broker import TRANSPORT, broker_transport
from tests.production.conftest import RedisServer

QUEUE: Any = Queue("full", Exchange("full", type="direct"), routing_key="full")
# Below what the Redis uses once the messages are queued: a taken message frees less than this.
SLACK = 64 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def connect(server: RedisServer) -> Any:  # kombu's stubs lack default_channel and take no transport name
    return Connection(server.url, transport=TRANSPORT)  # type: ignore[arg-type]


def send(server: RedisServer, *bodies: str) -> None:
    with connect(server) as connection:
        producer = Producer(connection)
        for body in bodies:
            producer.publish(body, declare=[QUEUE], exchange=QUEUE.exchange, routing_key="full")


def fill(server: RedisServer) -> Any:
    """Make the Redis full: it refuses every write; return a client of the test's own."""
    client: Any = server.client()  # redis-py's stubs type every answer as maybe awaitable
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - SLACK)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", "a write")
    return client


def take(connection: Any) -> Any:
    """Take one message without acknowledging it, as a worker's consumer does (with its backup copy)."""
    message = QUEUE(connection.default_channel).get(no_ack=False)
    assert message is not None, "the queue is empty"
    return message


def drained(server: RedisServer) -> list[str]:
    """Give the Redis room again, and take every message left, acknowledging each; return their bodies."""
    server.client().config_set("maxmemory", 0)
    bodies = []
    with connect(server) as connection:
        while (message := QUEUE(connection.default_channel).get(no_ack=False)) is not None:
            bodies.append(message.payload)
            message.ack()
    return sorted(bodies)


def test_a_message_taken_on_a_full_redis_goes_back_to_its_queue_when_the_connection_closes_unacknowledged(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: taking it raised OutOfMemoryError (its backup copy refused), and the message was gone."""
    send(server, "a", "b", "c")
    client = fill(server)
    with connect(server) as connection:
        message = take(connection)
        assert client.llen("full") == 2
        assert client.hlen("unacked") == 0  # no backup copy: the Redis refused it
        client.config_set("maxmemory", 0)  # the other workers made room meanwhile
    assert client.llen("full") == 3  # put back as the connection closed
    assert f"message {message.delivery_tag} runs without its backup copy" in caplog.text
    assert "this worker started on a full Redis" in caplog.text
    assert drained(server) == ["a", "b", "c"]


def test_a_message_taken_on_a_full_redis_and_rejected_goes_back_to_its_queue_once_there_is_room(
    server: RedisServer,
) -> None:
    send(server, "a", "b", "c")
    client = fill(server)
    with connect(server) as connection:
        take(connection).reject(requeue=True)
        assert client.llen("full") == 2  # still full: kept in memory
        take(connection).ack()  # acknowledged with no copy to delete: nothing to write
        client.config_set("maxmemory", 0)
        connection.default_channel.qos.restore_visible()  # the worker's periodic round
        assert client.llen("full") == 2  # "a" or "b" is back, the other was acknowledged
    assert len(drained(server)) == 2


def test_a_message_acknowledged_on_a_full_redis_has_its_backup_copy_deleted(server: RedisServer) -> None:
    """Before: the acknowledgement's MULTI was refused (OutOfMemoryError), and the copy ran again later."""
    send(server, "a", "b")
    with connect(server) as connection:
        message = take(connection)  # with room: its backup copy is written
        client = fill(server)
        assert client.hlen("unacked") == 1
        message.ack()
        assert client.hlen("unacked") == 0
        assert client.zcard("unacked_index") == 0
    assert drained(server) == ["b"]


def test_a_consumer_starts_on_a_full_redis_whose_queue_was_never_bound(server: RedisServer) -> None:
    """Its binding waits in memory, where its own routing finds it, and is written once there is room."""
    client: Any = server.client()
    client.lpush("full", b"filler")  # a queue some other process filled, never bound here
    fill(server)
    with connect(server) as connection:
        channel: Any = connection.default_channel
        QUEUE(channel).declare()
        assert not client.exists("_kombu.binding.full")
        assert list(channel._lookup("full", "full")) == ["full"]
        client.config_set("maxmemory", 0)
        channel.qos.restore_visible()  # the worker's periodic round
        assert client.smembers("_kombu.binding.full") == {b"full\x06\x16\x06\x16full"}


def test_broker_transport_is_this_one_for_redis_only() -> None:
    assert broker_transport("redis://127.0.0.1:6379/0") == "core.broker:Transport"
    assert broker_transport("rediss://:p@example.com:6380") == "core.broker:Transport"
    assert broker_transport("amqp://guest:guest@127.0.0.1:5672//") is None
    assert broker_transport("memory://") is None
