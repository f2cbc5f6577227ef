"""``retention tune``: hyper-parameter search with Optuna, stored so that it resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from retention import workflows
from retention.serving.cli._app import (
    DbOption,
    HorizonOption,
    NTrainOption,
    RetainedByOption,
    app,
    console,
    open_store,
    parse_cutoff_option,
    parse_params_option,
    progress,
)

__all__ = ["tune_command"]


@app.command("tune")
def tune_command(
    trials: Annotated[
        int, typer.Option("--trials", help="Trials to run now (added to the stored study's).")
    ],
    db: DbOption = None,
    sampler: Annotated[
        str, typer.Option("--sampler", help="tpe (Bayesian), random or grid.")
    ] = "tpe",
    model: Annotated[
        str, typer.Option("--model", help="Model to tune: gbdt, sequence or text_lm_lora.")
    ] = "gbdt",
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--cutoff",
            help="Cutoff tuned for, YYYY-MM-DD (a backtest's test cutoff, or where train will "
            "score; default: last purchase). Only earlier label windows are used.",
        ),
    ] = None,
    horizon: HorizonOption = 90,
    n_train: NTrainOption = 3,
    retained_by: RetainedByOption = "purchase",
    storage: Annotated[
        Path | None,
        typer.Option(
            "--storage",
            help="SQLite file of the study (default: next to the store, <db>.optuna.sqlite3).",
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option("--study", help="Study name (default: model, cutoff and horizon)."),
    ] = None,
    params: Annotated[
        str | None,
        typer.Option("--params", help="Hyper-parameters held fixed: a JSON object or a JSON file."),
    ] = None,
    prune: Annotated[
        bool, typer.Option("--prune/--no-prune", help="Stop unpromising trials early.")
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampler.")] = 0,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=1, help="Start no new trial after this many seconds."),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Write the study (best parameters, every trial) as JSON; "
            "`retention train --params FILE` reads it.",
        ),
    ] = None,
) -> None:
    """Search a model's hyper-parameters on the learning cutoffs before CUTOFF; store the best.

    CUTOFF's own labels are never used. The best is printed too; a search can be resumed."""
    if json_out is not None:  # before the search, not after it
        workflows.check_output_path(json_out, "--json", "tune.json")
    request = workflows.TuneRequest(
        n_trials=trials,
        model=model,
        sampler=sampler,
        cutoff=parse_cutoff_option(cutoff),
        horizon_days=horizon,
        n_train=n_train,
        retained_by=retained_by,
        storage=storage,
        study=study,
        fixed_params=parse_params_option(params, model),
        prune=prune,
        seed=seed,
        timeout=timeout,
    )
    with open_store(db, read_only=True) as store:
        report = workflows.tune(store, request, progress=progress())
    if json_out is not None:
        workflows.write_tune_json(report, json_out)
    out = report.to_dict()
    console.print(
        f"study {out['study_name']}: {out['n_trials_run']} trial(s) run now, {out['n_trials']} in "
        f"all ({out['n_complete']} complete, {out['n_pruned']} pruned, {out['n_failed']} failed) "
        f"in {out['seconds']:.0f} s",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"objective: {out['objective']}", highlight=False, soft_wrap=True)
    best, default = out["best_value"], out["default_value"]
    if best is None:
        console.print("no trial completed yet: run more --trials", highlight=False)
    else:
        line = f"best value {best:.4f}"
        if default is not None:
            line += f" (the defaults: {default:.4f})"
        console.print(line, highlight=False, soft_wrap=True)
        table = Table(title=f"best parameters of {out['model']}")
        table.add_column("parameter", style="bold")
        table.add_column("value", justify="right")
        table.add_column("searched in")
        for name, value in out["best_params"].items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            table.add_row(name, shown, out["space"].get(name, ""))
        console.print(table)
    console.print(f"study: {out['storage']}", highlight=False, soft_wrap=True)
    if json_out is not None:
        console.print(f"json: {json_out}", highlight=False, soft_wrap=True)
    if best is not None:
        if json_out is not None:
            hint = f"--params {json_out}"
        else:
            hint = "--params-from-tune"
            hint += f" --cutoff {cutoff}" if cutoff is not None else ""
            hint += f" --horizon {horizon}" if horizon != 90 else ""
            hint += f" --retained-by {retained_by}" if retained_by != "purchase" else ""
            hint += f" --tune-storage {storage}" if storage is not None else ""
            hint += f" --tune-study {study}" if study is not None else ""
        where = f"--db {db} " if db is not None else ""
        console.print(
            f"train with them: retention train {where}--model {out['model']} {hint}",
            highlight=False,
            soft_wrap=True,
        )
