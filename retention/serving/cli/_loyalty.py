"""``retention loyalty run|check|example``: the loyalty programme."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from retention import workflows
from retention.serving.cli._app import (
    DbOption,
    app,
    console,
    open_store,
    parse_cutoff_option,
    progress,
)

__all__ = ["loyalty_app", "print_loyalty"]

loyalty_app = typer.Typer(
    name="loyalty",
    help="A loyalty programme: tiers, points ledger, holdout, cost (declared in a TOML file).",
    no_args_is_help=True,
)
app.add_typer(loyalty_app, name="loyalty")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Programme TOML (default: `retention loyalty example`)."),
]


def _program(config: Path | None) -> Any:
    if config is None:
        return workflows.LoyaltyProgram.default()
    return workflows.LoyaltyProgram.from_toml(config)


def _f(x: Any, fmt: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(float(x), fmt)


def print_loyalty(payload: dict[str, Any]) -> None:
    """Print a loyalty run's summary (``LoyaltyReport.to_dict()``) with Rich."""
    s = payload["summary"]
    console.print(
        f"programme {payload['program']} at {payload['as_of']} (run {payload['run_id']}): "
        f"{s['members']:,} members, {s['holdout']:,} in the holdout "
        f"({100 * s['holdout_share']:.1f}%)",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title="members by tier and movement since the last run", title_justify="left")
    table.add_column("tier")
    table.add_column("members", justify="right")
    for tier, n in s["by_tier"].items():
        table.add_row(tier, f"{n:,}")
    console.print(table)
    moves = ", ".join(f"{k} {v:,}" for k, v in s["movement"].items())
    led = payload["ledger"]
    console.print(
        f"movement: {moves}; ledger: {led['entries']:,} entries ({led['added']:,} new, "
        f"{led['restated']:,} restated); {s['points_outstanding']:,} points outstanding",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"expected cost over {s['horizon_days']} days: {_f(s['horizon_cost'], ',.2f')} (plus "
        f"{_f(s['liability'], ',.2f')} of points already earned); it pays for itself if it "
        f"raises members' P(retained) by {_f(100 * s['break_even_lift'], '.2f')} points "
        f"({_f(100 * s['break_even_relative'], '.1f')}% of their expected value)",
        highlight=False,
        soft_wrap=True,
    )
    eff = s.get("measured_effect")
    if eff:
        console.print(
            f"measured against the holdout since {eff['as_of']}: members "
            f"{100 * eff['members_rate']:.1f}% vs holdout {100 * eff['holdout_rate']:.1f}% came "
            f"back ({100 * eff['difference']:+.1f} points, {100 * eff['low']:+.1f} .. "
            f"{100 * eff['high']:+.1f}; p {eff['p_value']:.3g})",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(
            "effect: not measured yet (no earlier run whose horizon has passed); the holdout "
            "will measure it",
            highlight=False,
            soft_wrap=True,
        )


@loyalty_app.command("run")
def run_command(
    db: DbOption = None,
    config: ConfigOption = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Run date, YYYY-MM-DD (default: the day after the last event)."
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the summary as JSON.")
    ] = None,
) -> None:
    """Set tiers, replay the points ledger, keep the holdout; write the loyalty tables."""
    request = workflows.LoyaltyRunRequest(
        program=_program(config), as_of=parse_cutoff_option(as_of)
    )
    with open_store(db, read_only=False) as store:
        rep = workflows.loyalty_run(store, request, progress=progress())
    payload = rep.to_dict()
    print_loyalty(payload)
    if json_out is not None:
        workflows.write_loyalty_json(rep, json_out)
        console.print(f"summary: {json_out}", highlight=False, soft_wrap=True)


@loyalty_app.command("check")
def check_command(
    config: Annotated[Path, typer.Option("--config", help="Programme TOML to check.")],
) -> None:
    """Validate a programme file and print its tiers."""
    program = workflows.LoyaltyProgram.from_toml(config)
    table = Table(title=f"programme {program.name}: tiers by {program.basis}, {program.thresholds}")
    for col in ("tier", "share", "min_score", "points x", "discount", "benefit", "assumed lift"):
        table.add_column(col, justify="left" if col == "tier" else "right")
    for t in program.tiers:
        table.add_row(
            t.name,
            _f(t.share),
            _f(t.min_score),
            _f(t.points_multiplier),
            _f(t.discount),
            _f(t.benefit_cost),
            _f(t.expected_lift),
        )
    console.print(table)
    console.print(f"{config} is valid", highlight=False, soft_wrap=True)


@loyalty_app.command("example")
def example_command() -> None:
    """Print the default programme as TOML (a starting point for --config)."""
    typer.echo(workflows.DEFAULT_PROGRAM_TOML, nl=False)
