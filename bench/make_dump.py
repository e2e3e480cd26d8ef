"""``python -m bench.make_dump OUT.json.gz --entities N``: a synthetic Wikidata JSON dump of real documents.

Every real entity document of ``../shared/wikidata`` (a 2015 dump sample of 101 entities, a mock
dump, and whole items, properties and lexemes as the API serves them today) is written again and
again, in turn, under new ids (Q, P or L as its type says), until there are N. Each line is
written as today's dumps write it (``entity_line``), its page fields made up where the document had
none. One turn of the documents averages about 11 KB an entity, close to the 13 KB of today's
full dump.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "wikidata"
PREFIXES = {"item": "Q", "property": "P", "lexeme": "L"}
MAP_KEYS = ("labels", "descriptions", "aliases", "claims", "sitelinks")
# Today's order of an item's and a property's keys (as wbgetentities serves Q42 and P279 in
# ../shared/wikidata); a lexeme's own order is kept.
SERIALIZER_ORDER = ("type", "datatype", "id", "labels", "descriptions", "aliases", "claims", "sitelinks")
QUIRKY_TYPES = ("item", "property")  # lexemes' maps are serialized alike in the dumps and the API
PAGE_FIELDS = ("pageid", "ns", "title", "lastrevid", "modified")
# Each type's namespace and the prefix of its pages' titles on wikidata.org.
NAMESPACES = {"item": (0, ""), "property": (120, "Property:"), "lexeme": (146, "Lexeme:")}
MODIFIED = "2026-09-21T16:13:48Z"
# New ids start here, far above the real ones of the documents, so that none is a real entity's.
FIRST_ID = 900_000_000
FIRST_REVISION = 2_000_000_000
# Lines a gzip member: Wikimedia's are about 65,000 (70 MB); fewer here, so that a benchmark's
# dump of 100,000 entities has members enough to slice among workers.
MEMBER_LINES = 2_000


def templates(shared: Path = SHARED) -> list[dict[str, Any]]:
    """The real entity documents of ``shared``, in a fixed order: dump lines first, then whole documents."""
    found: list[dict[str, Any]] = []
    with gzip.open(shared / "dump_sample_wdtk_20150815.json.gz", "rb") as sample:
        found += json.load(sample)
    found += json.loads((shared / "dump_mock_wdtk.json").read_text())
    for name in ("Q42", "Q2112", "P279", "P8098", "L525", "L3354", "L3872"):
        found.append(_entity(json.loads((shared / f"{name}.json").read_text())))
    for name in ("Q32063953", "wbgetentities_Q6-Q42-P31"):
        response = json.loads((shared / f"{name}.json").read_text())
        for document in response["entities"].values():
            if "missing" not in document:
                found.append({key: value for key, value in document.items() if key != "redirects"})
    return [document for document in found if document.get("type") in PREFIXES]


def _entity(data: dict[str, Any]) -> dict[str, Any]:
    if "entities" in data:
        return dict(next(iter(data["entities"].values())))
    return data


def entity_line(document: dict[str, Any]) -> bytes:
    """``document`` as a line of today's dumps (no comma, no line end).

    Wikibase's dump writer serializes the entity as the API does (an item's or a property's keys
    in ``SERIALIZER_ORDER``, as the 2015 dumps did not) but with their empty maps as ``[]``
    (PHP's ``json_encode`` of an empty array), then appends the
    page's fields in this order: ``pageid``, ``ns``, ``title``, ``lastrevid``, ``modified``, e.g.
    ``...,"sitelinks":{...},"pageid":123,"ns":0,"title":"Q31","lastrevid":2548173641,"modified":"2026-09-21T16:13:48Z"}``
    (Wikibase, repo/includes/Dumpers/JsonDumpGenerator.php; the lines of latest-all.json.gz).
    The API serves the same document with the page's fields first. A field the document lacks
    is left out, as the 2015 dumps had none.
    """
    content = {key: value for key, value in document.items() if key not in PAGE_FIELDS}
    if document["type"] in QUIRKY_TYPES:
        first = {key: content.pop(key) for key in SERIALIZER_ORDER if key in content}
        content = {**first, **content}
        for key in MAP_KEYS:
            if content.get(key) == {}:
                content[key] = []
    page = {key: document[key] for key in PAGE_FIELDS if key in document}
    return orjson.dumps({**content, **page})


def dump_line(template: dict[str, Any], number: int) -> bytes:
    """``template`` as the line of entity number ``number`` of its type, with page fields of its own."""
    return entity_line(renumbered(template, number))


def renumbered(template: dict[str, Any], number: int) -> dict[str, Any]:
    """``template`` as entity number ``number`` of its type, with page fields of its own."""
    entity_id = f"{PREFIXES[template['type']]}{number}"
    namespace, title_prefix = NAMESPACES[template["type"]]
    return {
        **template,
        "id": entity_id,
        "pageid": number - FIRST_ID + 1,
        "ns": namespace,
        "title": title_prefix + entity_id,
        "lastrevid": FIRST_REVISION + number,
        "modified": template.get("modified", MODIFIED),
    }


def lines(count: int, shared: Path = SHARED) -> Iterator[bytes]:
    """The ``count`` entity lines of the synthetic dump, without commas or line ends."""
    documents = templates(shared)
    for index in range(count):
        yield dump_line(documents[index % len(documents)], FIRST_ID + index)


def ids(count: int, shared: Path = SHARED) -> set[str]:
    """The ids of the ``count`` entities of the synthetic dump."""
    documents = templates(shared)
    return {
        f"{PREFIXES[documents[index % len(documents)]['type']]}{FIRST_ID + index}" for index in range(count)
    }


def write(path: Path, count: int, shared: Path = SHARED, member_lines: int | None = MEMBER_LINES) -> int:
    """Write a synthetic dump of ``count`` entities to ``path``; return its size in bytes.

    Gzipped as Wikimedia's dump job gzips ``latest-all.json.gz`` (operations-puppet,
    ``modules/snapshot/files/cron/wikibase/dumpwikibasejson.sh``): ``[`` and its line end in a
    member of their own, then a member per ``member_lines`` entity lines, each starting on a
    line, then ``]`` in a last member; level 6. ``member_lines=None`` writes one member, as
    ``gzip`` or another tool would.
    """
    partial = path.with_name(path.name + ".part")
    with partial.open("wb") as out:
        if member_lines is None:
            out.write(gzip.compress(b"".join(text_lines(count, shared)), compresslevel=6))
        else:
            batch: list[bytes] = []
            for line in text_lines(count, shared):
                batch.append(line)
                if line in (b"[\n", b"]\n") or len(batch) == member_lines:
                    out.write(gzip.compress(b"".join(batch), compresslevel=6))
                    batch = []
            if batch:
                out.write(gzip.compress(b"".join(batch), compresslevel=6))
    partial.replace(path)
    return path.stat().st_size


def text_lines(count: int, shared: Path = SHARED) -> Iterator[bytes]:
    """The dump's text, a line at a time: ``[``, ``count`` entity lines, ``]``."""
    yield b"[\n"
    for index, line in enumerate(lines(count, shared)):
        yield line + (b",\n" if index < count - 1 else b"\n")
    yield b"]\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.make_dump", description=__doc__)
    parser.add_argument("out", type=Path, help="where to write the dump (.json.gz)")
    parser.add_argument("--entities", type=int, default=100_000, help="how many entities (default 100,000)")
    parser.add_argument(
        "--member-lines", type=int, default=MEMBER_LINES,
        help=f"entity lines a gzip member, as Wikimedia gzips (default {MEMBER_LINES:,}); 0: one member",
    )  # fmt: skip
    options = parser.parse_args()
    size = write(options.out, options.entities, member_lines=options.member_lines or None)
    print(f"wrote {options.entities:,} entities to {options.out} ({size / 1024 / 1024:,.1f} MiB)")


if __name__ == "__main__":
    main()
