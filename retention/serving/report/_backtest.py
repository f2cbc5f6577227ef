"""The HTML report of a backtest: metrics, ROC, PR, calibration, gains, scores and cohorts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

from retention._progress import status
from retention.exceptions import ConfigError, DataError
from retention.serving.report import _figures as figs
from retention.serving.report._render import _environment, render_report
from retention.serving.report._section import ReportSection
from retention.workflows import BacktestResult, cohort_retention

__all__ = ["METRIC_COLUMNS", "backtest_sections", "render_backtest_report"]

#: (key in BacktestResult.metrics, label, higher is better, plain-words help)
METRIC_COLUMNS: list[tuple[str, str, bool, str]] = [
    ("roc_auc", "ROC-AUC", True, "chance a returning customer is ranked above one who does not"),
    ("pr_auc", "PR-AUC", True, "average precision over every length of the target list"),
    ("brier", "Brier", False, "mean squared gap between probability and outcome"),
    ("log_loss", "Log loss", False, "penalty for confident wrong probabilities"),
    ("lift_at_10", "Lift@10%", True, "returners in the top 10% relative to a random 10%"),
]

_PERIOD_WORDS = {"D": "day", "W": "week", "M": "month", "Q": "quarter", "Y": "year"}

CAPTIONS = {
    "metrics": (
        "One row per model; the best value in each column is highlighted. ROC-AUC is the chance "
        "that the model ranks a customer who returns above one who does not (0.5 is guessing, "
        "1 is perfect). PR-AUC is the average precision of the ranked list; compare it with the "
        "base rate. Brier score and log loss measure how close the probabilities are to what "
        "happened (lower is better). Lift@10% is how many times more returning customers the "
        "model's top 10% holds than a random 10%."
    ),
    "roc": (
        "Going down each model's ranking, the curve shows the share of returning customers "
        "caught (up) against the share of non-returning customers flagged by mistake (right). "
        "Curves nearer the top-left corner rank better; the dashed diagonal is guessing."
    ),
    "pr": (
        "Precision is the share of flagged customers who do return; recall is the share of all "
        "returning customers that were flagged. A curve that stays high as recall grows is "
        "better; the dashed line is what flagging customers at random achieves (the base rate)."
    ),
    "calibration": (
        "Customers are sorted by predicted probability and cut into ten equal groups; each point "
        "compares a group's average prediction (across) with the share that actually returned "
        "(up). On the dashed diagonal the probabilities can be taken at face value; below it the "
        "model promises too much, above it too little."
    ),
    "gains": (
        "Customers are ranked by each model's score and cut into ten equal groups; decile 1 is "
        "the 10% rated most likely to return. Bars show the share of each group that did return, "
        "the dashed line the average. A useful model has tall bars on the left that fall steadily "
        "to the right. Hover for the lift and the share of all returners found so far."
    ),
    "scores": (
        "How each model spreads its predicted probabilities, drawn separately for customers who "
        "returned (blue) and who did not (orange), each as a share of its own group. The less "
        "the two shapes overlap, the better the model tells them apart."
    ),
    "cohorts": (
        "Each row is the customers whose first purchase fell in that {period} (n is the size of "
        "the cohort); each cell is the share of them who purchased in the {period} that many "
        "{period}s later ({period} 0 is the first purchase, always 100%). Read across a row to "
        "see how a cohort fades, down a column to compare cohorts at the same age. Blank cells "
        "lie beyond the end of the data, and the last {period} may be partial."
    ),
    "importance": (
        "How much each feature improved the gradient boosting model's splits while it learned, "
        "as a share of the total (top features only). It says what the model leans on, not "
        "that a feature causes customers to return."
    ),
    "weights": (
        "How much the ensemble trusts each member: the coefficient of the member's log-odds in "
        "the stacking regression, learned from the members' out-of-fold predictions on every "
        "learning cutoff (each customer's from a fit that never saw that customer). Larger means "
        "more say; near zero means the member adds little beyond the others."
    ),
    "fits": (
        "How each buy-till-you-die model's fit on the test cutoff's history went. A degenerate "
        "fit has parameters on the optimiser's bounds; when it collapses to the NBD (nobody seems "
        "to drop out), P(alive) is about 1 for everyone and is left out (NULL), and models that "
        "collapse alike are the same model under another name: only the first is listed above."
    ),
    "clv": (
        "CLV is the expected spend over the {horizon} days after the cutoff, net of returns. "
        "Customers are ranked by it and cut into ten equal groups; each point compares a "
        "group's mean prediction (across) with the mean spend it realised in those {horizon} "
        "days, net of returns (up). On the dashed diagonal the CLV can be taken at face value. "
        "The dotted line is the textbook CLV (BG/NBD x Gamma-Gamma on repeat purchases, returns "
        "ignored). {errors}"
    ),
}


def _check_result(result: BacktestResult) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if not isinstance(result, BacktestResult):
        raise ConfigError(
            f"render_backtest_report needs a BacktestResult; got {type(result).__name__}. "
            "Pass the object returned by the backtest workflow."
        )
    if len(result.y_true) == 0:
        raise DataError(
            f"The backtest at cutoff {result.cutoff:%Y-%m-%d} has no customers to report on. "
            "Choose a cutoff after the first purchases in the store."
        )
    if not result.scores:
        raise DataError("The backtest holds no model scores; run at least one model first.")
    y_raw = result.y_true.to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(y_raw).any():
        raise DataError(
            f"{int(np.isnan(y_raw).sum())} labels of the backtest are missing; the label window "
            f"[{result.cutoff:%Y-%m-%d}, +{result.horizon_days} days) must lie inside the data. "
            "Pick an earlier cutoff."
        )
    y = y_raw.astype(int)
    scores: dict[str, np.ndarray] = {}
    for name, s in result.scores.items():
        values = pd.Series(s).reindex(result.y_true.index).to_numpy(dtype=float, na_value=np.nan)
        bad = int((~np.isfinite(values)).sum())
        if bad:
            raise DataError(
                f"Model {name!r} has no finite score for {bad} of {len(values)} customers of the "
                "backtest. Score every customer of result.y_true (same user_id index)."
            )
        scores[str(name)] = values
    return y, scores


def _metrics_html(result: BacktestResult, names: Sequence[str]) -> Markup:
    metrics = result.metrics
    best: dict[str, float] = {}
    for key, _, higher, _ in METRIC_COLUMNS:
        values = [metrics[n][key] for n in names if np.isfinite(metrics[n][key])]
        if values:
            best[key] = max(values) if higher else min(values)
    rows = []
    for name in names:
        cells = []
        for key, _, _, _ in METRIC_COLUMNS:
            value = float(metrics[name][key])
            cells.append(
                {
                    "key": key,
                    "raw": repr(value),
                    "text": f"{value:.4f}" if np.isfinite(value) else "–",
                    "best": key in best and np.isfinite(value) and np.isclose(value, best[key]),
                }
            )
        seconds = result.timings.get(name)
        rows.append(
            {
                "model": name,
                "cells": cells,
                "seconds": f"{seconds:.1f}" if seconds is not None else "–",
            }
        )
    columns = [
        {"key": k, "label": label, "arrow": "↑" if higher else "↓", "help": help_}
        for k, label, higher, help_ in METRIC_COLUMNS
    ]
    html = (
        _environment()
        .get_template("metrics_table.html.j2")
        .render(columns=columns, rows=rows, timings=bool(result.timings))
    )
    return Markup(html)


def _cohort_table(result: BacktestResult, events: pd.DataFrame | None) -> pd.DataFrame | None:
    if events is not None:
        return cohort_retention(events)
    table = result.extra.get("cohort_retention")
    return table if isinstance(table, pd.DataFrame) and not table.empty else None


def backtest_sections(
    result: BacktestResult, *, events: pd.DataFrame | None = None
) -> list[ReportSection]:
    """The built-in sections of the backtest report, in order.

    Parameters
    ----------
    result : BacktestResult
        Labels and scores of every model at the test cutoff.
    events : pd.DataFrame or None
        Events in the contract's columns; when given, a cohort retention heatmap is added
        (otherwise one stored in ``result.extra["cohort_retention"]`` is used, if any).

    Returns
    -------
    list of ReportSection
        Metrics, ROC, precision-recall, calibration, gains, score distribution, cohort
        retention (when events or ``result.extra["cohort_retention"]`` are given), then from
        ``result.extra`` when present: gradient boosting feature importance
        (``"feature_importance"``: model -> {feature: gain}), ensemble weights
        (``"ensemble_weights"``: member -> coefficient).
    """
    y, scores = _check_result(result)
    names = list(scores)
    both = len(np.unique(y)) == 2
    metric_notes = CAPTIONS["metrics"]
    if not both:
        metric_notes += (
            " Every customer has the same outcome at this cutoff, so ranking metrics and the "
            "ROC and precision-recall curves are undefined."
        )
    sections = [
        ReportSection("Model comparison", html=_metrics_html(result, names), notes=metric_notes)
    ]
    if both:
        sections += [
            ReportSection(
                "ROC curves",
                figures=[figs.roc_figure(y, scores)],
                notes=CAPTIONS["roc"],
                wide=False,
            ),
            ReportSection(
                "Precision-recall curves",
                figures=[figs.pr_figure(y, scores)],
                notes=CAPTIONS["pr"],
                wide=False,
            ),
        ]
    sections += [
        ReportSection(
            "Calibration",
            figures=[figs.calibration_figure(y, scores)],
            notes=CAPTIONS["calibration"],
            wide=False,
        ),
        ReportSection(
            "Gains by decile",
            figures=[figs.gains_figure(y, scores)],
            notes=CAPTIONS["gains"],
            wide=False,
        ),
        ReportSection(
            "Score distribution",
            figures=[figs.score_distribution_figure(y, scores)],
            notes=CAPTIONS["scores"],
        ),
    ]
    cohorts = _cohort_table(result, events)
    if cohorts is not None:
        freq = getattr(cohorts.index, "freqstr", "M") or "M"
        word = _PERIOD_WORDS.get(freq[:1].upper(), "period")
        sections.append(
            ReportSection(
                "Cohort retention",
                figures=[figs.cohort_heatmap_figure(cohorts)],
                notes=CAPTIONS["cohorts"].format(period=word),
            )
        )
    return sections + _extra_sections(result)


def _extra_sections(result: BacktestResult) -> list[ReportSection]:
    """Sections from what the backtest left in ``result.extra`` (skipped when malformed)."""
    out: list[ReportSection] = []
    importance = result.extra.get("feature_importance")
    if isinstance(importance, dict):
        figures = [
            figs.importance_figure(values, str(model))
            for model, values in importance.items()
            if isinstance(values, dict) and values
        ]
        if figures:
            out.append(
                ReportSection(
                    "Feature importance (gain)",
                    figures=figures,
                    notes=CAPTIONS["importance"],
                    wide=False,
                )
            )
    out += _quality_sections(result)
    weights = result.extra.get("ensemble_weights")
    if isinstance(weights, dict) and weights:
        table = pd.DataFrame(
            {"member": [str(k) for k in weights], "weight": [float(v) for v in weights.values()]}
        )
        out.append(
            ReportSection("Ensemble weights", table=table, notes=CAPTIONS["weights"], wide=False)
        )
    return out


def _quality_sections(result: BacktestResult) -> list[ReportSection]:
    """The BTYD fit flags and the CLV against realised spend (skipped when absent)."""
    out: list[ReportSection] = []
    fits = result.extra.get("fits")
    if isinstance(fits, dict):
        rows = [
            {
                "model": str(name),
                "fit": str(f.get("model", "")),
                "degenerate": "yes" if f.get("degenerate") else "no",
                "P(alive)": str(f.get("p_alive", "")),
                "same as": str(f.get("same_as", "")),
                "why": str(f.get("reason") or ""),
            }
            for name, f in fits.items()
            if isinstance(f, dict) and "degenerate" in f
        ]
        if rows:
            table = pd.DataFrame(rows)
            out.append(ReportSection("BTYD fits", table=table, notes=CAPTIONS["fits"]))
    clv = result.extra.get("clv")
    if isinstance(clv, dict) and clv.get("deciles"):
        base = clv.get("baseline") if isinstance(clv.get("baseline"), dict) else None
        errors = f"Mean absolute error {clv['mae']:,.1f} per customer"
        if base:
            errors += f" (textbook CLV {base['mae']:,.1f})"
        errors += (
            f"; predicted total {clv['predicted_total']:,.0f} against "
            f"{clv['realised_total']:,.0f} realised."
        )
        h = int(result.horizon_days)
        out.append(
            ReportSection(
                f"CLV against realised spend ({h} days)",
                figures=[
                    figs.clv_calibration_figure(
                        clv["deciles"], base.get("deciles") if base else None, horizon_days=h
                    )
                ],
                notes=CAPTIONS["clv"].format(horizon=h, errors=errors),
                wide=False,
            )
        )
    return out


def _summary(result: BacktestResult, names: Sequence[str]) -> list[tuple[str, str]]:
    end = result.cutoff + pd.Timedelta(days=int(result.horizon_days))
    base = float(result.y_true.mean())
    facts = [
        ("Cutoff", f"{result.cutoff:%Y-%m-%d}"),
        ("Horizon", f"{int(result.horizon_days)} days (to {end:%Y-%m-%d})"),
        ("Population", f"{len(result.y_true):,} customers"),
        ("Base rate", f"{base:.1%} returned"),
        ("Models", ", ".join(names)),
    ]
    if result.train_cutoffs:
        facts.append(("Training cutoffs", ", ".join(f"{c:%Y-%m-%d}" for c in result.train_cutoffs)))
    if result.valid_cutoff is not None:
        facts.append(("Validation cutoff", f"{result.valid_cutoff:%Y-%m-%d}"))
    if "p_alive_source" in result.extra:
        source = result.extra["p_alive_source"]
        text = str(source) if source else "unavailable (every BTYD fit degenerate)"
        facts.append(("P(alive)", text))
    return facts


def render_backtest_report(
    result: BacktestResult,
    path: Path | str,
    *,
    events: pd.DataFrame | None = None,
    title: str = "Retention backtest",
    sections: Sequence[ReportSection] = (),
) -> Path:
    """Write the self-contained HTML report of a backtest next to its JSON.

    Parameters
    ----------
    result : BacktestResult
        Labels and scores of every model at the test cutoff.
    path : Path or str
        The HTML file to write (parent folders are created).
    events : pd.DataFrame or None
        Events in the contract's columns, for the cohort retention heatmap.
    title : str
        Title of the page.
    sections : sequence of ReportSection
        More sections from later stages (importance, reasons, segments), shown after the
        built-in ones.

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from retention.workflows import BacktestResult
    >>> rng = np.random.default_rng(0)
    >>> users = pd.Index([f"u{i}" for i in range(200)], name="user_id")
    >>> p = pd.Series(rng.uniform(size=200), index=users)
    >>> y = pd.Series((rng.uniform(size=200) < p).astype(int), index=users)
    >>> result = BacktestResult(pd.Timestamp("2011-09-01"), 90, y, {"gbdt": p})
    >>> out = render_backtest_report(result, "backtest.html")  # doctest: +SKIP
    """
    if not isinstance(title, str) or not title.strip():
        raise ConfigError(f"The report title must be non-empty text; got {title!r}.")
    extra = list(sections)
    with status("Writing the backtest report"):
        built = backtest_sections(result, events=events)
        names = list(result.scores)
        subtitle = (
            f"Who comes back within {int(result.horizon_days)} days of "
            f"{result.cutoff:%Y-%m-%d}: {len(names)} model(s) compared on customers "
            "they never saw the future of."
        )
        return render_report(
            built + extra,
            path,
            title=title,
            summary=_summary(result, [str(n) for n in names]),
            subtitle=subtitle,
        )
