"""Slices of a dump gzipped as Wikimedia gzips it: planned at member starts, each inflated alone."""

from __future__ import annotations

import gzip
import io
import itertools
import zlib
from pathlib import Path
from typing import Any

import pytest
from django.core.management.base import CommandError

from bench import make_dump
from importers.dump.slices import Slice, SliceUnreadable, inflated, plan_slices
from importers.models import DumpChunk, WikidataEntity
from tests.importers.dump.test_command import counts, import_dump, lines_parsed
from tests.support.shared import NEEDS_SHARED

pytestmark = [pytest.mark.django_db, NEEDS_SHARED]


def members(*texts: bytes, level: int = 6) -> bytes:
    """Each text gzipped as a member of its own, concatenated, as Wikimedia's dump job writes them."""
    return b"".join(gzip.compress(text, compresslevel=level) for text in texts)


def member_starts(data: bytes) -> list[int]:
    """Where each gzip member of ``data`` starts, found by inflating them all in turn."""
    starts, position = [], 0
    while position < len(data):
        starts.append(position)
        inflater = zlib.decompressobj(31)
        inflater.decompress(data[position:])
        position = len(data) - len(inflater.unused_data)
    return starts


def wikimedia_dump(path: Path, entities: int, member_lines: int) -> Path:
    make_dump.write(path, entities, member_lines=member_lines)
    return path


def plan(path: Path, slice_bytes: int) -> list[Slice] | None:
    with path.open("rb") as file:
        return plan_slices(file, path.stat().st_size, slice_bytes)


def inflate(path: Path, piece: Slice) -> bytes:
    with path.open("rb") as file:
        return inflated(file, piece.start, piece.end).read()


def test_every_byte_is_in_one_slice_and_each_slice_inflates_alone_to_whole_lines(tmp_path: Path) -> None:
    path = wikimedia_dump(tmp_path / "dump.json.gz", 300, member_lines=20)
    slices = plan(path, 5_000)
    assert slices is not None
    assert len(slices) > 4
    assert {piece.start for piece in slices} <= set(member_starts(path.read_bytes()))
    assert (slices[0].start, slices[-1].end) == (0, path.stat().st_size)
    assert all(a.end == b.start for a, b in itertools.pairwise(slices))
    texts = [inflate(path, piece) for piece in slices]
    assert all(text.endswith(b"\n") for text in texts)
    assert b"".join(texts) == gzip.decompress(path.read_bytes())


def test_a_slice_is_at_least_one_member(tmp_path: Path) -> None:
    path = wikimedia_dump(tmp_path / "dump.json.gz", 100, member_lines=20)
    slices = plan(path, 1)
    assert slices is not None
    assert [piece.start for piece in slices] == member_starts(path.read_bytes())


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(gzip.compress(b"[\n{}\n]\n"), id="one-member"),  # gzip, or any other tool
        # bgzip: members of a fixed size, cut mid-line; the first holds more than "[".
        pytest.param(members(b'[\n{"type":"item","id"', b':"Q1"}\n]\n'), id="members-cut-mid-line"),
        pytest.param(b"[\n]\n", id="not-gzip"),
    ],
)
def test_a_file_not_gzipped_as_wikimedia_does_is_not_sliced(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "dump.json.gz"
    path.write_bytes(content)
    assert plan(path, 1) is None


def test_gzip_magic_bytes_inside_a_member_are_not_taken_for_a_member_start(tmp_path: Path) -> None:
    # Stored (level 0), the member holds its text as it is: the magic bytes of a gzip header,
    # in a bad line, stand in the file where no member starts.
    trap = b"\x1f\x8b\x08\x00" + b"x" * 100 + b"\n"
    path = tmp_path / "dump.json.gz"
    path.write_bytes(members(b"[\n", b'{"id":"Q1"},\n' + trap * 50, b'{"id":"Q2"}\n', b"]\n", level=0))
    slices = plan(path, 10)
    assert slices is not None
    assert [inflate(path, piece)[:1] for piece in slices] == [b"[", b"{", b"{", b"]"]


@pytest.mark.parametrize("cut", [1, 8, 30])
def test_a_slice_whose_last_member_is_cut_short_is_unreadable(tmp_path: Path, cut: int) -> None:
    path = wikimedia_dump(tmp_path / "dump.json.gz", 60, member_lines=20)
    slices = plan(path, 1)
    assert slices is not None
    piece = slices[2]
    with path.open("rb") as file, pytest.raises(SliceUnreadable, match=r"truncated or changed|corrupt"):
        inflated(file, piece.start, piece.end - cut).read()


def test_inflating_a_bomb_holds_one_piece_at_a_time(tmp_path: Path) -> None:
    """A member of 200 MB of one byte is 200 KB of gzip: read a line at a time, bounded."""
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = bomb.compress(b"[\n") + bomb.flush()
    body += members(b"x" * (200 * 1024 * 1024) + b"\n", level=9)
    path = tmp_path / "dump.json.gz"
    path.write_bytes(body)
    with path.open("rb") as file:
        stream = inflated(file, 0, len(body))
        assert stream.readline(10) == b"[\n"
        assert len(stream.readline(1000)) == 1000


# The command: slices sent, no chunk file written, the rows as from the same dump cut into chunks.


@pytest.fixture
def small_slices(settings: Any) -> None:
    settings.WIKIDATA_DUMP_SLICE_BYTES = 5_000  # a slice a member


def stored() -> dict[str, Any]:
    return {
        entity.pk: (entity.lastrevid, entity.label, entity.data) for entity in WikidataEntity.objects.all()
    }


def test_the_command_slices_a_wikimedia_dump_and_stores_what_the_chunked_one_stores(
    tmp_path: Path, small_slices: None
) -> None:
    whole = tmp_path / "whole" / "dump.json.gz"
    whole.parent.mkdir()
    make_dump.write(whole, 300, member_lines=None)
    out, _ = import_dump(whole)
    assert counts(out) == "300 entities read, 300 matched, 300 written, 0 unchanged, 0 bad lines"
    assert not any(chunk.is_slice for chunk in DumpChunk.objects.all())
    expected = stored()
    WikidataEntity.objects.all().delete()

    sliced = wikimedia_dump(tmp_path / "dump.json.gz", 300, member_lines=20)
    out, _ = import_dump(sliced)
    assert counts(out) == "300 entities read, 300 matched, 300 written, 0 unchanged, 0 bad lines"
    slices = DumpChunk.objects.filter(dump__path=str(sliced))
    assert len(slices) > 4
    assert all(chunk.is_slice for chunk in slices)
    assert sum(chunk.lines for chunk in slices) == 302  # "[", 300 entities, "]"
    assert list((tmp_path / "chunks").iterdir()) == []  # no chunk file was written
    assert stored() == expected


def test_a_rerun_over_a_sliced_dump_parses_no_line_and_writes_nothing(
    tmp_path: Path, small_slices: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = wikimedia_dump(tmp_path / "dump.json.gz", 120, member_lines=20)
    import_dump(path)
    parsed = lines_parsed(monkeypatch)
    out, _ = import_dump(path)
    assert counts(out) == "120 entities read, 120 matched, 0 written, 120 unchanged, 0 bad lines"
    assert parsed == []


def test_a_truncated_dump_fails_its_last_slice_with_a_clear_error_and_the_rest_is_imported(
    tmp_path: Path, small_slices: None
) -> None:
    path = wikimedia_dump(tmp_path / "dump.json.gz", 200, member_lines=20)
    path.write_bytes(path.read_bytes()[:-200])  # the "]" member and the end of the last entities'
    with pytest.raises(CommandError, match=r"Not every chunk was imported") as failed:
        import_dump(path)
    assert "does not end there: the file is truncated or changed" in str(failed.value)
    assert WikidataEntity.objects.count() == 180  # every slice but the last, whole
    assert DumpChunk.objects.filter(status="failed").count() == 1


def test_a_dump_rewritten_in_place_is_a_new_import_not_a_resumption(
    tmp_path: Path, small_slices: None
) -> None:
    path = wikimedia_dump(tmp_path / "dump.json.gz", 60, member_lines=20)
    out, _ = import_dump(path)
    wikimedia_dump(path, 80, member_lines=20)
    out, _ = import_dump(path)
    assert counts(out) == "80 entities read, 80 matched, 20 written, 60 unchanged, 0 bad lines"
    assert "Resuming" not in out


def test_the_first_bytes_of_a_sliced_dump_are_checked_like_any_other(tmp_path: Path) -> None:
    path = tmp_path / "dump.json.gz"
    path.write_bytes(members(b"[\n", b'{"type":"item","id":"Q1","lastrevid":1}\n', b"]\n"))
    out, _ = import_dump(path)
    assert counts(out) == "1 entities read, 1 matched, 1 written, 0 unchanged, 0 bad lines"
    assert io.BytesIO(gzip.decompress(path.read_bytes())).readline() == b"[\n"
