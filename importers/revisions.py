"""The one rule of what is stored: only a newer revision of an entity replaces the stored one.

Every writer asks it: the API's answers (``importers.storage``), the dump's rows
(``importers.dump.storage``), and the dump's lines skipped before they are parsed
(``importers.dump.chunks``). A revision is an entity's ``lastrevid``; None is a document without
one (the dumps before 2016, and a row stored from one).
"""

from __future__ import annotations

__all__ = ("is_newer", "newer_sql")


def is_newer(revision: int | None, stored: int | None, rewrite: bool = False) -> bool:
    """Whether a document of ``revision`` replaces a stored row of revision ``stored``.

    A greater revision replaces a smaller one, and any revision replaces a row without one. A
    document without a revision replaces nothing: a dump read twice rewrites no row. ``rewrite``
    (a forced re-import) writes the stored revision again too, never an older one.
    """
    if revision is None:
        return rewrite and stored is None
    return stored is None or (revision >= stored if rewrite else revision > stored)


def newer_sql(revision: str, stored: str, rewrite: bool = False) -> str:
    """``is_newer`` as an SQL condition on two column expressions, for an upsert's ``WHERE``.

    The upsert decides, not what was read before it: tasks racing for one id then agree, and
    whichever commits last, the newest revision stays.
    """
    newer = f"{revision} {'>=' if rewrite else '>'} {stored}"
    condition = f"({revision} IS NOT NULL AND ({stored} IS NULL OR {newer}))"
    if rewrite:
        condition += f" OR ({revision} IS NULL AND {stored} IS NULL)"
    return f"({condition})"
