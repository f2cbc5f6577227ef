"""The HTML backtest report: self-contained, every section, the right numbers, escaped text."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from retention.exceptions import ConfigError, DataError
from retention.models import BacktestResult, classification_metrics, lift_at
from retention.serving.report import (
    ReportSection,
    backtest_sections,
    render_backtest_report,
    render_report,
)
from retention.serving.report._figures import calibration_bins, decile_table, thin_curve

BUILT_IN = [
    "Model comparison",
    "ROC curves",
    "Precision-recall curves",
    "Calibration",
    "Gains by decile",
    "Score distribution",
    "Cohort retention",
]


def make_result(n: int = 500, seed: int = 0) -> BacktestResult:
    """Three models of decreasing noise on ``n`` synthetic customers."""
    rng = np.random.default_rng(seed)
    users = pd.Index([f"u{i:05d}" for i in range(n)], name="user_id")
    z = rng.normal(size=n)
    y = pd.Series((rng.uniform(size=n) < 1 / (1 + np.exp(-(z - 0.3)))).astype(int), index=users)
    scores = {
        name: pd.Series(1 / (1 + np.exp(-(z - 0.3) - rng.normal(0, noise, n))), index=users)
        for name, noise in (("bgnbd", 1.5), ("gbdt", 0.8), ("ensemble", 0.5))
    }
    # the scores arrive in another order than the labels: the report must align them
    scores["gbdt"] = scores["gbdt"].iloc[::-1]
    return BacktestResult(
        cutoff=pd.Timestamp("2011-09-10"),
        horizon_days=90,
        y_true=y,
        scores=scores,
        train_cutoffs=[pd.Timestamp("2011-05-13"), pd.Timestamp("2011-04-13")],
        valid_cutoff=pd.Timestamp("2011-06-12"),
        timings={"bgnbd": 1.5, "gbdt": 2.0, "ensemble": 3.25},
    )


def make_events(n_users: int = 60, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = pd.Timestamp("2011-01-01") + pd.Timedelta(days=int(rng.integers(0, 200)))
        for k in range(int(rng.integers(1, 6))):
            rows.append((f"u{u:05d}", start + pd.Timedelta(days=int(40 * k + rng.integers(0, 20)))))
    return pd.DataFrame(
        {"user_id": [r[0] for r in rows], "ts": [r[1] for r in rows], "event_type": "purchase"}
    )


def figures_of(html: str) -> dict[str, dict[str, Any]]:
    """Every embedded figure, by plot id."""
    found = re.findall(r'<script type="application/json" id="(plot-\d+)-data">(.*?)</script>', html)
    return {pid: json.loads(text) for pid, text in found}


def n_points(values: Any) -> int:
    """Length of a trace array, plain or base64-typed (plotly's ``bdata``)."""
    if isinstance(values, dict) and "bdata" in values:
        size = int(re.sub(r"\D", "", values["dtype"]) or 1)
        return len(base64.b64decode(values["bdata"])) // size
    return len(values)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[BacktestResult, str, Path]:
    result = make_result()
    path = tmp_path_factory.mktemp("report") / "sub" / "backtest.html"
    out = render_backtest_report(result, path, events=make_events())
    return result, out.read_text(encoding="utf-8"), out


def test_report_is_self_contained(report: tuple[BacktestResult, str, Path]) -> None:
    _, html, path = report
    assert path.is_file() and path.parent.name == "sub"
    assert not re.search(r"<script[^>]*\ssrc\s*=", html, re.I)
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']?https?:", html, re.I)
    assert not re.search(r"<(img|iframe)[^>]*src\s*=\s*[\"']?https?:", html, re.I)
    # plotly.js inlined exactly once, and the file stays small apart from it
    assert html.count("Plotly.newPlot(") == 1
    assert len(re.findall(r"\* plotly\.js v\d", html)) == 1
    from plotly.offline import get_plotlyjs

    assert len(html.encode()) - len(get_plotlyjs().encode()) < 300_000


def test_every_section_and_one_plot_per_chart(report: tuple[BacktestResult, str, Path]) -> None:
    _, html, _ = report
    for title in BUILT_IN:
        assert f"<h2>{title}</h2>" in html, title
    divs = re.findall(r'<div class="plot" id="(plot-\d+)"', html)
    figures = figures_of(html)
    assert len(divs) == 6  # everything except the metrics table is one chart
    assert sorted(divs) == sorted(figures)
    # every chart has a caption saying how to read it
    assert html.count('<p class="caption">') == len(BUILT_IN)
    # header facts
    for fact in ("2011-09-10", "90 days", "500 customers", "2011-05-13, 2011-04-13", "2011-06-12"):
        assert fact in html


def test_metrics_table_equals_classification_metrics(
    report: tuple[BacktestResult, str, Path],
) -> None:
    result, html, _ = report
    cells = re.findall(r'<tr data-model="([^"]+)">(.*?)</tr>', html, flags=re.S)
    assert [m for m, _ in cells] == ["bgnbd", "gbdt", "ensemble"]
    y = result.y_true.to_numpy()
    for model, row in cells:
        expected = classification_metrics(
            y, result.scores[model].reindex(result.y_true.index).to_numpy()
        )
        shown = {
            k: float(v) for k, v in re.findall(r'data-metric="(\w+)" data-value="([^"]+)"', row)
        }
        assert shown == expected
        # the text shown is the rounded value
        assert f"{expected['roc_auc']:.4f}" in row
    # the best value of each column is highlighted (ties all of them), and no other
    metrics = result.metrics
    for key, higher in (("roc_auc", True), ("brier", False), ("lift_at_10", True)):
        values = {m: metrics[m][key] for m in metrics}
        top = max(values.values()) if higher else min(values.values())
        best = [m for m, v in values.items() if v == top]
        marked = [m for m, row in cells if re.search(rf'data-metric="{key}"[^>]*class="best"', row)]
        assert marked == best and marked


def test_curves_are_thinned_and_calibration_has_ten_bins(tmp_path: Path) -> None:
    result = make_result(n=20_000, seed=3)
    html = render_backtest_report(result, tmp_path / "big.html").read_text(encoding="utf-8")
    figures = figures_of(html)
    assert len(figures) == 5  # no events: no cohort heatmap
    assert "Cohort retention" not in html
    for fig in figures.values():
        for trace in fig["data"]:
            if "x" in trace:
                assert n_points(trace["x"]) <= 302
    calibration = next(f for f in figures.values() if "perfect calibration" in json.dumps(f))
    model_traces = [t for t in calibration["data"] if t["name"] in result.scores]
    assert [n_points(t["x"]) for t in model_traces] == [10, 10, 10]
    from plotly.offline import get_plotlyjs

    assert len(html.encode()) - len(get_plotlyjs().encode()) < 300_000


def test_calibration_and_decile_summaries_by_hand() -> None:
    bins = calibration_bins(np.array([0, 0, 1, 1]), np.array([0.4, 0.1, 0.3, 0.2]), n_bins=2)
    assert bins["predicted"].tolist() == pytest.approx([0.15, 0.35])
    assert bins["observed"].tolist() == [0.5, 0.5]
    assert bins["n"].tolist() == [2, 2]
    result = make_result()
    y = result.y_true.to_numpy()
    s = result.scores["ensemble"].reindex(result.y_true.index).to_numpy()
    table = decile_table(y, s)
    assert table["n"].tolist() == [50] * 10
    assert table.loc[0, "lift"] == pytest.approx(lift_at(y, s, 0.1))
    assert table["captured"].iloc[-1] == pytest.approx(1.0)
    assert np.all(np.diff(table["captured"]) >= 0)


def test_thin_curve_keeps_ends_and_shape() -> None:
    x = np.linspace(0, 1, 10_001)
    y = np.sqrt(x)
    tx, ty = thin_curve(x, y, max_points=200)
    assert len(tx) <= 202
    assert (tx[0], ty[0], tx[-1], ty[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.max(np.abs(np.interp(x, tx, ty) - y)) < 0.02


def test_text_is_escaped_and_sections_are_added_with_one_call(tmp_path: Path) -> None:
    result = make_result(n=300)
    evil = "<img src=x onerror=alert(1)>"
    result.scores[evil] = result.scores.pop("bgnbd")
    bars = go.Figure(go.Bar(x=[3, 1], y=["recency_days", "</script><b>x</b>"], orientation="h"))
    extra = [
        ReportSection("Feature importance", figures=[bars], notes="Longer <bars> matter more."),
        ReportSection("Segments", table=pd.DataFrame({"segment": ["<a>"], "rate": [0.123456]})),
    ]
    html = render_backtest_report(
        result, tmp_path / "r.html", title="Backtest <i>", sections=extra
    ).read_text(encoding="utf-8")
    assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<title>Backtest &lt;i&gt;</title>" in html
    assert "Longer &lt;bars&gt; matter more." in html
    assert "<td>&lt;a&gt;</td><td>0.1235</td>" in html
    # the added sections come after the built-in ones and are linked from the menu
    assert html.index("<h2>Score distribution</h2>") < html.index("<h2>Feature importance</h2>")
    assert 'href="#feature-importance"' in html and 'href="#segments"' in html
    # no JSON block can close its <script> early
    for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S):
        assert "<" not in block
    figures = figures_of(html)
    assert len(figures) == 6
    # a figure on plotly's default look gets the report's look and a height
    added = figures[max(figures, key=lambda k: int(k.split("-")[1]))]
    assert added["layout"]["height"] == 420
    assert added["layout"]["template"]["layout"]["plot_bgcolor"] == "white"
    assert added["data"][0]["y"][1] == "</script><b>x</b>"


def test_cohort_table_from_extra_and_single_outcome(tmp_path: Path) -> None:
    result = make_result(n=200)
    from retention.features import cohort_retention

    result.extra["cohort_retention"] = cohort_retention(make_events())
    titles = [s.title for s in backtest_sections(result)]
    assert titles == BUILT_IN
    # everybody returned: ranking curves are undefined and left out, the rest still renders
    everyone = BacktestResult(result.cutoff, 90, result.y_true * 0 + 1, result.scores, timings={})
    titles = [s.title for s in backtest_sections(everyone)]
    assert "ROC curves" not in titles and "Calibration" in titles
    html = render_backtest_report(everyone, tmp_path / "one.html").read_text(encoding="utf-8")
    assert "undefined" in html and "Time (s)" not in html


def test_mistakes_give_one_line_errors(tmp_path: Path) -> None:
    result = make_result(n=100)
    partial = BacktestResult(
        result.cutoff, 90, result.y_true, {"gbdt": result.scores["gbdt"].iloc[:60]}
    )
    with pytest.raises(DataError, match="'gbdt' has no finite score for 40 of 100"):
        render_backtest_report(partial, tmp_path / "r.html")
    empty = BacktestResult(result.cutoff, 90, result.y_true.iloc[:0], {})
    with pytest.raises(DataError, match="no customers"):
        render_backtest_report(empty, tmp_path / "r.html")
    with pytest.raises(ConfigError, match="is a folder"):
        render_backtest_report(result, tmp_path)
    with pytest.raises(ConfigError, match="BacktestResult"):
        render_backtest_report({"models": {}}, tmp_path / "r.html")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"figures=\[fig\]"):
        ReportSection("Importance", figures=go.Figure())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-empty title"):
        ReportSection("  ")
    with pytest.raises(ConfigError, match="ReportSection objects"):
        render_report(["text"], tmp_path / "r.html", title="x")  # type: ignore[list-item]
    assert not (tmp_path / "r.html").exists()


def test_importance_and_ensemble_weights_from_extra(tmp_path: Path) -> None:
    result = make_result(n=200)
    gains = {f"f{i:02d}": float(i) for i in range(20)}
    result.extra["feature_importance"] = {"gbdt": gains, "broken": "not a dict"}
    result.extra["ensemble_weights"] = {"bgnbd": 0.25, "gbdt": 1.5}
    titles = [s.title for s in backtest_sections(result)]
    assert titles[-2:] == ["Feature importance (gain)", "Ensemble weights"]
    html = render_backtest_report(result, tmp_path / "x.html").read_text(encoding="utf-8")
    bars = next(f for f in figures_of(html).values() if "of the total gain" in json.dumps(f))
    trace = bars["data"][0]
    # the 15 largest of 20, largest drawn at the top (last), as shares of the total gain
    assert trace["y"][-1] == "f19" and len(trace["y"]) == 15 and "f04" not in trace["y"]
    assert trace["x"][-1] == pytest.approx(19 / sum(range(20)))
    assert "<td>bgnbd</td><td>0.25</td>" in html and "<td>gbdt</td><td>1.5</td>" in html
