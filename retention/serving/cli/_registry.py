"""``retention models|promote|rollback``: the model registry with stages (issue 16)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from retention import workflows
from retention.serving.cli._app import (
    DbOption,
    app,
    console,
    err_console,
    open_store,
    progress,
)

__all__ = ["models_command", "promote_command", "rollback_command"]

JsonOption = Annotated[
    Path | None, typer.Option("--json", help="Also write the result as JSON to this file.")
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why, in words (recorded in the registry).")
]


def _date(value: Any) -> str:
    return "" if value is None else str(value)[:10]


def _time(value: Any) -> str:
    return "" if value is None else str(value)[:19].replace("T", " ")


def _auc(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


@app.command("models")
def models_command(db: DbOption = None, json_out: JsonOption = None) -> None:
    """List the registry's model versions: stage, cutoff, horizon, created, backtest ROC-AUC."""
    if json_out is not None:
        workflows.check_output_path(json_out, "--json", "models.json")
    with open_store(db, read_only=True) as store:
        listing = workflows.list_models(store)
    if not listing.models:
        console.print(
            f"no model registered in {store.path}: train one with `retention train`",
            highlight=False,
            soft_wrap=True,
        )
    else:
        # one line per version (ids are never cut, whatever the terminal's width)
        console.print(f"models of {store.path}, newest first:", highlight=False, soft_wrap=True)
        for m in listing.models:
            bt = m.backtest or {}
            line = Text.assemble(
                (f"{m.model_id:<14}", "bold"),
                f"{m.name or '':<11}",
                (f"{m.stage:<12}", "bold green" if m.stage == "production" else ""),
                f"cutoff {_date(m.cutoff)}  ",
                f"horizon {m.horizon_days} d  " if m.horizon_days is not None else "",
                f"created {_time(m.created_at)[:16]}  ",
                f"backtest ROC-AUC {_auc(bt.get('roc_auc'))}"
                + (f" at {_date(bt.get('cutoff'))}" if bt else ""),
                ("" if m.artifact == "ok" else f"  artifact {m.artifact}", "bold red"),
            )
            console.print(line, highlight=False, soft_wrap=True)
        prod = listing.production
        console.print(
            f"production: {prod}" if prod else "production: none yet (`retention promote`)",
            highlight=False,
            soft_wrap=True,
        )
    if json_out is not None:
        written = workflows.write_registry_json(listing.to_dict(), json_out)
        console.print(f"json: {written}", highlight=False, soft_wrap=True)


def _comparison(report: workflows.PromoteReport) -> Table | None:
    ev = report.evidence
    if "difference" not in ev:
        return None
    table = Table(
        title=(
            f"Latest backtest at {ev['cutoff']} (labels to {ev['label_window_end']}), horizon "
            f"{ev['horizon_days']} days, {ev['n_users']:,} customers, both refit"
        )
    )
    for col in ("role", "model_id", "name", "roc_auc", "pr_auc", "brier"):
        table.add_column(col, justify="right" if col in ("roc_auc", "pr_auc", "brier") else "left")
    for role in ("candidate", "production"):
        part = ev[role]
        m = part["metrics"]
        table.add_row(
            role,
            Text(part["model_id"]),
            Text(part["name"]),
            _auc(m.get("roc_auc")),
            _auc(m.get("pr_auc")),
            _auc(m.get("brier")),
        )
    return table


@app.command("promote")
def promote_command(
    db: DbOption = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="The candidate's model id (default: the newest candidate)."),
    ] = None,
    margin: Annotated[
        float,
        typer.Option("--margin", help="ROC-AUC the candidate must gain over production."),
    ] = 0.005,  # workflows.DEFAULT_PROMOTE_MARGIN, literal so that --help imports no model code
    force: Annotated[
        bool, typer.Option("--force", help="Promote whatever the comparison says (recorded).")
    ] = False,
    reason: ReasonOption = None,
    json_out: JsonOption = None,
) -> None:
    """Promote a candidate to production when it beats production on the latest backtest."""
    if json_out is not None:
        workflows.check_output_path(json_out, "--json", "promote.json")
    request = workflows.PromoteRequest(model_id=model, margin=margin, force=force, reason=reason)
    with open_store(db, read_only=False) as store:
        report = workflows.promote(store, request, progress=progress())
    table = _comparison(report)
    if table is not None:
        console.print(table)
        ev = report.evidence
        console.print(
            f"difference {ev['difference']:+.4f} (paired bootstrap 95% interval "
            f"{ev['ci_low']:+.4f} to {ev['ci_high']:+.4f}, {ev['resamples']} resamples); "
            f"margin {ev['margin']:.4f}; decision: {report.decision}",
            highlight=False,
            soft_wrap=True,
        )
    elif "backtest_error" in report.evidence:
        console.print(
            f"no backtest figures: {report.evidence['backtest_error']}",
            highlight=False,
            soft_wrap=True,
        )
    if json_out is not None:
        written = workflows.write_registry_json(report.to_dict(), json_out)
        console.print(f"json: {written}", highlight=False, soft_wrap=True)
    if not report.promoted:
        err_console.print(
            Text.assemble(("error:", "bold red"), " ", report.message),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    console.print(report.message, highlight=False, soft_wrap=True)


@app.command("rollback")
def rollback_command(
    db: DbOption = None,
    to: Annotated[
        str | None,
        typer.Option("--to", help="A former production model (default: the previous one)."),
    ] = None,
    reason: ReasonOption = None,
) -> None:
    """Give production back to the previous production model (recorded in the registry)."""
    request = workflows.RollbackRequest(to=to, reason=reason)
    with open_store(db, read_only=False) as store:
        report = workflows.rollback(store, request)
    console.print(report.message, highlight=False, soft_wrap=True)
