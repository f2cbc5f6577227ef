"""``retention monitor`` and ``retention retrain``: drift and decay, and retraining on them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from retention import workflows
from retention.serving.cli._app import (
    DbOption,
    app,
    console,
    open_store,
    parse_cutoff_option,
    progress,
)

if TYPE_CHECKING:  # pragma: no cover
    from retention.workflows import MonitorReport, MonitorThresholds

__all__ = ["DRIFT_EXIT", "monitor_command", "retrain_command"]

#: exit status of ``retention monitor --fail-on-drift`` when a flag is raised
DRIFT_EXIT = 3

ModelIdOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model id of the store's registry (default: the production model, else the newest).",
        show_default=False,
    ),
]
WindowOption = Annotated[
    int | None,
    typer.Option(
        "--window",
        min=1,
        help="Days back from the newest cutoff that the latest window covers (default: as many "
        "cutoffs as the model's training window).",
        show_default=False,
    ),
]
CutoffOption = Annotated[
    str | None,
    typer.Option(
        "--cutoff",
        help="The newest cutoff, YYYY-MM-DD (default: the date of the last event).",
        show_default=False,
    ),
]
FeaturePsiOption = Annotated[
    float | None,
    typer.Option(
        "--feature-psi",
        min=0.0,
        help="Flag a feature whose PSI exceeds this "
        "(default $RETENTION_MONITOR_FEATURE_PSI or 0.2).",
        show_default=False,
    ),
]
ScorePsiOption = Annotated[
    float | None,
    typer.Option(
        "--score-psi",
        min=0.0,
        help="Flag the score when its PSI exceeds this "
        "(default $RETENTION_MONITOR_SCORE_PSI or 0.1).",
        show_default=False,
    ),
]
IgnoreOption = Annotated[
    list[str] | None,
    typer.Option(
        "--ignore",
        help="A feature (or glob pattern, 'tenure_*') to measure but leave out of the flags; "
        "repeatable (default $RETENTION_MONITOR_IGNORE, comma-separated).",
        show_default=False,
    ),
]
IncludeAgeingOption = Annotated[
    bool,
    typer.Option(
        "--include-ageing",
        help="Let the features that age with the calendar (tenure, days since the sign-up) "
        "raise the drift flag too; by default they are measured, marked, and raise none.",
    ),
]
FullHistoryOption = Annotated[
    bool,
    typer.Option(
        "--full-history",
        help="Compute the latest window's features on every event even when the training "
        "window's histories were cut short by the store's start (by default they are then "
        "computed on as many days of history as the training cutoffs had).",
    ),
]
DecayOption = Annotated[
    float | None,
    typer.Option(
        "--decay",
        min=0.0,
        help="Flag when reference minus realised ROC-AUC exceeds this (default "
        "$RETENTION_MONITOR_DECAY or 0.05).",
        show_default=False,
    ),
]


def _thresholds(
    feature_psi: float | None, score_psi: float | None, decay: float | None
) -> MonitorThresholds:
    return workflows.MonitorThresholds.from_env(
        feature_psi=feature_psi, score_psi=score_psi, decay=decay
    )


def _fmt(value: object, spec: str = ".3f") -> str:
    if isinstance(value, int | float) and value == value:  # not NaN
        return format(value, spec)
    return "-"


def _history_text(starts: list[str]) -> str:
    """``, history-matched (events from DAY)``, or ``from FIRST..LAST`` when they differ."""
    if not starts:
        return ""
    days = starts[0] if len(set(starts)) == 1 else f"{starts[0]}..{starts[-1]}"
    return f", history-matched (events from {days})"


def _print_report(rep: MonitorReport) -> None:
    payload = rep.to_dict()
    ref, cur = payload["reference"], payload["current"]
    console.print(
        f"model {rep.model_id} ({rep.registry_name or '?'}"
        f"{', ' + rep.stage if rep.stage else ''}), horizon {rep.horizon_days} days: training "
        f"window {ref['cutoffs'][0]}..{ref['cutoffs'][-1]} ({ref['n_rows']:,} rows) against "
        f"latest window {cur['cutoffs'][0]}..{cur['cutoffs'][-1]} ({cur['n_rows']:,} rows)"
        + (_history_text(payload["history_starts"]) if rep.history_matched else ""),
        highlight=False,
        soft_wrap=True,
    )
    table = Table(
        title="Most shifted features (PSI over the training window's bins; KS); ageing: grows "
        "with the calendar"
    )
    for col, justify in (
        ("feature", "left"),
        ("PSI", "right"),
        ("KS", "right"),
        ("p", "right"),
        ("bins", "left"),
        ("", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in rep.features.head(10).itertuples():
        quiet = row.ignored or (row.ages_with_calendar and not rep.include_ageing)
        style = "bold red" if row.drifted else ("dim" if quiet else None)
        mark = "ignored" if row.ignored else ""
        if row.ages_with_calendar:
            mark = "ageing" if rep.include_ageing else "ageing, no flag"
        table.add_row(
            str(row.feature),
            _fmt(row.psi),
            _fmt(row.ks),
            _fmt(row.ks_p_value, ".1e"),
            str(row.binning),
            mark,
            style=style,
        )
    console.print(table)
    s = rep.score
    console.print(
        f"score: PSI {_fmt(s.get('psi'))}, KS {_fmt(s.get('ks'))} "
        f"(p {_fmt(s.get('ks_p_value'), '.1e')}), "
        f"mean P(retained) {_fmt(s.get('reference_mean'))} -> {_fmt(s.get('current_mean'))}",
        highlight=False,
        soft_wrap=True,
    )
    perf = rep.performance
    if len(perf):
        ptable = Table(title="Realised performance of earlier scores (label window passed)")
        for col in ("model", "cutoff", "n", "ROC-AUC", "Brier", "ECE", "decay"):
            ptable.add_column(col, justify="left" if col in ("model", "cutoff") else "right")
        for r in perf.tail(10).to_dict("records"):
            ptable.add_row(
                str(r["model_version"]),
                f"{r['cutoff']:%Y-%m-%d}",
                f"{int(r['n_users']):,}",
                _fmt(r["roc_auc"]),
                _fmt(r["brier"]),
                _fmt(r["ece"]),
                _fmt(r["decay"]),
            )
        console.print(ptable)
    if rep.baseline_roc_auc is not None:
        console.print(
            f"reference ROC-AUC {rep.baseline_roc_auc:.3f} ({rep.baseline_source}); decay "
            f"{_fmt(rep.decay)}",
            highlight=False,
            soft_wrap=True,
        )
    for note in rep.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if rep.drift:
        console.print(
            Text.assemble(("DRIFT: ", "bold red"), ("; ".join(rep.messages()), "red")),
            highlight=False,
            soft_wrap=True,
        )
    else:
        t = rep.thresholds
        console.print(
            Text.assemble(
                ("OK: ", "bold green"),
                f"no feature PSI > {t.feature_psi:g}, score PSI <= {t.score_psi:g}, decay "
                f"<= {t.decay:g} (or not yet measurable)",
            ),
            highlight=False,
            soft_wrap=True,
        )


@app.command("monitor")
def monitor_command(
    db: DbOption = None,
    model: ModelIdOption = None,
    window: WindowOption = None,
    cutoff: CutoffOption = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the run as JSON.", show_default=False)
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="HTML report path (default: the --json path with .html).",
            show_default=False,
        ),
    ] = None,
    feature_psi: FeaturePsiOption = None,
    score_psi: ScorePsiOption = None,
    decay: DecayOption = None,
    ignore: IgnoreOption = None,
    include_ageing: IncludeAgeingOption = False,
    full_history: FullHistoryOption = False,
    fail_on_drift: Annotated[
        bool,
        typer.Option(
            "--fail-on-drift",
            help=f"Exit with status {DRIFT_EXIT} when a flag is raised (CI, cron).",
        ),
    ] = False,
) -> None:
    """Drift of each feature and of the score since training (PSI, KS); kept in monitor_runs.

    Also the realised ROC-AUC and calibration of earlier scores."""
    from retention.serving.report import render_monitor_report

    html = report if report is not None else (json_out.with_suffix(".html") if json_out else None)
    if json_out is not None:
        workflows.check_output_path(json_out, "--json", "monitor.json")
    if html is not None:
        workflows.check_output_path(html, "--report", "monitor.html")
    request = workflows.MonitorRequest(
        model_id=model,
        window_days=window,
        cutoff=parse_cutoff_option(cutoff),
        thresholds=_thresholds(feature_psi, score_psi, decay),
        ignore=tuple(ignore) if ignore else None,
        include_ageing=include_ageing,
        full_history=full_history,
    )
    with open_store(db, read_only=False) as store:
        rep = workflows.monitor(store, request, progress=progress())
        history = workflows.monitor_history(store, model_id=rep.model_id)
    _print_report(rep)
    if json_out is not None:
        workflows.write_monitor_json(rep, json_out)
        console.print(f"monitor run: {json_out}", highlight=False, soft_wrap=True)
    if html is not None:
        written = render_monitor_report(rep, html, history=history)
        console.print(f"report: {written}", highlight=False, soft_wrap=True)
    if rep.drift and fail_on_drift:
        raise typer.Exit(DRIFT_EXIT)


@app.command("retrain")
def retrain_command(
    db: DbOption = None,
    if_drift: Annotated[
        bool,
        typer.Option(
            "--if-drift", help="Retrain only when monitoring raises a flag (the default)."
        ),
    ] = False,
    always: Annotated[
        bool, typer.Option("--always", help="Retrain whatever monitoring says (a schedule).")
    ] = False,
    model: ModelIdOption = None,
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--cutoff",
            help="Cutoff to train for, YYYY-MM-DD (default: the date of the last event).",
            show_default=False,
        ),
    ] = None,
    horizon: Annotated[
        int | None,
        typer.Option(
            "--horizon",
            min=1,
            help="Label window in days (default: the model's).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="The new artifact (default: beside the model's, NAME-CUTOFF.retention).",
            show_default=False,
        ),
    ] = None,
    window: WindowOption = None,
    feature_psi: FeaturePsiOption = None,
    score_psi: ScorePsiOption = None,
    decay: DecayOption = None,
    ignore: IgnoreOption = None,
    include_ageing: IncludeAgeingOption = False,
    full_history: FullHistoryOption = False,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write what was done as JSON.", show_default=False),
    ] = None,
) -> None:
    """Retrain on the newest cutoff when drift or decay passes a threshold (or --always).

    The new model is registered as a candidate, never promoted."""
    if if_drift and always:
        raise typer.BadParameter("pass --if-drift or --always, not both.", param_hint="--always")
    if out is not None:
        workflows.check_output_path(out, "--out", "model.retention")
    if json_out is not None:
        workflows.check_output_path(json_out, "--json", "retrain.json")
    request = workflows.RetrainRequest(
        mode="always" if always else "if_drift",
        model_id=model,
        cutoff=parse_cutoff_option(cutoff),
        horizon_days=horizon,
        out=out,
        window_days=window,
        thresholds=_thresholds(feature_psi, score_psi, decay),
        ignore=tuple(ignore) if ignore else None,
        include_ageing=include_ageing,
        full_history=full_history,
    )
    with open_store(db, read_only=False) as store:
        rep = workflows.retrain(store, request, progress=progress())
    if json_out is not None:
        workflows.write_retrain_json(rep, json_out)
    if not rep.triggered:
        console.print(
            Text.assemble(
                ("not retrained: ", "bold green"),
                f"monitoring model {rep.model_id} raised no flag (run "
                f"{rep.monitor.run_id if rep.monitor else '-'}).",
            ),
            highlight=False,
            soft_wrap=True,
        )
        return
    console.print(
        Text.assemble(("retrained: ", "bold yellow"), "; ".join(rep.reasons)),
        highlight=False,
        soft_wrap=True,
    )
    assert rep.trained is not None
    meta = rep.trained.metadata
    valid = (meta.get("metrics") or {}).get("valid") or {}
    console.print(
        f"new model {rep.trained.model_id} ({meta.get('registry_name')}) for cutoff "
        f"{str(meta.get('cutoff'))[:10]}, stage {rep.stage or 'candidate'}; valid ROC-AUC "
        f"{_fmt(valid.get('roc_auc'))} (optimistic). Promote it with `retention promote` once "
        "it beats production.",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"model: {rep.trained.path}", highlight=False, soft_wrap=True)
