"""A file's lines, read within a bound: a stranger's file may hold a line of any length."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, NamedTuple

__all__ = ("SKIPPED_PIECE", "BoundedLine", "bounded_lines")

# The rest of an overlong line is read and dropped in pieces of this size.
SKIPPED_PIECE = 1 << 20


class BoundedLine(NamedTuple):
    """One line: its first bytes, its length and how many bytes were read for it."""

    head: bytes  # at most max_bytes + 1 bytes of it, with its line break if they hold it
    length: int  # the whole line's bytes, its line break left out
    read: int  # the whole line's bytes, its line break counted


def bounded_lines(file: IO[bytes], max_bytes: int, size: int | None = None) -> Iterator[BoundedLine]:
    """Yield the lines of the next ``size`` bytes of ``file`` (None: to its end), keeping at most
    ``max_bytes + 1`` bytes of each: a line is whole in ``head`` when its ``length <= max_bytes``.

    The rest of a longer line is read and dropped in pieces, so memory stays bounded whatever the
    file holds. It stops where the file ends, also before ``size`` bytes: the ``read`` of the lines
    yielded tells a caller that needs them all whether they were.
    """
    done = 0

    def room(wanted: int) -> int:
        return wanted if size is None else min(wanted, size - done)

    while size is None or done < size:
        head = file.readline(room(max_bytes + 1))
        if not head:
            return
        done += len(head)
        read, piece = len(head), head
        while len(head) > max_bytes and not piece.endswith(b"\n") and (size is None or done < size):
            piece = file.readline(room(SKIPPED_PIECE))
            if not piece:
                break
            done += len(piece)
            read += len(piece)
        yield BoundedLine(head, read - piece.endswith(b"\n"), read)
