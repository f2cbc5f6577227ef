"""``retention backtest``, ``retention train`` and ``retention score``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    resolve_db,
)

__all__ = ["backtest_command", "score_command", "train_command"]

#: the default of ``--models``, a literal so that ``retention --help`` need not import the models
#: (tests/serving/test_cli_predict.py checks it equals ``workflows.DEFAULT_BACKTEST_MODELS``)
DEFAULT_MODELS = "bgnbd,paretonbd,gbdt,ensemble"

HorizonOption = Annotated[
    int, typer.Option("--horizon", help="Label window in days: a purchase in [cutoff, +DAYS).")
]


@app.command("backtest")
def backtest_command(
    cutoff: Annotated[
        str, typer.Option("--cutoff", help="Held-out test cutoff, YYYY-MM-DD.", show_default=False)
    ],
    db: DbOption = None,
    horizon: HorizonOption = 90,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write the metrics as JSON (and the HTML report next to it)."),
    ] = None,
    models: Annotated[
        str,
        typer.Option(
            "--models",
            help="Comma-separated model names; 'ensemble' stacks the other listed ones.",
        ),
    ] = DEFAULT_MODELS,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="HTML report path (default: the --json path with .html)."),
    ] = None,
    n_train: Annotated[int, typer.Option("--n-train", help="Number of training cutoffs.")] = 3,
) -> None:
    """Fit models on earlier cutoffs, measure them on CUTOFF, write JSON and an HTML report."""
    from retention.serving.report import render_backtest_report

    request = workflows.BacktestRequest(
        cutoff=workflows.to_cutoff(cutoff),
        horizon_days=horizon,
        models=tuple(m.strip() for m in models.split(",")),
        n_train=n_train,
    )
    with open_store(db, read_only=True) as store:
        result = workflows.backtest(store, request, progress=progress())
    if json_out is not None:
        workflows.write_backtest_json(result, json_out)
    payload = result.to_json_dict()
    table = Table(
        title=(
            f"Backtest at {payload['cutoff']}, horizon {payload['horizon_days']} days: "
            f"{payload['n_users']:,} customers, base rate {payload['base_rate']:.3f}"
        )
    )
    table.add_column("model", style="bold")
    for col in ("roc_auc", "pr_auc", "brier", "log_loss", "lift_at_10"):
        table.add_column(col, justify="right")
    for name, m in payload["models"].items():
        table.add_row(
            name,
            *(f"{m[c]:.4f}" for c in ("roc_auc", "pr_auc", "brier", "log_loss")),
            f"{m['lift_at_10']:.2f}",
        )
    console.print(table)
    html = report if report is not None else (json_out.with_suffix(".html") if json_out else None)
    if json_out is not None:
        console.print(f"metrics: {json_out}", highlight=False, soft_wrap=True)
    if html is not None:
        written = render_backtest_report(result, html, title=f"Retention backtest at {cutoff}")
        console.print(f"report: {written}", highlight=False, soft_wrap=True)


@app.command("train")
def train_command(
    db: DbOption = None,
    out: Annotated[Path, typer.Option("--out", help="The model artifact to write.")] = Path(
        "model.retention"
    ),
    model: Annotated[
        str, typer.Option("--model", help="Model name (see `retention backtest --models`).")
    ] = "ensemble",
    cutoff: Annotated[
        str | None,
        typer.Option("--cutoff", help="Cutoff to score at, YYYY-MM-DD (default: last purchase)."),
    ] = None,
    horizon: HorizonOption = 90,
    n_train: Annotated[int, typer.Option("--n-train", help="Number of training cutoffs.")] = 3,
) -> None:
    """Train a model on the latest complete cutoffs and save a versioned artifact."""
    request = workflows.TrainRequest(
        out=out,
        model=model,
        cutoff=parse_cutoff_option(cutoff),
        horizon_days=horizon,
        n_train=n_train,
    )
    with open_store(db, read_only=False) as store:
        rep = workflows.train(store, request, progress=progress())
    meta = rep.metadata
    valid = meta.get("metrics", {}).get("valid", {})
    console.print(
        f"trained {meta.get('registry_name')} (id {meta.get('model_id')}) for cutoff "
        f"{str(meta.get('cutoff'))[:10]}, horizon {meta.get('horizon_days')} days; "
        f"valid ROC-AUC {valid.get('roc_auc', float('nan')):.3f} (optimistic: see backtest)",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"model: {rep.path}", highlight=False, soft_wrap=True)


@app.command("score")
def score_command(
    db: DbOption = None,
    model: Annotated[
        Path, typer.Option("--model", help="Artifact written by `retention train`.")
    ] = Path("model.retention"),
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the scores to a .csv or .parquet.")
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option("--cutoff", help="Score at this date, YYYY-MM-DD (default: last purchase)."),
    ] = None,
    horizon: Annotated[
        int | None,
        typer.Option("--horizon", help="Must match the model's horizon (default: the model's)."),
    ] = None,
    table: Annotated[str, typer.Option("--table", help="Store table to write.")] = "scores",
) -> None:
    """Write each customer's P(retained), P(alive), expected purchases, CLV and risk band."""
    path = resolve_db(db)
    request = workflows.ScoreRequest(
        model_path=model,
        cutoff=parse_cutoff_option(cutoff),
        horizon_days=horizon,
        out=out,
        table=table,
    )
    with open_store(path, read_only=False) as store:
        rep = workflows.score(store, request, progress=progress())
    bands = ", ".join(f"{k} {v:,}" for k, v in rep.bands.items())
    console.print(
        f"scored {len(rep.scores):,} customers at {rep.cutoff:%Y-%m-%d} with model "
        f"{rep.model_version}; risk: {bands}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"table: {rep.table} in {path}", highlight=False, soft_wrap=True)
    if rep.out is not None:
        console.print(f"file: {rep.out}", highlight=False, soft_wrap=True)
