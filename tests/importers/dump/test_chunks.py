"""Reading a chunk's lines: numbered, an overlong one dropped unheld, a missing file named."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from importers.dump.chunks import ChunkUnreadable, read_lines


def test_lines_are_numbered_from_the_chunks_first_line_and_an_overlong_one_is_none(tmp_path: Path) -> None:
    path = tmp_path / "chunk.json"
    path.write_bytes(b'{"a":1},\n' + b"x" * 100 + b",\n" + b'{"b":2}')
    lines = list(read_lines(str(path), 0, path.stat().st_size, 7, max_bytes=50))
    assert lines == [(7, b'{"a":1},\n'), (8, None), (9, b'{"b":2}')]


def test_a_byte_range_of_a_plain_dump_is_read_alone(tmp_path: Path) -> None:
    path = tmp_path / "dump.json"
    path.write_bytes(b"[\nfirst,\nsecond,\nthird\n]\n")
    start = len(b"[\nfirst,\n")
    end = start + len(b"second,\nthird\n")
    assert list(read_lines(str(path), start, end, 3, max_bytes=100)) == [(3, b"second,\n"), (4, b"third\n")]


def test_a_line_of_50_mb_without_a_line_end_is_dropped_in_the_memory_of_a_short_one(tmp_path: Path) -> None:
    path = tmp_path / "junk.json"
    with path.open("wb") as file:
        for _ in range(50):
            file.write(b"j" * 1024 * 1024)
    tracemalloc.start()
    try:
        lines = list(read_lines(str(path), 0, path.stat().st_size, 1, max_bytes=1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [(1, None)]
    assert peak < 8 * 1024 * 1024


def test_a_missing_or_short_chunk_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        ChunkUnreadable, match="does not exist: workers must see the dump and its chunk directory"
    ):
        list(read_lines(str(tmp_path / "gone.json"), 0, 10, 1, max_bytes=100))
    path = tmp_path / "short.json"
    path.write_bytes(b"[\n")
    with pytest.raises(ChunkUnreadable, match="ends at byte 2, before the chunk's end"):
        list(read_lines(str(path), 0, 10, 1, max_bytes=100))
