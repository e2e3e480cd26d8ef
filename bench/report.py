"""Results: tables printed with rich, and sections of BENCHMARKS.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from .harness import ROOT

BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
HEADER = """# Benchmarks

Produced by `python -m bench` (the package `bench/`; `--quick` for small N, `--only NAME` for one,
`--write` to rewrite this file's sections). Each section says the exact command, the date and the
machine; its figures come from that one run, both sides of every ratio from the same run, and it
says what else used the CPUs meanwhile. Nothing here is a test: no figure is asserted anywhere.
"""


@dataclass
class Table:
    """Rows of figures under one title; ``notes`` explain how they were measured."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        self.rows.append(list(cells))


@dataclass
class Goal:
    """``what`` is ``value``; the goal is ``target``; ``met`` says whether it is reached."""

    what: str
    value: str
    target: str
    met: bool

    def line(self) -> str:
        return f"{self.what}: {self.value} (goal {self.target}): {'met' if self.met else 'NOT met'}"


@dataclass
class Result:
    """What one benchmark reports."""

    name: str
    title: str
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def show(result: Result, console: Console) -> None:
    console.rule(f"[bold]{result.title}")
    for line in result.context:
        console.print(line, style="dim", highlight=False)
    for table in result.tables:
        rich_table = RichTable(title=table.title, title_justify="left")
        for index, column in enumerate(table.columns):
            rich_table.add_column(column, justify="left" if index == 0 else "right")
        for row in table.rows:
            rich_table.add_row(*row)
        console.print(rich_table)
        for note in table.notes:
            console.print(f"  {note}", style="dim", highlight=False)
    for goal in result.goals:
        console.print(f"  {goal.line()}", style="green" if goal.met else "red", highlight=False)
    for note in result.notes:
        console.print(f"  {note}", highlight=False)


def markdown(result: Result) -> str:
    lines = [f"<!-- bench:{result.name} -->", f"## {result.title}", ""]
    lines += [f"{line}  " for line in result.context] + [""]
    for table in result.tables:
        lines += [f"**{table.title}**", ""]
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "|".join([":---", *["---:"] * (len(table.columns) - 1)]) + "|")
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows]
        lines.append("")
        lines += [f"- {note}" for note in table.notes]
        if table.notes:
            lines.append("")
    lines += [f"- **{goal.line()}**" for goal in result.goals]
    lines += [f"- {note}" for note in result.notes]
    lines += ["", f"<!-- /bench:{result.name} -->"]
    return "\n".join(lines)


def write(results: list[Result], order: list[str], path: Path = BENCHMARKS_MD) -> None:
    """Rewrite the sections of ``results`` in ``path``; keep the other sections as they are.

    A section that is no benchmark's (``<!-- bench:analysis -->``, written by hand) stays at the end.
    """
    sections = _sections(path.read_text(encoding="utf-8")) if path.exists() else {}
    sections.update({result.name: markdown(result) for result in results})
    body = [sections[name] for name in order if name in sections]
    body += [text for name, text in sections.items() if name not in order]
    path.write_text(HEADER + "\n" + "\n\n".join(body) + "\n", encoding="utf-8")


def _sections(text: str) -> dict[str, str]:
    pattern = re.compile(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", re.DOTALL)
    return {match.group(1): match.group(0) for match in pattern.finditer(text)}
