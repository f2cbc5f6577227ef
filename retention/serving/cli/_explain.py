"""``retention explain``: one customer's reasons, stored reasons, or the explain report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from retention import workflows
from retention.exceptions import ConfigError
from retention.serving.cli._app import (
    DbOption,
    app,
    console,
    open_store,
    parse_cutoff_option,
    progress,
    resolve_db,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["explain_command", "print_user_explanation"]


def print_user_explanation(exp: workflows.UserExplanation) -> None:
    """Print a customer's score and reasons with Rich."""
    days = "1 day" if int(exp.horizon_days) == 1 else f"{exp.horizon_days} days"
    console.print(
        Text.assemble(
            (f"Customer {exp.user_id}", "bold"),
            f": P(retained) {exp.p_retained:.2f} within {days} of {exp.cutoff:%Y-%m-%d}, "
            "churn risk ",
            (str(exp.risk_band), "bold"),
            f" (model {exp.model_version}, reasons {exp.source})",
        ),
        highlight=False,
        soft_wrap=True,
    )
    if exp.note:
        console.print(exp.note, highlight=False, soft_wrap=True)
    for title, items, colour in (
        ("Toward churn", exp.churn, "red"),
        ("Toward retention", exp.retention, "green"),
    ):
        if not items:
            continue
        table = Table(title=title, title_justify="left", show_lines=False)
        table.add_column("#", justify="right")
        table.add_column("reason")
        table.add_column("impact", justify="right", style=colour)
        for i, r in enumerate(items, start=1):
            table.add_row(str(i), str(r["text"]), f"{float(r['contribution']):+.2f}")  # type: ignore[arg-type]
        console.print(table)


@app.command("explain")
def explain_command(
    user: Annotated[
        str | None, typer.Option("--user", help="Explain this customer's score.")
    ] = None,
    db: DbOption = None,
    model: Annotated[
        Path, typer.Option("--model", help="Artifact written by `retention train`.")
    ] = Path("model.retention"),
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--cutoff",
            help="YYYY-MM-DD: the scoring date for --user/--store-reasons (default: last "
            "purchase); the held-out test cutoff for --report.",
        ),
    ] = None,
    store_reasons: Annotated[
        bool,
        typer.Option(
            "--store-reasons", help="Write every customer's reasons to the score_reasons table."
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Run importance, selection and fairness at --cutoff; write this HTML report.",
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the result as JSON.")
    ] = None,
    horizon: Annotated[int, typer.Option("--horizon", min=1, help="Label window (--report).")] = 90,
    sensitive: Annotated[
        list[str] | None,
        typer.Option("--sensitive", help="A users-table column to check fairness by (repeat)."),
    ] = None,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Accepted fall in validation ROC-AUC (--report).")
    ] = 0.002,
    currency: Annotated[str, typer.Option("--currency", help="Symbol before money.")] = "",
) -> None:
    """Why a customer got their score (--user), or importance, selection and fairness (--report)."""
    path = resolve_db(db)
    if user is None and report is None and not store_reasons:
        raise ConfigError(
            "Nothing to explain. Pass --user ID (one customer), --store-reasons (everyone, "
            "beside the scores) or --report FILE --cutoff YYYY-MM-DD (importance, selection, "
            "fairness)."
        )
    if report is not None and cutoff is None:
        raise ConfigError("--report needs the held-out test cutoff: pass --cutoff YYYY-MM-DD.")
    at = parse_cutoff_option(cutoff)
    # output files are checked before the work, not after it
    if report is not None:
        workflows.check_output_path(report, "--report", "explain.html")
    if json_out is not None:
        workflows.check_output_path(json_out, "--json", "explain.json")
    # one store for the whole command, written only by --store-reasons
    with open_store(path, read_only=not store_reasons) as store:
        _explain(
            store,
            path,
            user,
            model,
            at,
            store_reasons,
            report,
            json_out,
            horizon,
            sensitive,
            tolerance,
            currency,
        )


def _explain(
    store: workflows.Store,
    path: Path,
    user: str | None,
    model: Path,
    cutoff: pd.Timestamp | None,
    store_reasons: bool,
    report: Path | None,
    json_out: Path | None,
    horizon: int,
    sensitive: list[str] | None,
    tolerance: float,
    currency: str,
) -> None:
    cache = workflows.ModelCache()  # --store-reasons and --user load the model once
    if store_reasons:
        rep = workflows.store_reasons(
            store,
            workflows.StoreReasonsRequest(model_path=model, cutoff=cutoff, currency=currency),
            progress=progress(),
            cache=cache,
        )
        console.print(
            f"wrote reasons of {rep.n_users:,} customers at {rep.cutoff:%Y-%m-%d} (model "
            f"{rep.model_version}) to table {rep.table} in {path} ({rep.seconds:.1f} s)",
            highlight=False,
            soft_wrap=True,
        )
    if user is not None:
        exp = workflows.explain_user(
            store,
            workflows.ExplainUserRequest(
                user_id=user, model_path=model, cutoff=cutoff, currency=currency
            ),
            progress=progress(),
            cache=cache,
        )
        print_user_explanation(exp)
        if json_out is not None and report is None:
            _write_json(json_out, exp.to_dict())
    if report is not None:
        from retention.serving.report import render_explain_report

        assert cutoff is not None  # checked by the command
        result = workflows.explain_backtest(
            store,
            workflows.ExplainBacktestRequest(
                cutoff=cutoff,
                horizon_days=horizon,
                sensitive=tuple(sensitive or ()),
                tolerance=tolerance,
                currency=currency,
            ),
            progress=progress(),
        )
        sel = result.selection
        console.print(
            f"selected {len(sel.selected)} of {int(sel.curve['n_features'].iloc[0])} features "
            f"(dropped: {', '.join(sel.dropped) or 'nothing'}); test ROC-AUC full "
            f"{result.test_auc['full']:.4f}, selected {result.test_auc['selected']:.4f}",
            highlight=False,
            soft_wrap=True,
        )
        for line in result.fairness.warnings:
            console.print(
                Text.assemble(("warning:", "yellow"), " ", " ".join(str(line).split())),
                highlight=False,
                soft_wrap=True,
            )
        written = render_explain_report(result, report)
        console.print(f"report: {written}", highlight=False, soft_wrap=True)
        if json_out is not None:
            workflows.write_explain_json(result, json_out)
            console.print(f"json: {json_out}", highlight=False, soft_wrap=True)


def _write_json(path: Path, payload: dict[str, object]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                workflows.json_clean(payload),
                indent=2,
                default=str,
                ensure_ascii=False,
                allow_nan=False,
            )
            + "\n",
            encoding="utf-8",
        )
    except OSError as exc:
        raise ConfigError(
            f"Cannot write {path}: {exc.strerror or exc}. Pass another --json."
        ) from exc
