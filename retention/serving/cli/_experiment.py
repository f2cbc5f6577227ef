"""``retention experiment create|assign|expose|list|analyze|design|offpolicy``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from retention import workflows
from retention.exceptions import ConfigError
from retention.serving.cli._app import DbOption, app, console, open_store, progress, resolve_db

__all__ = ["experiment_app", "print_analysis"]

experiment_app = typer.Typer(
    name="experiment",
    help="A/B tests: create, assign users, log exposures, size, analyse; off-policy evaluation.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _pct(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):+.2f}%"


def print_analysis(report: Any) -> None:
    """Print an experiment's comparisons, the sample-ratio check and the notes with Rich."""
    a = report.analysis
    srm = a.srm
    head = ", ".join(f"{v} {n:,}" for v, n in a.counts.items())
    console.print(
        f"{report.experiment_id or report.source}: {head} units; control {a.control}; "
        f"sample-ratio check p = {_fmt(srm.p_value, 3)}" + (" (MISMATCH)" if srm.flagged else ""),
        highlight=False,
        soft_wrap=True,
    )
    method = "always-valid (sequential)" if a.sequential else "Welch t"
    if a.sequential_design == "group":
        method = "group sequential"
        console.print(f"design: {a.method}", highlight=False, soft_wrap=True)
    table = Table(
        title=f"treatment minus control ({method}, alpha {a.alpha:g})", title_justify="left"
    )
    for col in ("metric", "variant", "difference", "interval", "p", "p adj", "lift", "P(win)"):
        table.add_column(col, justify="left" if col in ("metric", "variant") else "right")
    for c in a.comparisons:
        name = c.metric + (f" ({c.guardrail_status})" if c.guardrail else "")
        table.add_row(
            name,
            c.variant,
            _fmt(c.difference),
            f"{_fmt(c.ci_low)} .. {_fmt(c.ci_high)}",
            _fmt(c.p_value, 3),
            _fmt(c.p_value_holm, 3),
            _pct(c.lift),
            _fmt(c.chance_to_win, 3),
        )
    console.print(table)
    for c in a.comparisons:
        if c.variance_reduction is not None:
            console.print(
                f"CUPED on {c.metric} ({c.variant}) with {c.covariate}: theta "
                f"{_fmt(c.cuped_theta)}, variance of the difference cut by "
                f"{100 * c.variance_reduction:.1f}%",
                highlight=False,
                soft_wrap=True,
            )
    for note in a.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


def _weights(values: list[str] | None) -> dict[str, float] | None:
    if not values:
        return None
    out: dict[str, float] = {}
    for item in values:
        name, sep, share = item.partition("=")
        try:
            out[name.strip()] = float(share)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"--weight takes VARIANT=SHARE (e.g. gate_30=0.5); got {item!r}.")
    return out


def _sequential(flag: bool, design: str | None) -> bool | str:
    if design is None:
        return flag
    if design not in ("always-valid", "group"):
        raise ConfigError(f"--sequential-design must be always-valid or group; got {design!r}.")
    return design


@experiment_app.command("analyze")
def analyze_command(
    csv: Annotated[Path | None, typer.Option("--csv", help="A CSV with one row per unit.")] = None,
    variant: Annotated[
        str | None, typer.Option("--variant", help="Column of the variant (--csv).")
    ] = None,
    control: Annotated[
        str | None, typer.Option("--control", help="The control's value of --variant.")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Metric column or name (repeat).")
    ] = None,
    covariate: Annotated[
        str | None,
        typer.Option(
            "--covariate",
            help="CUPED covariate: a pre-period column (--csv); with --experiment also 'pre' "
            "(the metric's pre-period), 'cupac' (the churn model's prediction) or a users column.",
        ),
    ] = None,
    denominator: Annotated[
        str | None,
        typer.Option("--denominator", help="Per-unit denominator column: ratio metrics (--csv)."),
    ] = None,
    guardrail: Annotated[
        list[str] | None, typer.Option("--guardrail", help="A metric that must not get worse.")
    ] = None,
    sequential: Annotated[
        bool, typer.Option("--sequential", help="Always-valid intervals, for peeking.")
    ] = False,
    sequential_design: Annotated[
        str | None,
        typer.Option(
            "--sequential-design",
            help="always-valid (the --sequential confidence sequence, open-ended) or group "
            "(a group-sequential design spending exactly --alpha over --planned-n units).",
        ),
    ] = None,
    planned_n: Annotated[
        int | None,
        typer.Option("--planned-n", help="Group design: units planned in all arms together."),
    ] = None,
    looks: Annotated[
        int | None,
        typer.Option("--looks", help="Group design: planned looks, equally spaced in units."),
    ] = None,
    look_n: Annotated[
        list[int] | None,
        typer.Option(
            "--look-n", help="Group design: units at an earlier look (repeat; instead of --looks)."
        ),
    ] = None,
    spending: Annotated[
        str,
        typer.Option("--spending", help="Group design: obrien-fleming (default) or pocock."),
    ] = "obrien-fleming",
    alpha: Annotated[float, typer.Option("--alpha", help="Two-sided level.")] = 0.05,
    weight: Annotated[
        list[str] | None,
        typer.Option("--weight", help="Planned share VARIANT=SHARE for the sample-ratio check."),
    ] = None,
    correction: Annotated[
        str, typer.Option("--correction", help="holm or bh (Benjamini-Hochberg).")
    ] = "holm",
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="An experiment of the store (--db).")
    ] = None,
    db: DbOption = None,
    exposed: Annotated[
        bool, typer.Option("--exposed-only", help="Only exposed units (--experiment).")
    ] = False,
    segment_by: Annotated[
        str, typer.Option("--segment-by", help="Uplift by risk_band or a users column.")
    ] = "risk_band",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the result as JSON.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write an HTML page with the intervals.")
    ] = None,
) -> None:
    """Analyse an A/B test: a CSV (--csv) or an experiment of the store (--experiment ID).

    A CSV needs --variant, --control and --metric too; a stored experiment is read from --db."""
    if (csv is None) == (experiment is None):
        raise ConfigError(
            "Pass either --csv FILE --variant COL --control VALUE --metric COL, or "
            "--experiment ID --db DB."
        )
    if correction not in ("holm", "bh"):
        raise ConfigError(f"--correction must be holm or bh; got {correction!r}.")
    seq = _sequential(sequential, sequential_design)
    design_args: dict[str, Any] = {
        "sequential": seq,
        "planned_n": planned_n,
        "looks": looks,
        "look_n": tuple(look_n or ()),
        "spending": spending,
    }
    if csv is not None:
        missing = [f for f, v in (("--variant", variant), ("--control", control)) if v is None]
        if not metric:
            missing.append("--metric")
        if missing:
            raise ConfigError(f"--csv needs {', '.join(missing)} too.")
        assert variant is not None and control is not None and metric
        result = workflows.analyze_csv(
            workflows.AnalyzeCsvRequest(
                path=csv,
                variant=variant,
                control=control,
                metrics=tuple(metric),
                covariate=covariate,
                denominator=denominator,
                guardrails=tuple(guardrail or ()),
                alpha=alpha,
                weights=_weights(weight),
                correction=correction,  # type: ignore[arg-type]
                **design_args,
            ),
            progress=progress(),
        )
    else:
        if denominator is not None or variant is not None:
            raise ConfigError(
                "--variant and --denominator apply to --csv; a stored experiment knows its "
                "variants (use revenue_per_order for a ratio metric)."
            )
        assert experiment is not None
        path = resolve_db(db)
        with open_store(path, read_only=False) as store:
            result = workflows.analyze_experiment(
                store,
                workflows.AnalyzeExperimentRequest(
                    experiment_id=experiment,
                    metrics=tuple(metric) if metric else None,
                    covariate=covariate,
                    guardrails=tuple(guardrail) if guardrail else None,
                    control=control,
                    population="exposed" if exposed else "assigned",
                    alpha=alpha,
                    segment_by=segment_by,
                    correction=correction,  # type: ignore[arg-type]
                    **design_args,
                ),
                progress=progress(),
            )
    print_analysis(result)
    if json_out is not None:
        workflows.write_experiment_json(result, json_out)
        console.print(f"json: {json_out}", highlight=False, soft_wrap=True)
    if report is not None:
        from retention.serving.report import render_experiment_report

        written = render_experiment_report(result, report)
        console.print(f"report: {written}", highlight=False, soft_wrap=True)
        workflows.track_artifact(written)  # the report joins the analysis's tracked run


@experiment_app.command("create")
def create_command(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    variant: Annotated[
        list[str] | None, typer.Option("--variant", help="A variant (repeat; control first).")
    ] = None,
    weight: Annotated[
        list[float] | None, typer.Option("--weight", help="Share of each variant, in order.")
    ] = None,
    control: Annotated[str | None, typer.Option("--control", help="Default: the first.")] = None,
    holdout: Annotated[float, typer.Option("--holdout", help="Share held out.")] = 0.0,
    stratify: Annotated[
        str | None, typer.Option("--stratify", help="risk_band: split within each band.")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Metric (repeat), the primary first.")
    ] = None,
    guardrail: Annotated[list[str] | None, typer.Option("--guardrail", help="Guardrail.")] = None,
    window: Annotated[int, typer.Option("--window", help="Days of event metrics.")] = 30,
    start: Annotated[
        str | None, typer.Option("--start", help="YYYY-MM-DD (default: last event).")
    ] = None,
    salt: Annotated[str | None, typer.Option("--salt", help="Hash salt (default: id).")] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    hypothesis: Annotated[str | None, typer.Option("--hypothesis")] = None,
    db: DbOption = None,
) -> None:
    """Declare an experiment: variants, weights, holdout, metrics, guardrails."""
    req = workflows.CreateExperimentRequest(
        experiment_id=experiment_id,
        variants=tuple(variant or ("control", "treatment")),
        weights=tuple(weight) if weight else None,
        control=control,
        name=name,
        hypothesis=hypothesis,
        salt=salt,
        holdout=holdout,
        stratify_by=stratify,
        metrics=tuple(metric or ("retention_30",)),
        guardrails=tuple(guardrail or ()),
        window_days=window,
        start=start,
    )
    with open_store(resolve_db(db), read_only=False) as store:
        rec = workflows.create_experiment(store, req)
    shares = ", ".join(f"{v} {w:.0%}" for v, w in zip(rec.variants, rec.weights, strict=True))
    console.print(
        f"created experiment {rec.experiment_id}: {shares}; holdout {rec.holdout:.0%}; metrics "
        f"{', '.join(rec.metrics)}; starts {rec.start_ts:%Y-%m-%d}",
        highlight=False,
        soft_wrap=True,
    )


@experiment_app.command("assign")
def assign_command(
    experiment: Annotated[str, typer.Option("--experiment", help="The experiment's id.")],
    user: Annotated[list[str] | None, typer.Option("--user", help="A user id (repeat).")] = None,
    users_csv: Annotated[
        Path | None, typer.Option("--users-csv", help="A CSV of users to assign.")
    ] = None,
    user_col: Annotated[str, typer.Option("--user-col", help="Its user column.")] = "user_id",
    risk_band: Annotated[
        str | None, typer.Option("--risk-band", help="Only customers of this band.")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="assigned_ts (default: start).")] = None,
    db: DbOption = None,
) -> None:
    """Assign users to variants by salted hashing (default: every purchaser before the start)."""
    users: list[str] | None = list(user) if user else None
    if users_csv is not None:
        users = (users or []) + _csv_column(users_csv, user_col)
    with open_store(resolve_db(db), read_only=False) as store:
        rep = workflows.assign_users(
            store,
            workflows.AssignRequest(
                experiment_id=experiment,
                users=tuple(users) if users is not None else None,
                risk_band=risk_band,
                assigned_at=at,
            ),
            progress=progress(),
        )
    arms = ", ".join(f"{v} {n:,}" for v, n in rep.arms.items())
    console.print(
        f"assigned {rep.assigned:,} new user(s) ({rep.already:,} already assigned) to "
        f"{rep.experiment_id}: {arms}",
        highlight=False,
        soft_wrap=True,
    )


def _csv_column(path: Path, column: str) -> list[str]:
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"No file {path}: pass an existing CSV.")
    head = pd.read_csv(path, nrows=0)
    if column not in head.columns:
        raise ConfigError(
            f"Column {column!r} is not in {path.name}; its columns are "
            f"{', '.join(map(str, head.columns))}."
        )
    return pd.read_csv(path, usecols=[column], dtype=str)[column].dropna().tolist()


@experiment_app.command("expose")
def expose_command(
    experiment: Annotated[str, typer.Option("--experiment", help="The experiment's id.")],
    csv: Annotated[Path, typer.Option("--csv", help="One row per exposure.")],
    user_col: Annotated[str, typer.Option("--user-col")] = "user_id",
    ts_col: Annotated[str, typer.Option("--ts-col")] = "exposed_ts",
    db: DbOption = None,
) -> None:
    """Log when assigned users were exposed (their first exposure is kept)."""
    import pandas as pd

    if not csv.is_file():
        raise ConfigError(f"No file {csv}: pass an existing CSV.")
    head = pd.read_csv(csv, nrows=0)
    missing = [c for c in (user_col, ts_col) if c not in head.columns]
    if missing:
        raise ConfigError(
            f"Column(s) {', '.join(missing)} not in {csv.name}; its columns are "
            f"{', '.join(map(str, head.columns))}. Pass --user-col and --ts-col."
        )
    df = pd.read_csv(csv, usecols=[user_col, ts_col], dtype={user_col: str})
    df = df.rename(columns={user_col: "user_id", ts_col: "exposed_ts"})
    with open_store(resolve_db(db), read_only=False) as store:
        rep = workflows.log_exposures(store, experiment, df, source=csv.name)
    console.print(
        f"read {rep.read:,} exposure(s): logged {rep.logged:,}, already logged {rep.already:,}, "
        f"not assigned {rep.not_assigned:,}",
        highlight=False,
        soft_wrap=True,
    )


@experiment_app.command("list")
def list_command(db: DbOption = None) -> None:
    """The experiments of the store with their arms."""
    with open_store(resolve_db(db), read_only=True) as store:
        records = workflows.list_experiments(store)
    table = Table(title="Experiments")
    for col in ("id", "status", "variants", "units", "exposed", "metrics", "start"):
        table.add_column(col)
    for r in records:
        arms = ", ".join(f"{v} {r.arms.get(v, 0):,}" for v in r.variants)
        extra = [f"{v} {n:,}" for v, n in r.arms.items() if v not in r.variants]
        table.add_row(
            r.experiment_id,
            r.status,
            ", ".join([arms, *extra]),
            f"{sum(r.arms.values()):,}",
            f"{r.exposed:,}",
            ", ".join(r.metrics),
            "–" if r.start_ts is None else f"{r.start_ts:%Y-%m-%d}",
        )
    console.print(table)


@experiment_app.command("design")
def design_command(
    metric: Annotated[str, typer.Option("--metric", help="retention_30, conversion, ...")],
    db: DbOption = None,
    risk_band: Annotated[str | None, typer.Option("--risk-band")] = None,
    cutoff: Annotated[str | None, typer.Option("--cutoff", help="YYYY-MM-DD.")] = None,
    mde: Annotated[float | None, typer.Option("--mde", help="Absolute effect.")] = None,
    relative_mde: Annotated[
        float | None, typer.Option("--relative-mde", help="Effect relative to the baseline.")
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="Units per variant (solve MDE).")] = None,
    alpha: Annotated[float, typer.Option("--alpha")] = 0.05,
    power: Annotated[float, typer.Option("--power")] = 0.8,
    variants: Annotated[int, typer.Option("--variants", help="Arms incl. control.")] = 2,
    window: Annotated[int, typer.Option("--window")] = 30,
    no_cuped: Annotated[bool, typer.Option("--no-cuped")] = False,
    daily_units: Annotated[float | None, typer.Option("--daily-units")] = None,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Sample size or MDE and duration, with baseline and variance measured in the store."""
    if mde is None and relative_mde is None and n is None:
        relative_mde = 0.05
    req = workflows.DesignRequest(
        metric=metric,
        risk_band=risk_band,
        cutoff=cutoff,
        mde=mde,
        relative_mde=relative_mde,
        n_per_variant=n,
        alpha=alpha,
        power=power,
        n_variants=variants,
        window_days=window,
        cuped=not no_cuped,
        daily_units=daily_units,
    )
    with open_store(resolve_db(db), read_only=True) as store:
        r = workflows.design_experiment(store, req, progress=progress())
    console.print(
        f"{metric} ({r.kind}) on {r.population:,} customers: baseline {r.baseline:.4g}, sd "
        f"{r.sd:.4g}; detect {r.mde:.4g} ({r.relative_mde:.1%}) at alpha {r.alpha:g}, power "
        f"{r.power:g}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"units per variant {r.n_per_variant:,} (total {r.n_total:,}); with CUPED (rho "
        f"{r.rho:.2f}, variance cut {r.variance_cut:.0%}) {r.n_per_variant_cuped:,} (total "
        f"{r.n_total_cuped:,})"
        + (f"; about {r.duration_days} days" if r.duration_days is not None else ""),
        highlight=False,
        soft_wrap=True,
    )
    if json_out is not None:
        workflows.write_experiment_json(r, json_out)


@experiment_app.command("offpolicy")
def offpolicy_command(
    runs: Annotated[int, typer.Option("--runs", help="Bootstrap runs (0: estimates only).")] = 30,
    n_sim: Annotated[int, typer.Option("--n-sim", help="TS Monte Carlo draws.")] = 100_000,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Off-policy estimates (DM, IPW, SNIPW, DR) of the Bernoulli TS policy's click rate.

    From the bundled uniform-random Open Bandit log, against the policy's on-policy click rate."""
    rep = workflows.evaluate_offpolicy(
        workflows.OffPolicyRequest(n_runs=runs, n_sim=n_sim), progress=progress()
    )
    title = (
        f"TS click rate: on-policy {rep.ground_truth:.5f} (random log {rep.logging_click_rate:.5f})"
    )
    table = Table(title=title)
    for col in ("estimator", "estimate", "interval", "relative error (mean ± sd)"):
        table.add_column(col)
    for k, e in rep.estimates.items():
        rel = rep.relative_error.get(k)
        table.add_row(
            k,
            f"{e['value']:.5f}",
            f"{e['interval'][0]:.5f} .. {e['interval'][1]:.5f}",
            "–" if rel is None else f"{rel['mean']:.3f} ± {rel['std']:.3f}",
        )
    console.print(table)
    if json_out is not None:
        workflows.write_experiment_json(rep, json_out)
