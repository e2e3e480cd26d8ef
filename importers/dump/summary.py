"""What a dump import's command says at its end: the counts and rates, the bad lines, the failures."""

from __future__ import annotations

from ..models import ChunkStatus, DumpImport
from .progress import MIB, Totals

# Failed chunks and bad lines listed; the admin and DumpChunk have the rest.
MAX_LISTED = 20


def counts(dump: DumpImport, totals: Totals, seconds: float) -> str:
    """The chunks done, the entities read, matched, written and unchanged, the bad lines, the rates."""
    per_second = max(seconds, 1e-9)
    return (
        f"Dump import {dump.pk}: {totals.done} of {dump.chunks} chunks done; {totals.entities:,} "
        f"entities read, {totals.matched:,} matched, {totals.written:,} written, "
        f"{totals.unchanged:,} unchanged, "
        f"{totals.bad:,} bad lines; {seconds:.1f} s, {totals.entities / per_second:,.0f} "
        f"entities/s, {totals.bytes / MIB / per_second:,.1f} MB/s."
    )


def bad_lines(dump: DumpImport, bad: int) -> str:
    """The first ``MAX_LISTED`` of the ``bad`` lines, each with why; "" when there is none."""
    if not bad:
        return ""
    listed: list[str] = []
    for chunk_bad_lines in (
        dump.chunk_set.filter(bad__gt=0).order_by("number").values_list("bad_lines", flat=True)
    ):
        for number, reason in chunk_bad_lines:
            if len(listed) < MAX_LISTED:
                listed.append(f"  line {number}: {reason}")
    more = (
        f"\n  ... and {bad - len(listed):,} more (each chunk's first 100: in the admin's dump chunks)"
        if bad > len(listed)
        else ""
    )
    return f"{bad:,} bad lines:\n" + "\n".join(listed) + more


def problems(dump: DumpImport, totals: Totals) -> list[str]:
    """Why not every chunk was imported: the dump's read error, and the first failed chunks."""
    found = []
    if dump.split_error:
        found.append(f"{dump.path}: {dump.split_error}")
    failed = dump.chunk_set.filter(status=ChunkStatus.FAILED).order_by("number")
    for chunk in failed[:MAX_LISTED]:
        found.append(
            f"chunk {chunk.number} (lines {chunk.first_line} to {chunk.first_line + chunk.lines - 1}) "
            f"failed: {chunk.error}"
        )
    if totals.failed > MAX_LISTED:
        found.append(f"... and {totals.failed - MAX_LISTED} more failed chunks")
    return found
