"""``retention features`` (the feature table on DuckDB or Spark) and ``retention score --engine
spark`` (batch scoring on Spark; the option lives on the score command of ``_predict.py``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from retention import workflows
from retention.exceptions import ConfigError
from retention.serving.cli._app import (
    DbOption,
    RetainedByOption,
    app,
    console,
    open_store,
    parse_cutoff_option,
    progress,
    resolve_db,
)

__all__ = ["features_command", "spark_score_command"]

EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Where the feature definitions run: duckdb (one machine) or spark (a cluster).",
    ),
]
EventsOption = Annotated[
    str | None,
    typer.Option(
        "--events",
        help="Events as Parquet: a file, folder or glob (Spark: any filesystem it reads, such as "
        "hdfs:// or s3a://).",
        show_default=False,
    ),
]
MasterOption = Annotated[
    str | None,
    typer.Option("--spark-master", help="Spark master URL (default local[*]).", show_default=False),
]
RemoteOption = Annotated[
    str | None,
    typer.Option(
        "--spark-remote",
        help="Spark Connect address, sc://host:15002 (instead of --spark-master).",
        show_default=False,
    ),
]
EventsTableOption = Annotated[
    bool,
    typer.Option("--events-table", help="--events names a table of the Spark session, not a path."),
]


@app.command("features")
def features_command(
    cutoff: Annotated[
        str, typer.Option("--cutoff", help="Features use events before it, YYYY-MM-DD.")
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out", help="Parquet output (a local *.parquet file, or a URI Spark writes)."
        ),
    ],
    engine: EngineOption = "duckdb",
    events: EventsOption = None,
    db: DbOption = None,
    horizon: Annotated[
        int | None,
        typer.Option("--horizon", min=1, help="Label window in days (with --labels)."),
    ] = None,
    labels: Annotated[
        bool, typer.Option("--labels", help="Add the label column `retained` (needs --horizon).")
    ] = False,
    retained_by: RetainedByOption = "purchase",
    spark_master: MasterOption = None,
    spark_remote: RemoteOption = None,
    events_table: EventsTableOption = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the summary as JSON.")
    ] = None,
) -> None:
    """Write every customer's point-in-time features (and labels) at CUTOFF as Parquet."""
    if json_out is not None:
        workflows.check_output_path(json_out, "--json", "features.json")
    request = workflows.FeaturesRequest(
        cutoff=workflows.to_cutoff(cutoff),
        out=out,
        engine=engine,
        events=events,
        horizon_days=horizon,
        labels=labels,
        retained_by=retained_by,
        spark_master=spark_master,
        spark_remote=spark_remote,
        events_table=events_table,
    )
    if request.engine == "duckdb" and request.events is None:
        with open_store(resolve_db(db), read_only=True) as store:
            rep = workflows.feature_file(store, request, progress=progress())
    else:
        rep = workflows.feature_file(None, request, progress=progress())
    rate = "" if rep.base_rate is None else f", retained {rep.base_rate:.1%}"
    console.print(
        f"features of {rep.n_users:,} customers x {rep.n_features} at {rep.cutoff:%Y-%m-%d} on "
        f"{rep.engine} in {rep.seconds:.1f} s{rate}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"file: {rep.out}", highlight=False, soft_wrap=True)
    if json_out is not None:
        json_out.write_text(json.dumps(rep.to_dict(), indent=2, allow_nan=False) + "\n")


def _spark_model_ref(store: Any, model: str | None) -> dict[str, Any]:
    """``--model`` for Spark scoring: an artifact path, or an id of the ``--db`` registry."""
    if model is not None:
        p = Path(model)
        if p.is_file() or p.suffix == ".retention" or len(p.parts) > 1:
            return {"model_path": p}
        return {"model_id": model}
    if store is None:
        return {"model_path": Path("model.retention")}
    return {"model_id": workflows.choose_model(store).model_id}


def spark_score_command(
    *,
    engine: str = "spark",
    db: Path | None,
    model: str | None,
    events: str | None,
    out: str | None,
    cutoff: str | None,
    horizon: int | None,
    retained_by: str | None,
    spark_master: str | None,
    spark_remote: str | None,
    events_table: bool = False,
) -> None:
    """``retention score --engine spark``: score a Parquet log on Spark, write Parquet."""
    if engine.strip().lower() != "spark":
        raise ConfigError(
            f"--engine must be duckdb or spark; got {engine!r}."
            if engine.strip().lower() != "duckdb"
            else "--events reads a Parquet log on Spark: add --engine spark, or drop --events "
            "to score the store (--db)."
        )
    if out is None:
        raise ConfigError(
            "Scoring on Spark writes Parquet, not the store: pass --out scores.parquet."
        )
    # a Path option turns hdfs://host/x into hdfs:/host/x: give the URI its slashes back
    out = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)", r"\1://", out)
    at = parse_cutoff_option(cutoff)

    def run(store: Any) -> Any:
        request = workflows.SparkScoreRequest(
            events=events,  # type: ignore[arg-type]  # checked by the request
            out=out,
            cutoff=at,
            horizon_days=horizon,
            retained_by=retained_by,
            spark_master=spark_master,
            spark_remote=spark_remote,
            events_table=events_table,
            **_spark_model_ref(store, model),
        )
        return workflows.spark_score(store, request, progress=progress())

    if db is not None:  # the registry: --model ID, or its production model
        with open_store(resolve_db(db), read_only=True) as store:
            rep = run(store)
    else:
        rep = run(None)
    bands = ", ".join(f"{k} {v:,}" for k, v in rep.bands.items())
    console.print(
        f"scored {rep.n_users:,} customers at {rep.cutoff:%Y-%m-%d} on Spark ({rep.partitions} "
        f"partitions) with model {rep.model_version} in {rep.seconds:.1f} s; risk: {bands}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"file: {rep.out}", highlight=False, soft_wrap=True)
