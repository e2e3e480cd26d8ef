"""A dump read from a URL by byte ranges: a real nginx that honours ``Range``, and servers that do not."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from bench import make_dump
from importers.dump import chunks
from importers.models import ChunkStatus, DumpChunk, DumpImport, WikidataEntity
from tests.importers.dump.test_command import counts
from tests.support.nginx import NEEDS_NGINX, Nginx, nginx_serving
from tests.support.shared import NEEDS_SHARED
from tests.support.tls import free_port

pytestmark = [pytest.mark.django_db, NEEDS_SHARED]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Nginx]:
    with nginx_serving(tmp_path / "www", tmp_path / "nginx") as server:
        yield server


@pytest.fixture(autouse=True)
def small_slices(settings: Any) -> None:
    settings.WIKIDATA_DUMP_SLICE_BYTES = 1  # a slice a member


def import_url(url: str, tmp_path: Path) -> str:
    """Run the command on ``url``; return what it printed."""
    out = io.StringIO()
    call_command("import_wikidata_dump", url, "--chunk-dir", str(tmp_path / "chunks"), stdout=out,
                 stderr=io.StringIO())  # fmt: skip
    return out.getvalue()


def wikimedia_dump(directory: Path, entities: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "latest-all.json.gz"
    make_dump.write(path, entities, member_lines=20)
    return path


@NEEDS_NGINX
def test_a_dump_at_a_url_is_sliced_and_each_slice_read_by_its_range(
    tmp_path: Path, served: Nginx, settings: Any
) -> None:
    path = wikimedia_dump(served.root, 100)
    url = served.url(path.name) + "?X-Amz-Signature=secret"  # a presigned URL keeps its query
    out = import_url(url, tmp_path)
    assert counts(out) == "100 entities read, 100 matched, 100 written, 0 unchanged, 0 bad lines"
    assert WikidataEntity.objects.count() == 100
    slices = DumpChunk.objects.all()
    assert len(slices) == 1 + 5 + 1
    assert all(chunk.is_slice and chunk.file == url for chunk in slices)
    assert not (tmp_path / "chunks").exists()  # no chunk file: nothing is downloaded whole
    # nginx answered every request with 206 Partial Content: ranges only.
    asked = [line for line in served.requests() if f"GET /{path.name}" in line]
    assert {line.split('" ')[1].split()[0] for line in asked} == {"206"}, asked
    assert all(settings.WIKIDATA_USER_AGENT in line for line in asked)
    for chunk in slices:  # each worker asked for its slice's bytes, and no further
        assert any(f'"bytes={chunk.start}-{chunk.start + chunk.bytes - 1}"' in line for line in asked), asked
    assert "secret" not in out


@NEEDS_NGINX
def test_a_file_replaced_at_the_url_mid_import_fails_the_slices_read_after_and_keeps_none_of_them(
    tmp_path: Path, served: Nginx, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = wikimedia_dump(served.root, 100)
    imported = chunks.import_chunk
    calls = []

    def replacing_the_file_after_two(chunk: DumpChunk, task_id: str | None) -> Any:
        calls.append(chunk.number)
        if len(calls) == 3:
            make_dump.write(path, 120, member_lines=20)  # another week's dump, same name
        return imported(chunk, task_id)

    monkeypatch.setattr(chunks, "import_chunk", replacing_the_file_after_two)
    monkeypatch.setattr("importers.dump.importer.import_chunk", replacing_the_file_after_two)
    with pytest.raises(CommandError, match="Not every chunk was imported") as failed:
        import_url(served.url(path.name), tmp_path)
    assert "the file changed" in str(failed.value) or "changed (its ETag" in str(failed.value)
    done = DumpChunk.objects.filter(status=ChunkStatus.DONE)
    assert [chunk.number for chunk in done] == [0, 1]
    assert WikidataEntity.objects.count() == 20  # the first member's; nothing of the failed slices


class WholeFileOnly(http.server.SimpleHTTPRequestHandler):
    """Python's own file server: it ignores ``Range`` and sends the whole file with 200."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_server_that_ignores_range_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = wikimedia_dump(tmp_path / "www", 40)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()), partial(WholeFileOnly, directory=str(path.parent))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        with pytest.raises(CommandError, match=r"does not honour Range requests \(it answered 200"):
            import_url(url, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert not DumpImport.objects.exists()


@NEEDS_NGINX
def test_a_url_of_a_dump_that_cannot_be_sliced_is_refused_saying_to_download_it(
    tmp_path: Path, served: Nginx
) -> None:
    served.root.mkdir(parents=True, exist_ok=True)
    path = served.root / "dump.json.gz"
    make_dump.write(path, 40, member_lines=None)  # one gzip member, as gzip writes it
    with pytest.raises(CommandError, match="only such a dump is read from a URL; download it"):
        import_url(served.url(path.name), tmp_path)
    with pytest.raises(CommandError, match="answered HTTP 404"):
        import_url(served.url("nothing-here.json.gz"), tmp_path)
    assert not DumpImport.objects.exists()
