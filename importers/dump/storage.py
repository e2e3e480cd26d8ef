"""Writing a chunk's entities in bulk: into a staging table (COPY on PostgreSQL), then one upsert.

Call inside the chunk's transaction: the staging table is dropped at its commit, and the rows,
the chunk's counts and its ``done`` are committed together or not at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from django.db import connection

from ..models import WikidataEntity
from ..revisions import newer_sql

__all__ = ("Row", "Staging", "stored_revisions")

# Columns written from a dump line, in the staging table's order; fetched_at is the chunk's.
COLUMNS = ("wikidata_id", "entity_type", "label", "description", "data", "lastrevid", "modified")
STAGING = "wikidata_dump_staging"


class Row(NamedTuple):
    """One entity as the table keeps it; ``data`` is the document's JSON text.

    A named tuple, not a frozen dataclass: one is made for every line, and a frozen dataclass
    costs several times as much to make.
    """

    wikidata_id: str
    entity_type: str
    label: str
    description: str
    data: bytes
    lastrevid: int | None
    modified: datetime | None


def stored_revisions(ids: list[str]) -> dict[str, int | None]:
    """Return the stored ``lastrevid`` of those of ``ids`` that have a row (None: stored without one)."""
    if not ids:
        return {}
    return dict(WikidataEntity.objects.filter(pk__in=ids).values_list("pk", "lastrevid"))


class Staging:
    """The rows of one chunk, on their way to ``WikidataEntity``; use inside a transaction.

    ``add`` keeps rows in memory up to ``flush_bytes``, then sends them to the staging table;
    ``upsert`` moves them into the table, writing only newer revisions, and returns how many.
    """

    def __init__(self, flush_bytes: int = 4 * 1024 * 1024) -> None:
        self.flush_bytes = flush_bytes
        self.pending: list[Row] = []
        self.pending_bytes = 0
        self.staged = 0
        self.postgresql = connection.vendor == "postgresql"
        self._create()

    def add(self, row: Row) -> None:
        self.pending.append(row)
        self.pending_bytes += len(row.data)
        if self.pending_bytes >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        """Send the rows kept in memory to the staging table."""
        if not self.pending:
            return
        if self.postgresql:
            self._copy(self.pending)
        else:
            self._insert(self.pending)
        self.staged += len(self.pending)
        self.pending, self.pending_bytes = [], 0

    def upsert(self, fetched_at: datetime) -> int:
        """Write every staged entity that is new or a newer revision than the stored one; return how many.

        Newer is ``importers.revisions.is_newer``, tested in the upsert's WHERE. An id staged
        twice is written once, its newest revision. Rows are written in id order, so that
        chunks sharing ids, written at once, wait for each other rather than deadlock.
        """
        self.flush()
        if not self.staged:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE {STAGING}")
            return 0
        quote = connection.ops.quote_name
        table = quote(WikidataEntity._meta.db_table)
        columns = ", ".join(quote(column) for column in (*COLUMNS, "fetched_at"))
        updates = ", ".join(f"{quote(column)} = excluded.{quote(column)}" for column in COLUMNS[1:])
        updates += ", fetched_at = excluded.fetched_at"
        if self.postgresql:
            source = (
                f"SELECT DISTINCT ON (wikidata_id) {', '.join(COLUMNS)}, %s::timestamptz FROM {STAGING} "
                "ORDER BY wikidata_id, lastrevid DESC NULLS LAST"
            )
        else:
            # SQLite takes the other columns of a group from the row with the max(); "WHERE true"
            # tells its parser that ON CONFLICT belongs to the INSERT.
            source = (
                f"SELECT {', '.join(COLUMNS[:-2])}, max(lastrevid), modified, %s FROM {STAGING} "
                "WHERE true GROUP BY wikidata_id ORDER BY wikidata_id"
            )
        sql = (
            f"INSERT INTO {table} ({columns}) {source} "
            f"ON CONFLICT (wikidata_id) DO UPDATE SET {updates} "
            f"WHERE {newer_sql('excluded.lastrevid', f'{table}.lastrevid')} "
            "RETURNING 1"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [connection.ops.adapt_datetimefield_value(fetched_at)])
            written = len(cursor.fetchall())
            # Dropped now, not at the commit: the chunk's transaction may be inside another one.
            cursor.execute(f"DROP TABLE {STAGING}")
        return written

    def _create(self) -> None:
        with connection.cursor() as cursor:
            if self.postgresql:
                # Values keep their compression when moved into the table: compress them as it does.
                compression = _data_compression()
                cursor.execute(
                    f"CREATE TEMPORARY TABLE {STAGING} (wikidata_id text, entity_type text, label text, "
                    f"description text, data jsonb{compression}, lastrevid bigint, modified timestamptz) "
                    "ON COMMIT DROP"
                )
            else:
                cursor.execute(f"DROP TABLE IF EXISTS temp.{STAGING}")
                cursor.execute(
                    f"CREATE TEMPORARY TABLE {STAGING} (wikidata_id text, entity_type text, label text, "
                    "description text, data text, lastrevid integer, modified text)"
                )

    def _copy(self, rows: list[Row]) -> None:
        lines = []
        for row in rows:
            modified = "\\N" if row.modified is None else row.modified.isoformat()
            lastrevid = "\\N" if row.lastrevid is None else str(row.lastrevid)
            head = "\t".join((_copy_text(row.wikidata_id), _copy_text(row.entity_type),
                              _copy_text(row.label), _copy_text(row.description)))  # fmt: skip
            lines.append(b"%s\t%s\t%s\t%s\n" % (
                head.encode(), _copy_bytes(row.data), lastrevid.encode(), modified.encode()
            ))  # fmt: skip
        with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {STAGING} FROM STDIN") as copy:
            copy.write(b"".join(lines))

    def _insert(self, rows: list[Row]) -> None:
        adapt = connection.ops.adapt_datetimefield_value
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {STAGING} ({', '.join(COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        row.wikidata_id,
                        row.entity_type,
                        row.label,
                        row.description,
                        row.data.decode(),
                        row.lastrevid,
                        adapt(row.modified),
                    )
                    for row in rows
                ],
            )


_compression: str | None = None


def _data_compression() -> str:
    """`` COMPRESSION lz4`` when the table compresses its documents with lz4 (migration 0003), else ''."""
    global _compression
    if _compression is None:
        if connection.pg_version < 140000:  # type: ignore[attr-defined]
            _compression = ""
            return _compression
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT attcompression FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'data'",
                [WikidataEntity._meta.db_table],
            )
            found = cursor.fetchone()
        _compression = " COMPRESSION lz4" if found is not None and found[0] == "l" else ""
    return _compression


def _copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format: backslash, tab, newline and carriage return escaped."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _copy_bytes(value: bytes) -> bytes:
    """JSON text as a field of COPY's text format: backslashes doubled, raw tabs and returns escaped.

    Inside JSON strings a tab or a line break is escaped already; between tokens, a dump's line
    may still hold a raw tab or carriage return.
    """
    if b"\\" in value:
        value = value.replace(b"\\", b"\\\\")
    if b"\t" in value or b"\r" in value:
        value = value.replace(b"\t", b"\\t").replace(b"\r", b"\\r")
    return value
