"""``retention recommend``: each customer's next items, with the reason in words."""

from __future__ import annotations

import json
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
    parse_params_option,
    progress,
    resolve_db,
)

__all__ = ["recommend_command"]

#: ``--recommender`` choices, a literal so that ``retention --help`` imports no model code
#: (tests/serving/test_cli_recommend.py checks it against retention.strategies)
RECOMMENDERS = "popularity, cooccurrence, transition, ease, als, text, sasrec, blend"


@app.command("recommend")
def recommend_command(
    db: DbOption = None,
    user: Annotated[
        list[str] | None,
        typer.Option("--user", help="Customer id (repeat for several).", show_default=False),
    ] = None,
    all_users: Annotated[
        bool,
        typer.Option("--all", help="Every customer, into the store's recommendations table."),
    ] = False,
    k: Annotated[int, typer.Option("-k", "--k", help="Items per customer.")] = 10,
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--cutoff", help="Learn from events before this date, YYYY-MM-DD (default: last one)."
        ),
    ] = None,
    recommender: Annotated[
        str, typer.Option("--recommender", help=f"Which to fit: {RECOMMENDERS}.")
    ] = "transition",
    params: Annotated[
        str | None,
        typer.Option(
            "--params",
            help="Hyper-parameters of the recommender: a JSON object or a JSON file, e.g. "
            "'{\"item_categories\": true}' for sasrec.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Use a recommender saved with --save-model instead."),
    ] = None,
    save_model: Annotated[
        Path | None, typer.Option("--save-model", help="Save the fitted recommender there.")
    ] = None,
    repeat: Annotated[
        bool,
        typer.Option("--repeat/--no-repeat", help="Allow items the customer already bought."),
    ] = False,
    window: Annotated[
        int | None,
        typer.Option(
            "--window",
            help="Only items sold in the last DAYS before the cutoff (0: the whole catalogue).",
        ),
    ] = 90,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the rows to a .csv or .parquet.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Recommend K items to a customer (--user ID) or to every customer (--all)."""
    request = workflows.RecommendRequest(
        users=tuple(user or ()),
        all_users=all_users,
        k=k,
        cutoff=parse_cutoff_option(cutoff),
        recommender=recommender,
        params=parse_params_option(params, recommender),
        model_path=model,
        save_model=save_model,
        exclude_seen=not repeat,
        candidate_window_days=None if window == 0 else window,
        out=out,
    )
    path = resolve_db(db)
    with open_store(path, read_only=not all_users) as store:
        rep = workflows.recommend(store, request, progress=progress())
    if as_json:
        console.print_json(json.dumps(rep.to_dict(), allow_nan=False))
        return
    recs = rep.recommendations
    if not all_users:
        for uid in request.users:
            rows = recs[recs["user_id"] == uid]
            known = bool(rows["known"].any()) if len(rows) else False
            table = Table(
                title=(
                    f"Customer {uid}: {len(rows)} recommendations ({rep.recommender}, events "
                    f"before {rep.cutoff:%Y-%m-%d})"
                    + ("" if known else " - unknown customer: the popular items")
                )
            )
            table.add_column("rank", justify="right")
            table.add_column("item", style="bold")
            table.add_column("title")
            table.add_column("why")
            for r in rows.itertuples(index=False):
                table.add_row(str(r.rank), str(r.item_id), str(r.title or ""), str(r.reason))
            console.print(table)
        if rep.saved_model is not None:
            console.print(f"model: {rep.saved_model}", highlight=False, soft_wrap=True)
        return
    console.print(
        f"recommended {k} items to "
        f"{rep.n_users:,} customers ({rep.n_new_users:,} without history) with "
        f"{rep.recommender} {rep.model_version} at {rep.cutoff:%Y-%m-%d}; "
        f"{rep.n_candidates:,} candidate items",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"table: {rep.table} in {path}", highlight=False, soft_wrap=True)
    if rep.out is not None:
        console.print(f"file: {rep.out}", highlight=False, soft_wrap=True)
    if rep.saved_model is not None:
        console.print(f"model: {rep.saved_model}", highlight=False, soft_wrap=True)
