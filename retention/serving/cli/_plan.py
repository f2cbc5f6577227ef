"""``retention plan``: one action per customer within a budget."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from retention import workflows
from retention.serving.cli._app import DbOption, app, console, open_store, progress, resolve_db

__all__ = ["plan_command", "print_plan"]


def _f(x: Any, fmt: str = ",.2f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(float(x), fmt)


def print_plan(rep: Any) -> None:
    """Print a plan's totals by action with Rich."""
    a = rep.allocation
    console.print(
        f"plan {rep.plan_id}: {len(rep.rows):,} customers, budget {_f(rep.budget)}, expected "
        f"cost {_f(rep.expected_cost)}, expected incremental value {_f(rep.expected_value)} "
        f"(net {_f(rep.expected_value - rep.expected_cost)}); objective {rep.objective}, "
        f"optimiser {a.method}, at most {100 * a.gap:.3f}% from the best",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title="totals by action (95% bootstrap intervals)", title_justify="left")
    for col in ("action", "customers", "incr. conversions", "value", "cost", "ROI"):
        table.add_column(col, justify="left" if col == "action" else "right")
    t = rep.totals
    for name, r in t.iterrows():
        if name == "none":
            table.add_row("none", f"{int(r['customers']):,}", "", "", "", "")
            continue
        table.add_row(
            str(name),
            f"{int(r['customers']):,}",
            f"{_f(r['incremental_conversions'], ',.1f')} "
            f"({_f(r['incremental_conversions_low'], ',.1f')} .. "
            f"{_f(r['incremental_conversions_high'], ',.1f')})",
            f"{_f(r['incremental_value'])}",
            f"{_f(r['cost'])}",
            f"{_f(r['roi'], '.2f')} ({_f(r['roi_low'], '.2f')} .. {_f(r['roi_high'], '.2f')})",
        )
    console.print(table)
    for note in rep.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


@app.command("plan")
def plan_command(
    budget: Annotated[
        float, typer.Option("--budget", help="Most total expected cost of the offers.")
    ],
    db: DbOption = None,
    offers: Annotated[
        Path | None,
        typer.Option("--offers", help="Offers TOML (default: the uplift model's treatments)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the plan to a .csv or .parquet.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the plan's HTML page.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the totals as JSON.")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="Optimiser: auto, milp, lagrangian or greedy.")
    ] = "auto",
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            help="'value': most incremental value within the budget; 'net': value minus cost, "
            "only offers that pay for themselves.",
        ),
    ] = "value",
) -> None:
    """Choose each customer's action (an offer or none) within the budget; write the plan table.

    With each action: its reasons, the customer's recommended items and loyalty tier."""
    path = resolve_db(db)
    request = workflows.PlanRequest(
        budget=budget,
        offers=None if offers is None else workflows.read_offers(offers),
        out=out,
        method=method,
        objective=objective,
    )
    with open_store(path, read_only=False) as store:
        rep = workflows.plan(store, request, progress=progress())
    print_plan(rep)
    console.print(f"table: plan in {path}", highlight=False, soft_wrap=True)
    if rep.out is not None:
        console.print(f"file: {rep.out}", highlight=False, soft_wrap=True)
    if json_out is not None:
        workflows.write_plan_json(rep, json_out)
        console.print(f"totals: {json_out}", highlight=False, soft_wrap=True)
    if report is not None:
        from retention.serving.report import render_plan_report

        written = render_plan_report(rep, report)
        console.print(f"report: {written}", highlight=False, soft_wrap=True)
