"""``retention datasets list`` and ``retention datasets load NAME --db DB``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from retention import workflows
from retention.serving.cli._app import DbOption, app, console, open_store, progress, resolve_db

__all__ = ["datasets_app", "format_report"]

datasets_app = typer.Typer(
    name="datasets",
    help="The real datasets bundled with retention: list them, load one into a store.",
    no_args_is_help=True,
)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("list")
def list_command() -> None:
    """List the bundled datasets: name, what they are, rows, licence."""
    table = Table(title="Bundled datasets (attribution: docs/datasets.md)")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("what")
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("licence", no_wrap=True)
    for info in workflows.list_datasets():
        table.add_row(info.name, info.what, f"{info.rows:,}", info.licence)
    console.print(table)


@datasets_app.command("load")
def load_command(
    name: Annotated[str, typer.Argument(help="Dataset name (see `retention datasets list`).")],
    db: DbOption = None,
) -> None:
    """Load a bundled dataset into the store and print each table's accounting."""
    workflows.dataset_info(name)  # an unknown name fails before a store file is created
    path = resolve_db(db)
    with open_store(path, read_only=False, create=True) as store:
        reports = workflows.load_dataset(store, name, progress=progress()).reports
    for report in reports:
        console.print(format_report(report), highlight=False, soft_wrap=True)
    console.print(f"{name} loaded into {path}", highlight=False, soft_wrap=True)


def format_report(report: Any) -> str:
    """One line: ``TABLE: read N = loaded L + duplicates D + quarantined Q (reason: n, ...)``."""
    line = (
        f"{report.table}: read {report.read:,} = loaded {report.loaded:,}"
        f" + duplicates {report.duplicates:,} + quarantined {report.quarantined:,}"
    )
    reasons = getattr(report, "reasons", None) or {}
    if reasons:
        line += " (" + ", ".join(f"{why}: {n:,}" for why, n in reasons.items()) + ")"
    return line
