"""kombu's Redis transport, changed so that a worker started on a full Redis starts and drains it.

A Redis at its ``maxmemory`` with ``noeviction`` (Heroku's mini Key-Value Store: 25 MB) refuses
every write that could take memory, and every command queued in a MULTI; reads and deletions
outside one go through. kombu's transport writes as a worker starts (each queue's binding; a
lock before it looks for messages to restore) and as it takes each message (its backup copy in
``unacked``, in a MULTI): the worker died at once (``Unrecoverable error: OutOfMemoryError``),
and nothing drained the queue that filled the Redis. Here:

- a binding the Redis refuses is kept in memory, where this connection's routing reads it too,
  and written once there is room;
- a message whose backup copy is refused runs without one: it is already off the queue (BRPOP
  took it), and the only other choice was to lose it. It goes back to the queue from memory if
  it is rejected or not done when the worker stops;
- an acknowledgement deletes the backup copy outside a MULTI, which a full Redis allows, and
  counting a queue's messages reads outside one too;
- looking for unacknowledged messages to restore waits for the next round.

The caveats: while the Redis is full, a worker that dies (SIGKILL, a lost machine) loses the
messages it took without a backup copy; each is logged when taken. One that stops while the
Redis still refuses to take such a message back reports it as kombu does (``UNABLE TO RESTORE``,
and a dump of it in a temporary file). The senders still get the Redis's refusal
(``EnqueueFailed``): only what drains a queue is let through.
"""

from __future__ import annotations

import logging
from typing import Any

# Neither is in kombu's type stubs: the classes below subclass untyped ones.
from kombu.transport import redis as kombu_redis  # type: ignore[attr-defined]
from kombu.transport import virtual  # type: ignore[attr-defined]
from redis.exceptions import OutOfMemoryError

__all__ = ("TRANSPORT", "Channel", "QoS", "Transport", "broker_transport")

logger = logging.getLogger(__name__)

# The value of CELERY_BROKER_TRANSPORT that selects this transport.
TRANSPORT = "core.broker:Transport"


def broker_transport(broker_url: str) -> str | None:
    """The transport for ``broker_url``: this module's for Redis, else None (the URL's scheme decides)."""
    return TRANSPORT if broker_url.startswith(("redis://", "rediss://")) else None


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's acknowledgement emulation, going on without backup copies while the Redis is full."""

    channel: Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Delivery tags of the messages taken while the Redis refused their backup copy.
        self._unbacked: set[str] = set()
        # Messages to put back on their queue once the Redis takes them (rejected while it was full).
        self._homeless: list[tuple[Any, bool]] = []

    def append(self, message: Any, delivery_tag: str) -> None:
        transport = self.channel.connection
        try:
            super().append(message, delivery_tag)
            transport.full = False
        except OutOfMemoryError as error:
            # The MULTI was refused as a whole: no copy, no index entry. The message is ours alone.
            transport.refused(error, "a message's backup copy")
            virtual.QoS.append(self, message, delivery_tag)
            self._unbacked.add(delivery_tag)
            logger.warning(
                "Redis is full: message %s runs without its backup copy in 'unacked' "
                "(lost if this worker dies before it is acknowledged)",
                message.headers.get("id", delivery_tag),
            )
        finally:
            transport.taken = True

    def ack(self, delivery_tag: str) -> None:
        if delivery_tag in self._unbacked:
            self._unbacked.discard(delivery_tag)
        else:
            self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if delivery_tag in self._unbacked:
            self._unbacked.discard(delivery_tag)
            if requeue:
                self._put_back_or_keep(self._delivered[delivery_tag], leftmost=True)
        elif requeue:
            try:
                self.restore_by_tag(delivery_tag, leftmost=True)
            except OutOfMemoryError:
                logger.warning(
                    "Redis is full: message %s goes back to its queue from its backup copy, after "
                    "the visibility timeout",
                    delivery_tag,
                )
        else:
            self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        self._put_back_homeless()
        self.channel.write_bindings()
        try:
            super().restore_visible(*args, **kwargs)
        except OutOfMemoryError as error:  # its lock or a restore: the next round tries again
            self.channel.connection.refused(error, "the lock to restore unacknowledged messages")

    def restore_unacked(self, client: Any = None) -> list[tuple[Exception, Any]]:
        """Put every message not acknowledged back on its queue; return those the Redis refused.

        kombu's caller (``restore_unacked_once``, as the channel closes) reports the refused ones
        and dumps them to a file (``UNABLE TO RESTORE``). A message with a backup copy that cannot
        be restored now is left to its copy, restored after the visibility timeout.
        """
        refused: list[tuple[Exception, Any]] = []
        with self.channel.conn_or_acquire(client) as client:
            for tag, message in list(self._delivered.items()):
                try:
                    if tag in self._unbacked:
                        self._put_back(message, leftmost=False, client=client)
                    else:
                        self.restore_by_tag(tag, client=client)
                except OutOfMemoryError as error:
                    if tag in self._unbacked:
                        refused.append((error, message))
            for message, leftmost in self._homeless:
                try:
                    self._put_back(message, leftmost, client=client)
                except OutOfMemoryError as error:
                    refused.append((error, message))
        self._delivered.clear()
        self._unbacked.clear()
        self._homeless.clear()
        return refused

    def _forget(self, delivery_tag: str) -> None:
        """Delete a message's backup copy, then its index entry: not in a MULTI, which a full Redis refuses.

        An index entry left alone (a connection lost in between) is dropped by the next restore,
        which finds no copy to restore.
        """
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            pipe.hdel(self.unacked_key, delivery_tag).zrem(self.unacked_index_key, delivery_tag).execute()

    def _put_back(self, message: Any, leftmost: bool, client: Any = None) -> None:
        """Push ``message`` back on its queue as kombu restores one; raise the Redis's refusal."""
        delivery = message.delivery_info
        with self.channel.conn_or_acquire(client) as client:
            pipe = client.pipeline(transaction=False)
            # It queues the pushes (and logs what it cannot route); execute() raises a refusal.
            self.channel._do_restore_message(
                message._raw, delivery["exchange"], delivery["routing_key"], pipe, leftmost
            )
            pipe.execute()

    def _put_back_or_keep(self, message: Any, leftmost: bool) -> None:
        try:
            self._put_back(message, leftmost)
        except OutOfMemoryError:
            logger.warning("Redis is full: a rejected message is kept here until it can go back to its queue")
            self._homeless.append((message, leftmost))

    def _put_back_homeless(self) -> None:
        while self._homeless:
            message, leftmost = self._homeless[0]
            try:
                self._put_back(message, leftmost)
            except OutOfMemoryError:
                return
            self._homeless.pop(0)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel, whose queue bindings wait in memory while the Redis is full."""

    QoS = QoS
    connection: Transport

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        try:
            super()._queue_bind(exchange, routing_key, pattern, queue)
        except OutOfMemoryError as error:
            self.connection.refused(error, "a queue binding")
            key = self.keyprefix_queue % (exchange,)
            member = self.sep.join([routing_key or "", pattern or "", queue or ""])
            self.connection.unwritten_bindings.setdefault(key, set()).add(member)

    def write_bindings(self) -> None:
        """Write the bindings that the Redis refused; keep those it still refuses."""
        unwritten = self.connection.unwritten_bindings
        if not unwritten:
            return
        with self.conn_or_acquire() as client:
            for key, members in list(unwritten.items()):
                try:
                    client.sadd(key, *members)
                except OutOfMemoryError:
                    return
                del unwritten[key]
                logger.info("Redis has room again: queue bindings written to %s", key)

    def _size(self, queue: str) -> int:
        # kombu's counts each priority's list in a MULTI, which a full Redis refuses even for reads.
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            for priority in self.priority_steps:
                pipe.llen(self._q_for_pri(queue, priority))
            return sum(pipe.execute())

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        with self.conn_or_acquire() as client:  # as _size: not in a MULTI
            pipe = client.pipeline(transaction=False)
            for priority in self.priority_steps:
                pipe.exists(self._q_for_pri(queue, priority))
            return any(pipe.execute())

    def get_table(self, exchange: str) -> list[tuple[str, ...]]:
        """The exchange's bindings: those in the Redis, and those this connection could not write yet."""
        table: list[tuple[str, ...]] = super().get_table(exchange)
        unwritten = self.connection.unwritten_bindings.get(self.keyprefix_queue % (exchange,), set())
        return table + [
            binding for member in unwritten if (binding := tuple(member.split(self.sep))) not in table
        ]


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with this module's channel: it starts, and drains, on a full Redis."""

    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Binding keys and members that the Redis refused, to write once it has room.
        self.unwritten_bindings: dict[str, set[str]] = {}
        self.taken = False  # whether a message was taken: a refusal before is one at start-up
        self.full = False  # whether the last write that mattered was refused

    def refused(self, error: OutOfMemoryError, what: str) -> None:
        """Log, once until the Redis takes a backup copy again, that it is full and this worker goes on."""
        if self.full:
            return
        self.full = True
        logger.warning(
            "Redis is full (at %s, it refused %s: %s): this worker %s on a full Redis and takes "
            "messages anyway, to drain its queues and make room; what it could not write is written "
            "once there is room",
            self.client.as_uri(),  # without its password
            what,
            error,
            "runs" if self.taken else "started",
        )
