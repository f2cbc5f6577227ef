"""``retention backtest``, ``retention train`` and ``retention score``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from retention import workflows
from retention.exceptions import ConfigError
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
    resolve_db,
)
from retention.serving.cli._features import (
    EventsOption,
    MasterOption,
    RemoteOption,
    spark_score_command,
)

__all__ = ["backtest_command", "score_command", "train_command"]

#: the default of ``--models``, a literal so that ``retention --help`` need not import the models
#: (tests/serving/test_cli_predict.py checks it equals ``workflows.DEFAULT_BACKTEST_MODELS``)
DEFAULT_MODELS = "bgnbd,paretonbd,mbgnbd,gbdt,ensemble"


def _backtest_params(values: list[str], models: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``--params MODEL=JSON|FILE`` (backtest) as ``{model: params}``, each model one of
    ``--models``."""
    out: dict[str, dict[str, Any]] = {}
    for value in values:
        name, sep, spec = value.partition("=")
        name = name.strip()
        if not sep or not name or not spec.strip():
            raise ConfigError(
                f"--params {value!r} is not MODEL=JSON or MODEL=FILE: pass e.g. "
                """--params 'sequence={"cv_folds": 5}'."""
            )
        if name not in models:
            raise ConfigError(
                f"--params names {name!r}, which is not in --models ({','.join(models)}): "
                "add it to --models or fix the name."
            )
        if name in out:
            raise ConfigError(f"--params gives {name!r} twice: pass each model's once.")
        out[name] = parse_params_option(spec, name)
    return out


@app.command("backtest")
def backtest_command(
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--cutoff",
            help="Held-out test cutoff, YYYY-MM-DD (default: the latest whose horizon the store "
            "has seen whole, the last qualifying event's date minus the horizon).",
            show_default=False,
        ),
    ] = None,
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
    n_train: NTrainOption = 3,
    retained_by: RetainedByOption = "purchase",
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--params",
            help=(
                "MODEL=JSON or MODEL=FILE: hyper-parameters of one listed model (repeatable), "
                """e.g. --params 'sequence={"cv_folds": 5}' or --params gbdt=tune.json."""
            ),
        ),
    ] = None,
) -> None:
    """Fit models on earlier cutoffs, measure them on CUTOFF, write JSON and an HTML report."""
    from retention.serving.report import render_backtest_report

    names = tuple(m.strip() for m in models.split(","))
    model_params = _backtest_params(params or [], names)

    html = report if report is not None else (json_out.with_suffix(".html") if json_out else None)
    if json_out is not None:  # before the backtest, not after it
        workflows.check_output_path(json_out, "--json", "metrics.json")
    if html is not None:
        workflows.check_output_path(html, "--report", "report.html")

    at = None if cutoff is None else workflows.to_cutoff(cutoff)
    with open_store(db, read_only=True) as store:
        if at is None:
            at = workflows.latest_backtest_cutoff(store, horizon, retained_by)
            console.print(
                f"cutoff {at:%Y-%m-%d}: the latest with its {_days(horizon)} in the store "
                "(--cutoff to choose another)",
                highlight=False,
                soft_wrap=True,
            )
        request = workflows.BacktestRequest(
            cutoff=at,
            horizon_days=horizon,
            models=names,
            n_train=n_train,
            retained_by=retained_by,
            model_params=model_params,
        )
        result = workflows.backtest(store, request, progress=progress())
    if json_out is not None:
        workflows.write_backtest_json(result, json_out)
    payload = result.to_json_dict()
    table = Table(
        title=(
            f"Backtest at {payload['cutoff']}, horizon {_days(payload['horizon_days'])}: "
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
    if json_out is not None:
        console.print(f"metrics: {json_out}", highlight=False, soft_wrap=True)
    if html is not None:
        written = render_backtest_report(result, html, title=f"Retention backtest at {cutoff}")
        console.print(f"report: {written}", highlight=False, soft_wrap=True)
        workflows.track_artifact(written)  # the report joins the backtest's tracked run


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
    n_train: NTrainOption = 3,
    retained_by: RetainedByOption = "purchase",
    params: Annotated[
        str | None,
        typer.Option(
            "--params",
            help="Hyper-parameters: a JSON object, or a JSON file (`retention tune --json`).",
        ),
    ] = None,
    params_from_tune: Annotated[
        bool,
        typer.Option(
            "--params-from-tune",
            help="Train with the best parameters of the `retention tune` study for this "
            "--model, --cutoff, --horizon and --retained-by.",
        ),
    ] = False,
    tune_storage: Annotated[
        Path | None,
        typer.Option("--tune-storage", help="Study file of --params-from-tune (default: tune's)."),
    ] = None,
    tune_study: Annotated[
        str | None, typer.Option("--tune-study", help="Study name of --params-from-tune.")
    ] = None,
) -> None:
    """Train a model on the latest complete cutoffs and save a versioned artifact."""
    workflows.check_output_path(out, "--out", "model.retention")  # before training, not after
    if params is not None and params_from_tune:
        raise ConfigError("Pass either --params or --params-from-tune, not both.")
    model_params = parse_params_option(params, model)
    with open_store(db, read_only=False) as store:
        if params_from_tune:
            model_params = workflows.tuned_params(
                store,
                model,
                cutoff=parse_cutoff_option(cutoff),
                horizon_days=horizon,
                retained_by=retained_by,
                storage=tune_storage,
                study=tune_study,
            )
        request = workflows.TrainRequest(
            out=out,
            model=model,
            cutoff=parse_cutoff_option(cutoff),
            horizon_days=horizon,
            n_train=n_train,
            retained_by=retained_by,
            model_params=model_params,
        )
        rep = workflows.train(store, request, progress=progress())
    meta = rep.metadata
    valid = meta.get("metrics", {}).get("valid", {})
    console.print(
        f"trained {meta.get('registry_name')} (id {meta.get('model_id')}) for cutoff "
        f"{str(meta.get('cutoff'))[:10]}, horizon {_days(meta.get('horizon_days'))}; "
        f"valid ROC-AUC {valid.get('roc_auc', float('nan')):.3f} (optimistic: see backtest)",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"model: {rep.path}", highlight=False, soft_wrap=True)


@app.command("score")
def score_command(
    db: DbOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A model id of the registry, or an artifact path (default: the production "
            "model, else the newest candidate).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the scores to a .csv or .parquet.")
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option("--cutoff", help="Score at this date, YYYY-MM-DD (default: last purchase)."),
    ] = None,
    horizon: Annotated[
        int | None,
        typer.Option(
            "--horizon", min=1, help="Must match the model's horizon (default: the model's)."
        ),
    ] = None,
    table: Annotated[str, typer.Option("--table", help="Store table to write.")] = "scores",
    retained_by: Annotated[
        str | None,
        typer.Option(
            "--retained-by",
            help="Must match the model's (default: the activity the model was trained on).",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option("--engine", help="duckdb (the store) or spark (a Parquet log, --events)."),
    ] = "duckdb",
    events: EventsOption = None,
    spark_master: MasterOption = None,
    spark_remote: RemoteOption = None,
) -> None:
    """Write each customer's P(retained), P(alive), expected purchases, CLV and risk band."""
    if engine != "duckdb" or events is not None:  # on Spark, from Parquet, into Parquet
        spark_score_command(
            engine=engine,
            db=db,
            model=model,
            events=events,
            out=None if out is None else str(out),
            cutoff=cutoff,
            horizon=horizon,
            retained_by=retained_by,
            spark_master=spark_master,
            spark_remote=spark_remote,
        )
        return
    path = resolve_db(db)
    if out is not None:  # before scoring, not after
        workflows.check_output_path(out, "--out", "scores.csv")
    at = parse_cutoff_option(cutoff)
    with open_store(path, read_only=False) as store:
        # the registry's production model (else its newest candidate, with a warning) unless
        # --model names an id or an artifact
        ref = _model_ref(store, model)
        request = workflows.ScoreRequest(
            **ref,
            cutoff=at,
            horizon_days=horizon,
            out=out,
            table=table,
            retained_by=retained_by,
        )
        rep = workflows.score(store, request, progress=progress())
        stage = store.model_stage(rep.model_version)
    bands = ", ".join(f"{k} {v:,}" for k, v in rep.bands.items())
    console.print(
        f"scored {len(rep.scores):,} customers at {rep.cutoff:%Y-%m-%d} with model "
        f"{rep.model_version}{f' ({stage})' if stage else ''}; risk: {bands}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"table: {rep.table} in {path}", highlight=False, soft_wrap=True)
    if rep.out is not None:
        console.print(f"file: {rep.out}", highlight=False, soft_wrap=True)


def _model_ref(store: workflows.Store, model: str | None) -> dict[str, Any]:
    """``--model`` as ScoreRequest arguments: an artifact path (a file there, or a name with a
    folder or the .retention suffix) or a registry id; by default the registry's choice."""
    if model is None:
        return {"model_id": workflows.choose_model(store).model_id}
    p = Path(model)
    if p.is_file() or p.suffix == ".retention" or len(p.parts) > 1:
        return {"model_path": p}
    return {"model_id": model}


def _days(n: object) -> str:
    """``"1 day"``, ``"90 days"``."""
    return f"{n} day" if str(n) == "1" else f"{n} days"
