"""``retention ingest FILE`` and ``retention info``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from retention import workflows
from retention.exceptions import RetentionError
from retention.serving.cli._app import DbOption, app, console, open_store, progress, resolve_db

__all__ = ["info_tables", "ingest_table"]


@app.command("ingest")
def ingest_command(
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSON Lines file (.gz too).")],
    db: DbOption = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="canonical=source: a column name or a SQL expression over columns "
            "(repeatable), e.g. --map user_id=CustomerID --map ts=InvoiceDate.",
        ),
    ] = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option(
            "--event-type",
            help="SOURCE=TYPE value map for event types (repeatable), e.g. --event-type C=return.",
        ),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option("--mapping", help="TOML mapping file ([columns], [event_types], [reader])."),
    ] = None,
    table: Annotated[
        str, typer.Option("--table", help="Table to fill: events, items, users.")
    ] = "events",
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail, loading nothing, if any row is quarantined.")
    ] = False,
    delimiter: Annotated[
        str | None, typer.Option("--delimiter", help="CSV delimiter (default: sniffed).")
    ] = None,
    encoding: Annotated[
        str | None, typer.Option("--encoding", help="utf-8 or latin-1 (default: sniffed).")
    ] = None,
    ts_format: Annotated[
        str | None,
        typer.Option(
            "--ts-format",
            help="strptime format of the times, e.g. '%d/%m/%Y %H:%M', or epoch_s, epoch_ms, "
            "epoch_us for numbers counting from 1970 (default: sniffed).",
        ),
    ] = None,
    min_ts: Annotated[
        str | None,
        typer.Option(
            "--min-ts",
            help="Quarantine times before this date as not real (default: $RETENTION_MIN_TS "
            "or 1990-01-01; none keeps every time).",
            show_default=False,
        ),
    ] = None,
    allow_all_quarantined: Annotated[
        bool,
        typer.Option(
            "--allow-all-quarantined",
            help="Exit 0 even when every row is quarantined (the quarantine keeps them).",
        ),
    ] = False,
) -> None:
    """Ingest a file into the store: validate, quarantine bad rows, skip duplicates."""
    base = workflows.Mapping.from_toml(mapping) if mapping is not None else workflows.Mapping()
    request = workflows.IngestRequest(
        path=file,
        mapping=base.merge(
            workflows.Mapping.from_cli(
                map_ or [],
                event_type or [],
                delimiter=delimiter,
                encoding=encoding,
                ts_format=ts_format,
                min_ts=min_ts,
            )
        ),
        table=table,
        strict=strict,
        allow_all_quarantined=allow_all_quarantined,
    )
    request.check_path()  # before the store file is created
    path = resolve_db(db)
    new = not path.exists()
    try:
        with open_store(path, read_only=False, create=True) as store:
            report = workflows.ingest_file(store, request, progress=progress())
    except RetentionError:
        if new:
            _remove_if_unused(path)  # a failed first ingest leaves no store behind
        raise
    console.print(ingest_table(report))


def _remove_if_unused(path: Path) -> None:
    """Delete a store this command created when no ingest was recorded in it (an ingest whose
    rows were all quarantined keeps the store: its quarantine says why)."""
    try:
        with open_store(path, read_only=True) as store:
            used = bool(workflows.info(store).ingests)
    except RetentionError:
        return  # not a store this command can judge: leave it
    if not used:
        for leftover in (path, path.with_name(path.name + ".wal")):
            leftover.unlink(missing_ok=True)


def ingest_table(report: Any) -> Group:
    """The accounting of one ingest: a heading line and a Rich table.

    The heading is its own line rather than the table's title, which Rich would wrap to the
    width of the (narrow) table.
    """
    heading = Text(
        f"{report.file} -> {report.table} (ingest {report.ingest_id}, {report.seconds:.1f} s)",
        style="italic",
    )
    table = Table()
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_row("read", f"{report.read:,}")
    table.add_row("= loaded", f"{report.loaded:,}")
    table.add_row("+ duplicates", f"{report.duplicates:,}")
    table.add_row("+ quarantined", f"{report.quarantined:,}")
    for reason, n in report.reasons.items():
        table.add_row(f"    {reason}", f"{n:,}")
    unread = list(report.unread)
    if not unread:
        return Group(heading, table)
    shown = ", ".join(unread[:10]) + (f" and {len(unread) - 10} more" if len(unread) > 10 else "")
    note = Text(f"not read (no {report.table} column for them): {shown}", style="dim")
    return Group(heading, table, note)


@app.command("info")
def info_command(db: DbOption = None) -> None:
    """Describe the store: events by type, users, items, time span, quarantine, ingests."""
    with open_store(db, read_only=True) as store:
        info = workflows.info(store).to_dict()
    for table in info_tables(info):
        console.print(table)


def info_tables(info: dict[str, Any]) -> list[Table]:
    """``retention info`` as Rich tables."""
    summary = Table(title=f"Store {info['path']}", title_justify="left", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("events", f"{info['events']:,}")
    for kind, n in info["events_by_type"].items():
        summary.add_row(f"  {kind}", f"{n:,}")
    summary.add_row("users", f"{info['users']:,}")
    summary.add_row("items", f"{info['items']:,}")
    summary.add_row("first event", str(info["first_ts"] or "-"))
    summary.add_row("last event", str(info["last_ts"] or "-"))
    for name in ("items", "users", "assignments", "outcomes"):
        if info["tables"].get(name):
            summary.add_row(f"{name} table rows", f"{info['tables'][name]:,}")
    tables = [summary]
    quarantine = Table(title="Quarantine by reason", title_justify="left", min_width=24)
    quarantine.add_column("reason")
    quarantine.add_column("rows", justify="right")
    for reason, n in info["quarantine_by_reason"].items():
        quarantine.add_row(reason, f"{n:,}")
    if not info["quarantine_by_reason"]:
        quarantine.add_row("(empty)", "0")
    tables.append(quarantine)
    ingests = Table(title="Ingests", title_justify="left")
    for col in ("id", "file", "table", "read", "loaded", "duplicates", "quarantined", "at"):
        ingests.add_column(col, justify="right" if col in {"read", "loaded"} else "left")
    for rec in info["ingests"]:
        ingests.add_row(
            str(rec["ingest_id"]),
            str(rec["file"]),
            str(rec["table_name"]),
            f"{rec['read']:,}",
            f"{rec['loaded']:,}",
            f"{rec['duplicates']:,}",
            f"{rec['quarantined']:,}",
            str(rec["started_at"])[:19],
        )
    tables.append(ingests)
    return tables
