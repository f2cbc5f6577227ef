"""``retention runs``: the tracked runs (MLflow) of a store, without the MLflow UI."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from retention import workflows
from retention.serving.cli._app import DbOption, app, console, open_store

__all__ = ["runs_command"]


@app.command("runs")
def runs_command(
    db: DbOption = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="Only runs of this kind: backtest, train, tune, uplift_evaluate, uplift_train, "
            "experiment.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most runs listed.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the tracked runs of the store, newest first: id, kind, time, main metric."""
    with open_store(db, read_only=True) as store:
        found = workflows.list_runs(store, limit=limit, kind=kind)
    if as_json:
        print(json.dumps(found.to_dict(), indent=2, allow_nan=False))
        return
    if not found.runs:
        state = "" if found.enabled else " (tracking is off: RETENTION_TRACKING=0)"
        console.print(
            f"No tracked runs at {found.tracking_uri}{state}.", highlight=False, soft_wrap=True
        )
        return
    table = Table(title=f"Tracked runs at {found.tracking_uri}")
    table.add_column("run id", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("cutoff", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    for r in found.runs:
        table.add_row(
            r.run_id[:12],
            r.kind if r.status == "FINISHED" else f"{r.kind} ({r.status.lower()})",
            r.start_time.replace("T", " ")[:16],
            r.cutoff[:10],
            (r.main_metric or "").rsplit(".", 1)[-1],
            f"{r.value:.4f}" if r.value is not None else "",
        )
    console.print(table)
    console.print(
        "Run ids are cut to 12 characters (--json lists them whole). In the MLflow UI "
        f"(pip install mlflow): mlflow ui --backend-store-uri {found.tracking_uri}",
        highlight=False,
        soft_wrap=True,
    )
