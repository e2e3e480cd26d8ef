"""Where a dump's bytes come from: a path, or a URL read by byte ranges (RFC 9110 ``Range``).

Slices need no shared disk when the dump is at a URL that honours ``Range`` (a presigned object
storage URL, a mirror of your own): the command reads the few ranges it plans with, and each
worker streams its own slice in one request. Every answer must be ``206 Partial Content`` for
exactly the range asked, of a file of the size and version (``ETag``, else ``Last-Modified``) the
import began with: a server that ignores ``Range`` (a ``200`` with the whole file), a file that
grew, shrank or was replaced, each stop the read with ``RemoteUnusable`` naming what differs.
Wikimedia's own dump servers allow 2 connections a client: copy the file to your storage first.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from collections.abc import Iterator
from typing import IO
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

__all__ = ("RangeReader", "RemoteUnusable", "is_gzip", "is_url", "open_source", "shown", "signature_of")

CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
PIECE = 1 << 20  # the most read from the answer at a time

_pool: urllib3.PoolManager | None = None


class RemoteUnusable(OSError):
    """The server does not serve the dump's ranges as asked, or the file there changed."""


def is_url(location: str) -> bool:
    return urlsplit(location).scheme in ("http", "https")


def is_gzip(location: str) -> bool:
    """Whether a path or URL (its query left out: a presigned URL's signature) names a ``.gz``."""
    return urlsplit(location).path.endswith(".gz") if is_url(location) else location.endswith(".gz")


def signature_of(location: str) -> tuple[int, int]:
    """The size and version of a dump: a file's modification time, a URL's ``ETag`` or ``Last-Modified``.

    Raises:
        RemoteUnusable: a URL that cannot be read, or whose server does not answer a range.
    """
    if is_url(location):
        return remote_file(location)
    status = os.stat(location)
    return status.st_size, status.st_mtime_ns


@contextlib.contextmanager
def open_source(location: str, size: int, version: int, end: int | None = None) -> Iterator[IO[bytes]]:
    """Open a dump's bytes, a path or a URL, for seeking and reading (a URL's up to byte ``end``).

    Raises:
        FileNotFoundError: no file at the path.
    """
    if not is_url(location):
        with open(location, "rb", buffering=PIECE) as file:
            yield file
        return
    with io.BufferedReader(RangeReader(location, size, version, end), PIECE) as stream:
        yield stream


def _http() -> urllib3.PoolManager:
    global _pool
    if _pool is None:
        _pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=settings.WIKIDATA_TIMEOUT, read=settings.WIKIDATA_TIMEOUT),
            retries=urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=(429, 502, 503, 504)),
        )
    return _pool


def _get(url: str, start: int, last: int) -> urllib3.BaseHTTPResponse:
    """``GET url`` for bytes ``start`` to ``last``, the answer left to be read as it comes."""
    headers = {"Range": f"bytes={start}-{last}", "User-Agent": settings.WIKIDATA_USER_AGENT}
    return _http().request("GET", url, headers=headers, preload_content=False)


def version_of(headers: urllib3.HTTPHeaderDict) -> int:
    """A number for the file's version, from its ``ETag`` (else ``Last-Modified``): kept as the import's."""
    tag = headers.get("ETag") or headers.get("Last-Modified") or ""
    return int.from_bytes(hashlib.sha256(tag.encode()).digest()[:7], "big")


def remote_file(url: str) -> tuple[int, int]:
    """Ask for the first byte of ``url``; return the file's size and version.

    Raises:
        RemoteUnusable: it cannot be reached, or the server does not answer a range.
    """
    try:
        answer = _get(url, 0, 0)
    except urllib3.exceptions.HTTPError as error:
        raise RemoteUnusable(f"{shown(url)} could not be read: {error}") from None
    try:
        size = _checked(url, answer, 0, 0, None, None)
        return size, version_of(answer.headers)
    finally:
        answer.release_conn()


def _checked(
    url: str, answer: urllib3.BaseHTTPResponse, start: int, last: int, size: int | None, version: int | None
) -> int:
    """Check an answer to ``Range: bytes=start-last``; return the file's size."""
    if answer.status == 200:
        raise RemoteUnusable(
            f"{shown(url)} does not honour Range requests (it answered 200 with the whole file): "
            "serve the dump from a server that does (object storage, nginx), or download it"
        )
    if answer.status != 206:
        raise RemoteUnusable(f"{shown(url)} answered HTTP {answer.status} to a range request")
    found = CONTENT_RANGE.fullmatch(answer.headers.get("Content-Range", ""))
    if found is None or (int(found[1]), int(found[2])) != (start, last):
        raise RemoteUnusable(
            f"{shown(url)} answered bytes {answer.headers.get('Content-Range')!r} to bytes={start}-{last}"
        )
    total = int(found[3])
    if size is not None and total != size:
        raise RemoteUnusable(f"{shown(url)} is {total} bytes now, not {size}: the file changed")
    if version is not None and version_of(answer.headers) != version:
        raise RemoteUnusable(f"{shown(url)} changed (its ETag or Last-Modified) since the import began")
    return total


def shown(location: str) -> str:
    """A path as it is; a URL without its query: a presigned URL's signature is a credential."""
    if not is_url(location):
        return location
    parts = urlsplit(location)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?..." if parts.query else "")


class RangeReader(io.RawIOBase):
    """Bytes ``0`` to ``size`` of ``url`` as a seekable file, read by ranges up to ``end``.

    Reading streams one request from the position to ``end``; a seek elsewhere starts another.
    """

    def __init__(self, url: str, size: int, version: int, end: int | None = None) -> None:
        self.url, self.size, self.version = url, size, version
        self.end = size if end is None else min(end, size)
        self.position = 0
        self.answer: urllib3.BaseHTTPResponse | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        target = base + offset
        if target != self.position:
            self._drop()
            self.position = target
        return self.position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.position >= self.end or not len(buffer):
            return 0
        if self.answer is None:
            self.answer = self._request(self.position, self.end - 1)
        try:
            data = self.answer.read(min(len(buffer), PIECE))
        except urllib3.exceptions.HTTPError as error:
            self._drop()
            raise RemoteUnusable(
                f"{shown(self.url)}: the answer broke off at byte {self.position}: {error}"
            ) from None
        if not data:
            self._drop()
            raise RemoteUnusable(
                f"{shown(self.url)}: the answer ended at byte {self.position}, before {self.end}"
            )
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _request(self, start: int, last: int) -> urllib3.BaseHTTPResponse:
        try:
            answer = _get(self.url, start, last)
        except urllib3.exceptions.HTTPError as error:
            raise RemoteUnusable(f"{shown(self.url)} could not be read: {error}") from None
        try:
            _checked(self.url, answer, start, last, self.size, self.version)
        except RemoteUnusable:
            answer.release_conn()
            raise
        return answer

    def _drop(self) -> None:
        if self.answer is not None:
            # Left before its end (a seek elsewhere), the answer's connection is closed, not read
            # to the end of a range that may run to the end of the file.
            if self.position < self.end:
                self.answer.close()
            self.answer.release_conn()
            self.answer = None

    def close(self) -> None:
        self._drop()
        super().close()
