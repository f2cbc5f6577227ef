"""The Typer application every command module registers on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from retention._settings import get_settings

__all__ = ["DbOption", "app", "console", "err_console", "resolve_db"]

app = typer.Typer(
    name="retention",
    help="Customer retention for e-commerce: who comes back, what they are worth, why, what to do.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True)

#: ``--db PATH``, shared by every command that reads or writes the store
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="DuckDB store (default: $RETENTION_DB or ./retention.duckdb).",
        show_default=False,
    ),
]


@app.callback()
def _root() -> None:
    """Customer retention for e-commerce: who comes back, what they are worth, why, what to do."""


def resolve_db(db: Path | None) -> Path:
    """``--db`` when given, else ``RETENTION_DB``, else ``./retention.duckdb``."""
    return db if db is not None else get_settings().db
