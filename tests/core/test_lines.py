"""core.lines: a file's lines within a bound, the one reader of id files and dump chunks."""

from __future__ import annotations

import io

from core.lines import SKIPPED_PIECE, BoundedLine, bounded_lines


def test_lines_within_the_bound_are_whole_and_longer_ones_keep_only_their_head() -> None:
    long = b"x" * (3 * SKIPPED_PIECE + 5)
    text = b"abc\n" + b"12345\n" + long + b"\n" + b"last"
    assert list(bounded_lines(io.BytesIO(text), max_bytes=5)) == [
        BoundedLine(b"abc\n", 3, 4),
        BoundedLine(b"12345\n", 5, 6),  # max_bytes of text and its line break: whole
        BoundedLine(b"xxxxxx", len(long), len(long) + 1),
        BoundedLine(b"last", 4, 4),  # no line break at the end
    ]


def test_a_size_ends_the_lines_there_and_a_file_shorter_than_it_shows_in_what_was_read() -> None:
    text = b"one\ntwo\nthree\n"
    assert [line.head for line in bounded_lines(io.BytesIO(text), max_bytes=10, size=8)] == [
        b"one\n",
        b"two\n",
    ]
    cut = list(bounded_lines(io.BytesIO(text), max_bytes=10, size=100))
    assert sum(line.read for line in cut) == len(text) < 100


def test_an_endless_line_is_read_in_pieces_without_being_kept() -> None:
    class Endless(io.RawIOBase):
        def __init__(self, size: int) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            count = min(len(buffer), self.left)
            buffer[:count] = b"y" * count
            self.left -= count
            return count

    lines = list(bounded_lines(io.BufferedReader(Endless(64 * SKIPPED_PIECE)), max_bytes=100))
    assert lines == [BoundedLine(b"y" * 101, 64 * SKIPPED_PIECE, 64 * SKIPPED_PIECE)]
