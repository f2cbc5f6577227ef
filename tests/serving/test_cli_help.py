"""The help of every command reads as whole paragraphs.

Typer's Rich help (typer 0.29) keeps a single line break of a docstring as a line break: in the
first paragraph where ``retention --help`` lists the commands, and in every later paragraph of a
command's own help. So a paragraph of help is one line of the docstring; a blank line separates
paragraphs.
"""

from __future__ import annotations

import inspect
import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from retention.serving.cli import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    yield " ".join(path), command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))


def _broken_paragraphs(help_text: str | None) -> list[str]:
    text = inspect.cleandoc(help_text or "").partition("\f")[0]
    return [p for p in text.split("\n\n") if "\n" in p and not p.startswith("\b")]


def test_the_check_finds_a_paragraph_broken_over_two_lines() -> None:
    assert _broken_paragraphs("One line.\n\nA paragraph\nbroken in two.") == [
        "A paragraph\nbroken in two."
    ]
    assert _broken_paragraphs("One line.\n\nAnother line.") == []


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_paragraphs_are_single_lines(name: str) -> None:
    command = COMMANDS[name]
    assert command.help, f"`retention {name}` has no help"
    assert _broken_paragraphs(command.help) == []


def _listed_rows(group: str) -> dict[str, list[str]]:
    """The rows of each command of the commands panel of ``retention GROUP --help``."""
    out = CliRunner().invoke(app, [*group.split(), "--help"], terminal_width=100).output
    rows: dict[str, list[str]] = {}
    name = None
    in_panel = False
    for line in out.splitlines():
        if line.startswith("╭─ Commands"):
            in_panel = True
        elif line.startswith("╰"):
            in_panel = False
        elif in_panel and line.startswith("│"):
            inner = line[1:].rstrip().rstrip("│").rstrip()
            first, _, rest = inner.strip().partition(" ")
            if not inner.startswith("  ") and first:
                name = first
                rows[name] = [rest.strip()]
            elif name is not None:
                rows[name].append(inner.strip())
    return rows


@pytest.mark.parametrize("group", [g for g, c in COMMANDS.items() if hasattr(c, "commands")])
def test_command_lists_wrap_only_where_a_line_is_full(
    group: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 100 columns a summary in a commands panel goes on to a new row only when the next word
    does not fit on the row before."""
    monkeypatch.setitem(os.environ, "COLUMNS", "100")
    listed = _listed_rows(group)
    assert set(listed) == set(COMMANDS[group].commands)
    width = max(len(r) for rows in listed.values() for r in rows)
    short = {
        name: rows
        for name, rows in listed.items()
        if any(len(a) + 1 + len(b.split()[0]) <= width for a, b in itertools.pairwise(rows))
    }
    assert short == {}
