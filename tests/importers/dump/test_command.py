"""``import_wikidata_dump`` in this process: real dumps, quirks, bad lines, filters, revisions, refusals."""

from __future__ import annotations

import bz2
import contextlib
import errno
import fcntl
import gzip
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from bench import make_dump
from core.exceptions import PoisonMessage, TaskFailed
from core.message import Message
from importers.dump import chunks, sending
from importers.dump.files import open_dump
from importers.dump.importer import WikidataDumpImporter
from importers.dump.lines import main_values
from importers.dump.locks import lock_key
from importers.importers import WikidataImporter
from importers.models import ChunkStatus, DumpChunk, DumpImport, WikidataEntity
from tests.support.shared import NEEDS_SHARED, SHARED
from tests.support.wikidata_server import StandInWikidata

ROW_FIELDS = ("wikidata_id", "entity_type", "label", "description", "data", "lastrevid", "modified")

# The dumps here are made of the real documents of ../shared/wikidata.
pytestmark = [pytest.mark.django_db, NEEDS_SHARED]


@pytest.fixture(autouse=True)
def small_chunks(settings: Any) -> None:
    """Chunks of a few lines, so that every dump here is cut into several."""
    settings.WIKIDATA_DUMP_CHUNK_BYTES = 2048


def write_dump(path: Path, texts: list[bytes], line_end: bytes = b"\n", last_line_end: bool = True) -> Path:
    """A dump of ``texts``, one a line, as Wikimedia writes it; compressed as the suffix of ``path`` says."""
    body = (
        b"["
        + line_end
        + (b"," + line_end).join(texts)
        + line_end
        + b"]"
        + (line_end if last_line_end else b"")
    )
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(body))
    elif path.suffix == ".bz2":
        path.write_bytes(bz2.compress(body))
    else:
        path.write_bytes(body)
    return path


def import_dump(path: Path, *args: str) -> tuple[str, str]:
    """Run the command; return what it printed to stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command("import_wikidata_dump", str(path), "--chunk-dir", str(path.parent / "chunks"), *args,
                 stdout=out, stderr=err)  # fmt: skip
    return out.getvalue(), err.getvalue()


def summary(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("Dump import"))


def counts(out: str) -> str:
    """The counts of the summary line, without the timing."""
    return summary(out).split(": ", 1)[1].split(";")[1].strip()


def lines_parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the numbers of the dump lines a chunk parses (a line skipped unparsed is not there)."""
    parsed: list[int] = []
    import_line = chunks._import_line

    def spy(number: int, *args: Any, **kwargs: Any) -> None:
        parsed.append(number)
        import_line(number, *args, **kwargs)

    monkeypatch.setattr(chunks, "_import_line", spy)
    return parsed


def row(entity_id: str) -> dict[str, Any]:
    return dict(WikidataEntity.objects.values(*ROW_FIELDS).get(pk=entity_id))


def api_documents() -> list[dict[str, Any]]:
    """The entity documents the API served, from ../shared/wikidata: bare ones and wbgetentities answers."""
    documents = [json.loads((SHARED / f"{name}.json").read_text()) for name in
                 ("Q42", "Q2112", "P279", "P8098", "L525", "L3354", "L3872")]  # fmt: skip
    for name in ("Q32063953", "wbgetentities_Q6-Q42-P31"):
        for document in json.loads((SHARED / f"{name}.json").read_text())["entities"].values():
            if "missing" not in document:
                documents.append({key: value for key, value in document.items() if key != "redirects"})
    return documents


def test_the_real_2015_dump_sample_imports_every_entity_whole_in_several_chunks(tmp_path: Path) -> None:
    with gzip.open(SHARED / "dump_sample_wdtk_20150815.json.gz", "rb") as sample:
        documents = json.load(sample)
    out, err = import_dump(SHARED / "dump_sample_wdtk_20150815.json.gz", "--chunk-dir", str(tmp_path))
    assert counts(out) == "101 entities read, 101 matched, 101 written, 0 unchanged, 0 bad lines"
    assert out.splitlines()[-1] == "Every chunk was imported."
    assert err == ""
    for document in documents:
        entity = WikidataEntity.objects.get(pk=document["id"])
        assert entity.data == document
        assert (entity.entity_type, entity.lastrevid, entity.modified) == (document["type"], None, None)
    dump = DumpImport.objects.get()
    assert dump.chunks == DumpChunk.objects.filter(status=ChunkStatus.DONE).count() > 3
    assert list(tmp_path.iterdir()) == []  # each chunk file is removed once its chunk is done


def test_a_second_run_over_the_same_dump_rewrites_nothing_and_parses_no_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_dump(tmp_path / "dump.json.gz", [make_dump.dump_line(t, 100 + n) for n, t in
                                                   enumerate(make_dump.templates()[:30])])  # fmt: skip
    assert (
        counts(import_dump(path)[0]) == "30 entities read, 30 matched, 30 written, 0 unchanged, 0 bad lines"
    )
    before = dict(WikidataEntity.objects.values_list("pk", "fetched_at"))
    parsed = lines_parsed(monkeypatch)
    out, _ = import_dump(path)
    assert counts(out) == "30 entities read, 30 matched, 0 written, 30 unchanged, 0 bad lines"
    assert parsed == []  # today's lines end with their revision: each was read from the line's end
    assert dict(WikidataEntity.objects.values_list("pk", "fetched_at")) == before
    assert DumpImport.objects.count() == 2  # the first was finished: a new import, not a resumption
    # Entities without a lastrevid (older dumps) are not rewritten either.
    sample = SHARED / "dump_sample_wdtk_20150815.json.gz"
    import_dump(sample, "--chunk-dir", str(tmp_path / "c"))
    assert counts(import_dump(sample, "--chunk-dir", str(tmp_path / "c"))[0]).endswith(
        "0 written, 101 unchanged, 0 bad lines"
    )


@pytest.mark.parametrize(
    "document", api_documents() if SHARED.is_dir() else [], ids=lambda document: document["id"]
)
def test_an_entity_from_the_dump_and_the_same_revision_from_the_api_give_equal_rows(
    tmp_path: Path, wikidata: StandInWikidata, document: dict[str, Any]
) -> None:
    wikidata.add_entity(document)
    assert WikidataImporter().import_single(document["id"]) == "imported"
    from_api = row(document["id"])
    WikidataEntity.objects.all().delete()

    out, _ = import_dump(
        write_dump(tmp_path / "dump.json.bz2", [make_dump.entity_line(json.loads(json.dumps(document)))])
    )
    assert counts(out) == "1 entities read, 1 matched, 1 written, 0 unchanged, 0 bad lines"
    assert row(document["id"]) == from_api


def test_a_quirk_empty_maps_written_as_lists_are_stored_as_the_api_sends_them(tmp_path: Path) -> None:
    line = (b'{"type":"item","id":"Q7","labels":[],"descriptions":[],"aliases":[],"claims":[],'
            b'"sitelinks":[],"lastrevid":9}')  # fmt: skip
    import_dump(write_dump(tmp_path / "dump.json", [line]))
    assert WikidataEntity.objects.get(pk="Q7").data == {
        "type": "item", "id": "Q7", "labels": {}, "descriptions": {}, "aliases": {}, "claims": {},
        "sitelinks": {}, "lastrevid": 9,
    }  # fmt: skip


def test_whitespace_between_tokens_and_escapes_are_kept_as_json(tmp_path: Path) -> None:
    label = b'"tab\\there \\u00e9 \\\\"'
    labels = b'"labels":{"en":{"language":"en","value":' + label + b"}}"
    line = b'{"type":\t"item", "id" : "Q9",\r' + labels + b',\t"lastrevid": 3}'
    out, _ = import_dump(write_dump(tmp_path / "dump.json", [line]))
    assert counts(out) == "1 entities read, 1 matched, 1 written, 0 unchanged, 0 bad lines"
    entity = WikidataEntity.objects.get(pk="Q9")
    assert entity.data == json.loads(line)
    assert entity.label == "tab\there \u00e9 \\"


@pytest.mark.parametrize(
    ("name", "line_end", "last_line_end"),
    [("dump.json", b"\n", True), ("dump.json.gz", b"\r\n", True), ("dump.json.bz2", b"\n", False)],
)
def test_line_ends_compressions_and_a_missing_last_line_end_are_read_alike(
    tmp_path: Path, name: str, line_end: bytes, last_line_end: bool
) -> None:
    texts = [make_dump.dump_line(template, 500 + n) for n, template in enumerate(make_dump.templates()[:12])]
    out, _ = import_dump(write_dump(tmp_path / name, texts, line_end, last_line_end))
    assert counts(out) == "12 entities read, 12 matched, 12 written, 0 unchanged, 0 bad lines"
    assert WikidataEntity.objects.count() == 12


@pytest.fixture(params=["lbzip2", "python"])
def bz2_reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Each way a .bz2 dump is read: Debian's lbzip2 (when installed), and Python's bz2 without it."""
    if request.param == "python":
        monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))
    elif shutil.which("lbzip2") is None:
        pytest.skip("Debian's lbzip2 is not installed (bash .ci/run installs it)")
    return str(request.param)


def test_a_bz2_dump_is_read_whole_with_either_reader(tmp_path: Path, bz2_reader: str) -> None:
    """Before: with lbzip2 installed, every .bz2 import stopped with "lbzip2 failed: ." (the check of
    the dump's first bytes closes the pipe early, which is no failure of lbzip2)."""
    texts = [make_dump.dump_line(template, 700 + n) for n, template in enumerate(make_dump.templates()[:12])]
    out, _ = import_dump(write_dump(tmp_path / "dump.json.bz2", texts))
    assert counts(out) == "12 entities read, 12 matched, 12 written, 0 unchanged, 0 bad lines"


def test_leaving_a_bz2_dump_early_is_no_failure_of_its_reader(tmp_path: Path, bz2_reader: str) -> None:
    """The check of a dump reads its first bytes and leaves: lbzip2, still writing, then ends on a
    closed pipe, by SIGPIPE or with "Broken pipe" (before: "lbzip2 failed: .", as a race had it)."""
    texts = [make_dump.dump_line(template, n) for n in range(40) for template in make_dump.templates()[:12]]
    dump = write_dump(tmp_path / "dump.json.bz2", texts)
    for _ in range(20):
        with open_dump(dump) as (stream, _position):
            assert stream.read(100).startswith(b"[")
            time.sleep(0.01)  # lbzip2 fills the pipe and waits on it


def test_a_truncated_bz2_dump_says_so_without_a_traceback(tmp_path: Path, bz2_reader: str) -> None:
    texts = [make_dump.dump_line(template, 800 + n) for n, template in enumerate(make_dump.templates()[:12])]
    dump = write_dump(tmp_path / "dump.json.bz2", texts)
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    with pytest.raises(CommandError) as failed:
        import_dump(dump)
    assert "Traceback" not in str(failed.value)
    assert "dump.json.bz2" in str(failed.value)


def test_a_damaged_bz2_dump_resumed_cuts_its_last_chunk_anew_instead_of_calling_the_dump_changed(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the rerun stopped with "the dump changed". How far a damaged .bz2 decompresses
    varies from run to run with lbzip2, which decompresses its blocks in parallel. Here Python's
    reader, which stops at the first damaged block, sees the damage move between two runs over a
    file of the same size and modification time: the chunk the error cut short differs."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))  # Python's bz2: the same every run
    settings.WIKIDATA_DUMP_CHUNK_BYTES = 64 * 1024
    texts = [
        make_dump.dump_line(template, 100 + n) for n, template in enumerate(make_dump.templates()[:12] * 150)
    ]
    body = b"[\n" + b",\n".join(texts) + b"\n]\n"
    whole = bz2.compress(body, compresslevel=1)  # blocks of 100 kB: about a dozen
    path = tmp_path / "dump.json.bz2"

    def damaged_from(fraction: float) -> None:
        at = int(len(whole) * fraction)
        path.write_bytes(whole[:at] + b"\0" * (len(whole) - at))
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))

    damaged_from(0.5)
    with pytest.raises(CommandError, match="ends early or is corrupt"):
        import_dump(path)
    before = WikidataEntity.objects.count()
    damaged_from(0.8)
    with pytest.raises(CommandError, match="ends early or is corrupt") as failed:
        import_dump(path)
    assert "the dump changed" not in str(failed.value)
    assert DumpImport.objects.count() == 1  # resumed
    after = WikidataEntity.objects.count()
    assert 0 < before < after < len(texts)
    # Each line counted once: the chunk cut anew was counted anew, not added to.
    assert sum(chunk.entities for chunk in DumpChunk.objects.all()) == after
    assert list((tmp_path / "chunks").iterdir()) == []


def test_a_number_the_database_cannot_store_is_a_bad_line_and_the_rest_of_its_chunk_imports(
    tmp_path: Path, settings: Any
) -> None:
    """orjson reads ``1e-1000000`` as 0.0, PostgreSQL's jsonb refuses it: before, the whole chunk
    failed on every run (0 of 32 good entities imported)."""
    settings.WIKIDATA_DUMP_CHUNK_BYTES = 10 * 1024 * 1024  # one chunk for all
    texts = [make_dump.dump_line(template, 900 + n) for n, template in enumerate(make_dump.templates()[:32])]
    texts.insert(10, b'{"type":"item","id":"Q99","claims":{},"x":1e-1000000,"lastrevid":5}')
    out, _ = import_dump(write_dump(tmp_path / "dump.json.gz", texts))
    assert counts(out) == "33 entities read, 32 matched, 32 written, 0 unchanged, 1 bad lines"
    (chunk,) = DumpChunk.objects.all()
    assert chunk.bad_lines == [[12, "Q99: a number's exponent, -1000000, is beyond what the database stores"]]
    assert WikidataEntity.objects.count() == 32


def test_chunk_files_are_never_written_through_symlinks_planted_in_a_shared_chunk_directory(
    tmp_path: Path,
) -> None:
    """Before: chunk files had names anyone could foresee ({import}-{number}.part), opened with
    O_TRUNC through whatever was there: planted symlinks overwrote a file outside the directory."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    for number in range(50):
        for suffix in ("part", "json"):
            (chunks / f"1-{number:07d}.{suffix}").symlink_to(victim)
    texts = [make_dump.dump_line(template, 950 + n) for n, template in enumerate(make_dump.templates()[:12])]
    out, _ = import_dump(write_dump(tmp_path / "dump.json.gz", texts))
    assert counts(out) == "12 entities read, 12 matched, 12 written, 0 unchanged, 0 bad lines"
    assert victim.read_bytes() == b"precious"
    assert all(path.is_symlink() for path in chunks.iterdir())  # only the planted links are left


def test_bad_lines_are_counted_and_named_by_line_number_and_the_good_ones_imported(
    tmp_path: Path, settings: Any
) -> None:
    settings.WIKIDATA_DUMP_MAX_LINE_BYTES = 4000
    good = b'{"type":"item","id":"Q1","labels":[],"lastrevid":5}'
    deep = b'{"type":"item","id":"Q2","x":' + b"[" * 70 + b"]" * 70 + b',"lastrevid":5}'
    texts = [
        good,  # line 2
        b'{"type":"item","id":"Q3", not json',
        b"[1, 2]",
        b'{"type":"item","id":"Q0","lastrevid":5}',
        b'{"type":"item","id":"Q4","labels":{"en":{"language":"en","value":"a\\u0000b"}},"lastrevid":5}',
        deep,
        b'{"type":"item","id":"Q5","labels":{"en":{"language":"en","value":"'
        + b"x" * 5000
        + b'"}},"lastrevid":5}',
        b'{"type":"item","id":"Q6","lastrevid":-3}',
        b'{"type":"item","id":"Q7","modified":"yesterday","lastrevid":5}',
        b'{"type":"item","id":"Q8","lastrevid":5}',  # line 11
    ]
    out, err = import_dump(write_dump(tmp_path / "dump.json.gz", texts))
    assert counts(out) == "10 entities read, 2 matched, 2 written, 0 unchanged, 8 bad lines"
    assert out.splitlines()[-1] == "Every chunk was imported."  # bad lines are outcomes, not failures
    assert set(WikidataEntity.objects.values_list("pk", flat=True)) == {"Q1", "Q8"}
    listed = err.splitlines()
    assert listed[0] == "8 bad lines:"
    assert [line.split(":")[0].strip() for line in listed[1:]] == [f"line {n}" for n in range(3, 11)]
    assert "line 3: not JSON" in err
    assert "line 4: not an entity: a JSON list" in err
    assert "line 5: id is 'Q0', not an entity id" in err
    assert "line 6: Q4: labels.en.value holds a NUL character" in err
    assert "line 7: Q2: x[0][0][0]" in err  # where it nests too deep (the reason is cut at 200 characters)
    assert "line 8: longer than 4000 bytes (WIKIDATA_DUMP_MAX_LINE_BYTES): not read" in err
    assert "line 9: Q6: lastrevid is -3" in err
    assert "line 10: Q7: modified is 'yesterday'" in err
    bad_lines = [line for chunk in DumpChunk.objects.order_by("number") for line, _ in chunk.bad_lines]
    assert bad_lines == list(range(3, 11))


def synthetic(count: int) -> list[bytes]:
    return list(make_dump.lines(count))


def test_where_stores_exactly_the_entities_a_plain_filter_of_the_file_finds(tmp_path: Path) -> None:
    texts = synthetic(400)
    path = write_dump(tmp_path / "dump.json.gz", texts)
    out, _ = import_dump(path, "--where", "P31=Q5")
    expected = set()
    for text in texts:
        document = json.loads(text)
        if "Q5" in main_values((document.get("claims") or {}).get("P31")):
            expected.add(document["id"])
    assert expected
    assert set(WikidataEntity.objects.values_list("pk", flat=True)) == expected
    assert (
        counts(out)
        == f"400 entities read, {len(expected)} matched, {len(expected)} written, 0 unchanged, 0 bad lines"
    )


def test_where_is_or_within_a_property_and_and_across_properties(tmp_path: Path) -> None:
    human = {
        "P31": [
            {
                "mainsnak": {
                    "snaktype": "value",
                    "datavalue": {"value": {"entity-type": "item", "numeric-id": 5, "id": "Q5"}},
                }
            }
        ]
    }
    city = {
        "P31": [
            {
                "mainsnak": {
                    "snaktype": "value",
                    "datavalue": {"value": {"entity-type": "item", "numeric-id": 515}},
                }
            }
        ]
    }
    named = {"P1448": [{"mainsnak": {"snaktype": "value", "datavalue": {"value": "Bonn"}}}]}  # fmt: skip
    texts = [
        orjson.dumps({"type": "item", "id": "Q1", "claims": human, "lastrevid": 1}),
        orjson.dumps({"type": "item", "id": "Q2", "claims": {**city, **named}, "lastrevid": 1}),
        orjson.dumps({"type": "item", "id": "Q3", "claims": city, "lastrevid": 1}),
        orjson.dumps({"type": "item", "id": "Q4", "claims": named, "lastrevid": 1}),
    ]
    path = write_dump(tmp_path / "dump.json", texts)
    import_dump(path, "--where", "P31=Q5", "--where", "p31=q515")
    assert set(WikidataEntity.objects.values_list("pk", flat=True)) == {"Q1", "Q2", "Q3"}
    WikidataEntity.objects.all().delete()
    import_dump(path, "--where", "P31=Q515", "--where", "P1448=Bonn")
    assert set(WikidataEntity.objects.values_list("pk", flat=True)) == {"Q2"}


def test_types_and_an_ids_file_choose_the_entities(tmp_path: Path) -> None:
    texts = synthetic(150)
    path = write_dump(tmp_path / "dump.json.gz", texts)
    documents = [json.loads(text) for text in texts]
    import_dump(path, "--type", "property", "--type", "lexeme")
    assert set(WikidataEntity.objects.values_list("pk", flat=True)) == {
        document["id"] for document in documents if document["type"] in ("property", "lexeme")
    }
    WikidataEntity.objects.all().delete()
    chosen = [documents[3]["id"], documents[77]["id"], "Q1"]
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# chosen\n{chosen[0].lower()}\n{chosen[1]}\nQ1\n")
    out, _ = import_dump(path, "--ids", str(ids))
    assert set(WikidataEntity.objects.values_list("pk", flat=True)) == set(chosen[:2])
    assert counts(out) == "150 entities read, 2 matched, 2 written, 0 unchanged, 0 bad lines"


def entity_line(entity_id: str, revision: int, label: str) -> bytes:
    labels = {"en": {"language": "en", "value": label}}
    return orjson.dumps({"type": "item", "id": entity_id, "labels": labels, "lastrevid": revision})


def test_only_newer_revisions_are_written_and_the_newest_of_an_id_given_twice(tmp_path: Path) -> None:
    import_dump(write_dump(tmp_path / "a.json", [entity_line("Q1", 5, "five"), entity_line("Q2", 5, "five")]))
    out, _ = import_dump(
        write_dump(
            tmp_path / "b.json",
            [entity_line("Q1", 4, "four"), entity_line("Q2", 6, "six"), entity_line("Q3", 2, "two"),
             entity_line("Q3", 3, "three"), entity_line("Q3", 1, "one")],
        )
    )  # fmt: skip
    assert dict(WikidataEntity.objects.values_list("pk", "label")) == {
        "Q1": "five",
        "Q2": "six",
        "Q3": "three",
    }
    assert counts(out) == "5 entities read, 5 matched, 2 written, 3 unchanged, 0 bad lines"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing.json.gz"], "missing.json.gz: no such file."),
        (["."], "is not a Wikidata JSON dump: not a file."),
        ([str(SHARED / "Q42.json")], "is not a Wikidata JSON dump: it does not start with '['"),
        (["not-gzip.json.gz"], "is not a Wikidata JSON dump: it does not decompress as .gz"),
        (["dump.json", "--where", "instance of=city"], "--where 'instance of=city': expected PROPERTY=VALUE"),
        (["dump.json", "--ids", "nowhere.txt"], "--ids nowhere.txt: no such file."),
        (["dump.json", "--ids", "bad-ids.txt"], "1 invalid ids; nothing was imported:\n  line 2: "),
    ],
)
def test_a_mistake_is_refused_with_a_clear_message_and_nothing_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-gzip.json.gz").write_text("[\n]\n")
    (tmp_path / "bad-ids.txt").write_text("Q1\nQ1;DROP\n")
    write_dump(tmp_path / "dump.json", [entity_line("Q1", 1, "one")])
    with pytest.raises(CommandError) as refused:
        call_command("import_wikidata_dump", *arguments, stdout=io.StringIO(), stderr=io.StringIO())
    assert message in str(refused.value)
    assert not DumpImport.objects.exists()
    assert not WikidataEntity.objects.exists()


def test_a_truncated_gzip_dump_imports_its_whole_lines_and_fails(tmp_path: Path) -> None:
    texts = synthetic(60)
    whole = gzip.compress(b"[\n" + b",\n".join(texts) + b"\n]\n")
    path = tmp_path / "dump.json.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(CommandError) as failed:
        import_dump(path)
    assert "the dump ends early or is corrupt after line" in str(failed.value)
    assert "run the same command again to resume" in str(failed.value)
    stored = WikidataEntity.objects.count()
    assert 0 < stored < 60
    assert DumpImport.objects.get().split_error


def test_a_chunk_that_failed_is_redone_by_the_next_run_and_the_done_ones_are_skipped(tmp_path: Path) -> None:
    texts = synthetic(80)
    path = write_dump(tmp_path / "dump.json", texts)
    import_dump(path)
    dump = DumpImport.objects.get()
    # As a worker leaves a chunk it failed: nothing of it kept (its transaction rolled back).
    failed = DumpChunk.objects.get(dump=dump, number=2)
    ids = [
        json.loads(text)["id"] for text in texts[failed.first_line - 2 : failed.first_line - 2 + failed.lines]
    ]
    WikidataEntity.objects.filter(pk__in=ids).delete()
    DumpChunk.objects.filter(pk=failed.pk).update(
        status=ChunkStatus.FAILED, error="boom", entities=0, matched=0, written=0
    )
    done = {chunk.pk: chunk.updated_at for chunk in DumpChunk.objects.exclude(pk=failed.pk)}
    out, _ = import_dump(path)
    assert out.startswith(f"Resuming dump import {dump.pk}: {len(done)} chunks done already are skipped.")
    assert counts(out) == "80 entities read, 80 matched, 80 written, 0 unchanged, 0 bad lines"
    assert {chunk.pk: chunk.updated_at for chunk in DumpChunk.objects.exclude(pk=failed.pk)} == done
    assert WikidataEntity.objects.count() == 80


def test_a_chunk_that_cannot_be_read_is_recorded_failed_and_fails_its_task(tmp_path: Path) -> None:
    path = write_dump(tmp_path / "dump.json", synthetic(20))
    import_dump(path)
    chunk = DumpChunk.objects.order_by("number").first()
    assert chunk is not None
    DumpChunk.objects.filter(pk=chunk.pk).update(status=ChunkStatus.PENDING, file=str(tmp_path / "gone.json"))
    with pytest.raises(
        TaskFailed, match=f"chunk 0 of dump import {chunk.dump_id} failed: .*gone.json does not exist"
    ):
        WikidataDumpImporter().import_chunk(chunk.pk)
    chunk.refresh_from_db()
    assert chunk.status == ChunkStatus.FAILED
    assert (
        "gone.json does not exist: workers must see the dump and its chunk directory at the same path"
        in chunk.error
    )


def test_a_chunk_whose_task_killed_its_worker_too_often_is_recorded_failed(tmp_path: Path) -> None:
    import_dump(write_dump(tmp_path / "dump.json", synthetic(3)))
    chunk = DumpChunk.objects.get()
    DumpChunk.objects.filter(pk=chunk.pk).update(status=ChunkStatus.PENDING)
    message = Message(WikidataDumpImporter, "import_chunk", kwargs={"chunk_id": chunk.pk})
    WikidataDumpImporter.poisoned(
        message, PoisonMessage("killed its pool process 3 times", task_id="t", losses=3)
    )
    chunk.refresh_from_db()
    assert (chunk.status, chunk.error) == (
        ChunkStatus.FAILED,
        "not imported: killed its pool process 3 times",
    )


if connection.vendor == "postgresql":  # SQLite has no column compression (CI runs both)

    def test_documents_are_compressed_with_lz4_on_a_postgresql_that_has_it() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
            )
            row = cursor.fetchone()
            has_lz4 = connection.pg_version >= 140000 and row is not None and row[0]  # type: ignore[attr-defined]
            cursor.execute(
                "SELECT attcompression FROM pg_attribute "
                "WHERE attrelid = 'importers_wikidataentity'::regclass AND attname = 'data'"
            )
            found = cursor.fetchone()
        assert found is not None
        assert found[0] == ("l" if has_lz4 else "")


def test_a_chunk_keeps_its_first_100_bad_lines_by_line_number_and_counts_them_all(
    tmp_path: Path, settings: Any
) -> None:
    settings.WIKIDATA_DUMP_CHUNK_BYTES = 10 * 1024 * 1024  # one chunk
    settings.WIKIDATA_DUMP_MAX_LINE_BYTES = 100
    # Overlong lines are found before the lines that do not parse: the list is in line order all the same.
    texts = [b"x" * 200 if n % 2 else b"{not json" for n in range(1500)]
    out, err = import_dump(write_dump(tmp_path / "dump.json", texts))
    assert counts(out) == "1,500 entities read, 0 matched, 0 written, 0 unchanged, 1,500 bad lines"
    chunk = DumpChunk.objects.get()
    assert [number for number, _ in chunk.bad_lines] == list(range(2, 102))
    assert err.splitlines()[-1] == "  ... and 1,480 more (each chunk's first 100: in the admin's dump chunks)"


def test_a_gzip_bomb_of_one_endless_line_is_a_bad_line_and_fills_no_disk(
    tmp_path: Path, settings: Any
) -> None:
    settings.WIKIDATA_DUMP_MAX_LINE_BYTES = 1024 * 1024
    path = tmp_path / "bomb.json.gz"
    with gzip.open(path, "wb") as bomb:
        bomb.write(b"[\n" + entity_line("Q1", 1, "one") + b",\n")
        for _ in range(64):
            bomb.write(b"x" * 1024 * 1024)
        bomb.write(b",\n" + entity_line("Q2", 1, "two") + b"\n]\n")
    assert path.stat().st_size < 1024 * 1024  # 64 MB of one line, in a small file
    out, err = import_dump(path)
    assert counts(out) == "3 entities read, 2 matched, 2 written, 0 unchanged, 1 bad lines"
    assert "line 3: longer than 1048576 bytes (WIKIDATA_DUMP_MAX_LINE_BYTES): not read" in err
    assert (
        sum(chunk.bytes for chunk in DumpChunk.objects.all()) < 3 * 1024 * 1024
    )  # what the chunk files held


def test_a_dump_written_as_one_json_array_on_one_line_is_refused(tmp_path: Path) -> None:
    texts = [make_dump.dump_line(template, 900 + n) for n, template in enumerate(make_dump.templates()[:3])]
    path = tmp_path / "dump.json"
    path.write_bytes(b"[" + b",".join(texts) + b"]\n")
    with pytest.raises(CommandError, match="not alone on the first line"):
        import_dump(path)
    assert WikidataEntity.objects.count() == 0


@contextlib.contextmanager
def another_command_importing(path: Path) -> Iterator[None]:
    """Hold the dump's lock as another import_wikidata_dump would: from another session, or process."""
    if connection.vendor == "postgresql":
        database = connection.settings_dict
        with psycopg.connect(
            dbname=database["NAME"], host=database["HOST"], port=database["PORT"] or None,
            user=database["USER"], autocommit=True,
        ) as other:  # fmt: skip
            other.execute("SELECT pg_advisory_lock(%s)", [lock_key(str(path))])
            yield
    else:
        with open(path, "rb") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            yield


def test_a_second_command_on_a_dump_being_imported_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """Before: two commands on one dump at once cut the same chunks, each pointing them at its own
    files: one could die with FileNotFoundError, and chunk files were left behind."""
    texts = [make_dump.dump_line(template, 500 + n) for n, template in enumerate(make_dump.templates()[:12])]
    dump = write_dump(tmp_path / "dump.json.gz", texts)
    with another_command_importing(dump), pytest.raises(CommandError) as refused:
        import_dump(dump)
    assert str(refused.value) == (
        f"Another import_wikidata_dump is importing {dump} now: nothing was done. Run this command "
        "again once it has ended, to resume whatever it leaves."
    )
    assert not DumpImport.objects.exists()
    assert not (tmp_path / "chunks").exists() or list((tmp_path / "chunks").iterdir()) == []
    out, _ = import_dump(dump)  # the lock went with the other command
    assert counts(out) == "12 entities read, 12 matched, 12 written, 0 unchanged, 0 bad lines"


def test_a_full_disk_mid_cut_stops_with_the_resume_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: OSError [Errno 28] with a traceback, and the unfinished chunk file left behind."""
    templates = make_dump.templates()[:12] * 20
    texts = [make_dump.dump_line(template, 1000 + n) for n, template in enumerate(templates)]
    dump = write_dump(tmp_path / "dump.json.gz", texts)
    written = [0]

    class FillingDisk(io.FileIO):
        def write(self, data: Any) -> int:
            written[0] += len(data)
            if written[0] > 20_000:  # the disk fills in the middle of a chunk file
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    def opening(path: Any, mode: str, opener: Any = None) -> FillingDisk:
        return FillingDisk(path, mode, opener=opener)

    monkeypatch.setattr(sending, "open", opening, raising=False)
    with pytest.raises(CommandError) as stopped:
        import_dump(dump)
    dump_import = DumpImport.objects.get()
    assert str(stopped.value) == (
        f"Cannot write chunk files to {tmp_path / 'chunks'}: No space left on device. Free some space "
        f"(or give --chunk-dir), then run the same command again to resume dump import {dump_import.pk}."
    )
    assert list((tmp_path / "chunks").glob("*.part")) == []
    monkeypatch.undo()
    out, _ = import_dump(dump)
    assert out.startswith(f"Resuming dump import {dump_import.pk}")
    assert counts(out) == "240 entities read, 240 matched, 240 written, 0 unchanged, 0 bad lines"
