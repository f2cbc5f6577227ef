"""``retention uplift evaluate|train|score``: uplift models on randomised campaigns."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from retention import workflows
from retention.exceptions import ConfigError
from retention.serving.cli._app import (
    DbOption,
    app,
    console,
    open_store,
    parse_cutoff_option,
    progress,
)

__all__ = ["parse_costs", "print_evaluation", "print_stored_rule", "uplift_app"]

uplift_app = typer.Typer(
    name="uplift",
    help="Uplift models on randomised campaigns: evaluate on a CSV, train and score on the store.",
    no_args_is_help=True,
)
app.add_typer(uplift_app, name="uplift")

#: the default of ``--models``, a literal so that ``--help`` needs no import of the learners
DEFAULT_MODELS = "s_learner,t_learner,x_learner,transformed_outcome"

ModelsOption = Annotated[
    str,
    typer.Option("--models", help="Comma-separated learners; the best on validation is chosen."),
]
CostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--cost",
        help="TREATMENT=AMOUNT: cost per send of a treatment, in units of the outcome's value "
        "(repeat).",
    ),
]
ShareOption = Annotated[
    float, typer.Option("--share", help="Most share of units the policy treats.")
]
ValueOption = Annotated[
    float, typer.Option("--value-per-outcome", help="Value of one unit of the outcome.")
]
SegmentsOption = Annotated[
    str | None,
    typer.Option(
        "--segments",
        help="Comma-separated covariates whose values make segments to target by, e.g. "
        "mens,womens: each segment's effects, measured on the training units, join the "
        "models and the choice of the targeting rule.",
    ),
]
PropensityOption = Annotated[
    str,
    typer.Option(
        "--propensity",
        help="'design' (randomised: the arms' shares) or 'estimate' (from the covariates).",
    ),
]


def parse_costs(values: list[str] | None) -> dict[str, float]:
    """``--cost TREATMENT=AMOUNT`` options as a mapping."""
    out: dict[str, float] = {}
    for item in values or []:
        name, sep, amount = item.rpartition("=")
        try:
            value = float(amount)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(
                f"--cost takes TREATMENT=AMOUNT (e.g. --cost 'Womens E-Mail=0.05'); got {item!r}."
            )
        out[name.strip()] = value
    return out


def _f(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{float(x):.{digits}g}"


def print_evaluation(payload: dict[str, Any]) -> None:
    """Print an uplift evaluation (``to_dict()``) with Rich."""
    console.print(
        f"{payload['n_units']:,} units ({payload['n_train']:,} to learn, {payload['n_test']:,} "
        f"held out); outcome {payload['outcome']} ({payload['outcome_type']}); control "
        f"{payload['control']!r}; propensity {payload['propensity']}",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title="held-out half, per treatment against the control", title_justify="left")
    for col in ("treatment", "difference", "interval", "p", "model", "qini", "uplift@30%"):
        table.add_column(col, justify="left" if col in ("treatment", "model") else "right")
    for t, v in payload["treatments"].items():
        d = v["difference"]
        first = True
        for m, row in v["models"].items():
            mark = " *" if m == payload["chosen_model"] else ""
            table.add_row(
                t if first else "",
                _f(d["estimate"]) if first else "",
                f"{_f(d['low'])} .. {_f(d['high'])}" if first else "",
                _f(d["p_value"], 3) if first else "",
                m + mark,
                _f(row["qini"]),
                _f(row["uplift_at_30"]),
            )
            first = False
    console.print(table)
    pol = payload["policy"]
    table = Table(
        title=f"policy at {100 * pol['share']:.0f}% treated, valued on the held-out half "
        f"(gain over nobody, {int(100 * pol['level'])}% bootstrap interval)",
        title_justify="left",
    )
    for col in ("policy", "treated", "IPW gain", "interval", "DR gain", "x random (IPW)"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    chosen = f"model:{payload['chosen_model']}"
    shown_rows = ("policy", chosen, "random", "random_best_single", "random_uniform")
    for name in (*shown_rows, "everyone_best_single", "nobody"):
        p = pol["policies"].get(name)
        if p is None:
            continue
        ipw, dr = p["ipw"], p.get("dr", {})
        table.add_row(
            name + (" (chosen)" if name == chosen else ""),
            f"{100 * ipw['treated_share']:.0f}%",
            _f(ipw["incremental"]),
            f"{_f(ipw['incremental_low'])} .. {_f(ipw['incremental_high'])}",
            _f(dr.get("incremental")),
            f"{_f(ipw.get('ratio'), 3)} ({_f(ipw.get('ratio_low'), 3)} .. "
            f"{_f(ipw.get('ratio_high'), 3)})",
        )
    console.print(table)
    for text in pol.get("warnings") or []:
        console.print(f"note: {text}", highlight=False, soft_wrap=True)
    if payload.get("chosen_rule"):
        console.print(
            f"the policy row's targeting rule: {payload['chosen_rule']} "
            f"({payload.get('chosen_rule_description') or ''})",
            highlight=False,
            soft_wrap=True,
        )
    if payload["dropped"]:
        shown = "; ".join(f"{c} ({r})" for c, r in payload["dropped"].items())
        console.print(f"left out of the features: {shown}", highlight=False, soft_wrap=True)


def print_stored_rule(payload: dict[str, Any]) -> None:
    """Print the rule ``retention uplift train`` stored: what it is, why, its cross-fitted value."""
    rule = payload.get("stored_rule") or {}
    if not rule:
        return
    console.print(
        f"stored targeting rule: {rule.get('rule')}: {rule.get('description')}",
        highlight=False,
        soft_wrap=True,
    )
    why = f"chosen by {rule.get('chosen_by')}"
    value = rule.get("cross_fitted_value")
    if value is not None:
        why += f", net gain {_f(1000 * value)} per 1,000 units"
        runner = rule.get("runner_up")
        if runner:
            why += f" (next: {runner['rule']}, {_f(1000 * runner['value'])})"
    console.print(why, highlight=False, soft_wrap=True)
    details = []
    if rule.get("calibrated"):
        lines = ", ".join(
            f"{t}: {_f(a)} + {_f(b)} x score"
            for t, a, b in zip(
                payload["treatments"], rule["intercept"], rule["slope"], strict=False
            )
        )
        details.append(f"calibration {lines}")
    if rule.get("shrinkage"):
        effects = ", ".join(
            f"{t} {_f(v)}" for t, v in zip(payload["treatments"], rule["arm_effect"], strict=False)
        )
        details.append(f"average effects {effects}")
    if rule.get("cross_fitted_value_all_units") is not None:
        details.append(
            "cross-fitted value on every unit "
            f"{_f(1000 * rule['cross_fitted_value_all_units'])} per 1,000"
        )
    if details:
        console.print(
            f"refitted on all {payload['n_units']:,} units: " + "; ".join(details),
            highlight=False,
            soft_wrap=True,
        )


@uplift_app.command("evaluate")
def evaluate_command(
    csv: Annotated[Path, typer.Option("--csv", help="A CSV (or .parquet) with one row per unit.")],
    treatment: Annotated[str, typer.Option("--treatment", help="Column of the assigned arm.")],
    control: Annotated[str, typer.Option("--control", help="The control's value of --treatment.")],
    outcome: Annotated[str, typer.Option("--outcome", help="Outcome column (0/1 or a number).")],
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write the evaluation as JSON (and the HTML page beside it)."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="HTML page (default: the --json path, .html).")
    ] = None,
    features: Annotated[
        str | None,
        typer.Option("--features", help="Comma-separated covariates (default: found and checked)."),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id", help="A unit id column to leave out.")
    ] = None,
    cost: CostOption = None,
    value_per_outcome: ValueOption = 1.0,
    share: ShareOption = 0.3,
    models: ModelsOption = DEFAULT_MODELS,
    segments: SegmentsOption = None,
    propensity: PropensityOption = "design",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the splits and models.")] = 0,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples.")] = 500,
) -> None:
    """Fit S-, T-, X-learners and the transformed outcome on a randomised file; Qini, uplift@30%.

    The policy is valued against random targeting on a held-out half (IPW and doubly robust)."""
    from retention.serving.report import render_uplift_report

    request = workflows.UpliftEvaluateRequest(
        path=csv,
        treatment=treatment,
        control=control,
        outcome=outcome,
        features=None if features is None else tuple(features.split(",")),
        id_column=id_column,
        costs=parse_costs(cost),
        value_per_outcome=value_per_outcome,
        share=share,
        models=tuple(models.split(",")),
        segments=tuple((segments or "").split(",")),
        propensity=propensity,
        seed=seed,
        n_boot=n_boot,
    )
    rep = workflows.uplift_evaluate(request, progress=progress())
    payload = rep.to_dict()
    print_evaluation(payload)
    if json_out is not None:
        workflows.write_uplift_json(rep, json_out)
        console.print(f"evaluation: {json_out}", highlight=False, soft_wrap=True)
    html = report if report is not None else (json_out.with_suffix(".html") if json_out else None)
    if html is not None:
        written = render_uplift_report(rep, html)
        console.print(f"report: {written}", highlight=False, soft_wrap=True)
        workflows.track_artifact(written)  # the report joins the evaluation's tracked run


@uplift_app.command("train")
def train_command(
    experiment: Annotated[
        str, typer.Option("--experiment", help="The campaign (assignments.experiment_id).")
    ],
    outcome: Annotated[str, typer.Option("--outcome", help="Its outcome metric to learn.")],
    db: DbOption = None,
    control: Annotated[
        str | None,
        typer.Option("--control", help="Control variant (default: the experiment's own)."),
    ] = None,
    features: Annotated[
        str | None, typer.Option("--features", help="Comma-separated covariates.")
    ] = None,
    cost: CostOption = None,
    value_per_outcome: ValueOption = 1.0,
    share: ShareOption = 0.3,
    models: ModelsOption = DEFAULT_MODELS,
    segments: SegmentsOption = None,
    propensity: PropensityOption = "design",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the splits and models.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the evaluation as JSON.")
    ] = None,
) -> None:
    """Choose a targeting rule on a stored campaign, refit it on every unit and store it.

    The rule: which learners, which calibration, how much shrinkage between treatments."""
    request = workflows.UpliftTrainRequest(
        experiment_id=experiment,
        outcome=outcome,
        control=control,
        features=None if features is None else tuple(features.split(",")),
        models=tuple(models.split(",")),
        segments=tuple((segments or "").split(",")),
        share=share,
        propensity=propensity,
        costs=parse_costs(cost),
        value_per_outcome=value_per_outcome,
        seed=seed,
    )
    with open_store(db, read_only=False) as store:
        rep = workflows.uplift_train(store, request, progress=progress())
    payload = rep.to_dict()
    print_evaluation(payload)
    print_stored_rule(payload)
    console.print(
        f"stored uplift model {rep.model_id} (rule {rep.learner}, {rep.n_units:,} units) in "
        "uplift_models",
        highlight=False,
        soft_wrap=True,
    )
    if json_out is not None:
        workflows.write_uplift_json(rep, json_out)
        console.print(f"evaluation: {json_out}", highlight=False, soft_wrap=True)


@uplift_app.command("score")
def score_command(
    db: DbOption = None,
    model_id: Annotated[
        str | None, typer.Option("--model-id", help="Uplift model (default: the newest).")
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option("--cutoff", help="Feature date, YYYY-MM-DD (default: after the last event)."),
    ] = None,
) -> None:
    """Write each current customer's uplift per treatment (stored rule) to uplift_scores."""
    request = workflows.UpliftScoreRequest(model_id=model_id, cutoff=parse_cutoff_option(cutoff))
    with open_store(db, read_only=False) as store:
        rep = workflows.uplift_score(store, request, progress=progress())
    means = ", ".join(
        f"{t}: mean {m:+.4f}, positive for {100 * rep.positive_share[t]:.0f}%"
        for t, m in rep.mean_uplift.items()
    )
    console.print(
        f"scored {rep.n_customers:,} customers at {rep.cutoff:%Y-%m-%d} with uplift model "
        f"{rep.model_id} (rule {rep.rule}); {means}",
        highlight=False,
        soft_wrap=True,
    )
    console.print("table: uplift_scores", highlight=False, soft_wrap=True)
