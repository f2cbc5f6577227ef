"""The backtest report opened in headless Debian Chromium (``tests/browser_helpers.py``): every
plot draws, offline, no errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from browser_helpers import BROWSER_MARKS, chromium_page, png_size

from retention.models import BacktestResult
from retention.serving.report import ReportSection, render_backtest_report

pytestmark = BROWSER_MARKS


def make_result(n: int = 500, seed: int = 0) -> BacktestResult:
    rng = np.random.default_rng(seed)
    users = pd.Index([f"u{i:05d}" for i in range(n)], name="user_id")
    z = rng.normal(size=n)
    y = pd.Series((rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(int), index=users)
    scores = {
        name: pd.Series(1 / (1 + np.exp(-z - rng.normal(0, noise, n))), index=users)
        for name, noise in (("bgnbd", 1.5), ("gbdt", 0.8), ("ensemble", 0.5))
    }
    return BacktestResult(pd.Timestamp("2011-09-10"), 90, y, scores)


def make_events(n_users: int = 80, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    first = pd.Timestamp("2011-01-01") + pd.to_timedelta(rng.integers(0, 200, n_users), unit="D")
    repeats = rng.integers(1, 6, n_users)
    users = np.repeat([f"u{i:05d}" for i in range(n_users)], repeats)
    ts = np.repeat(first, repeats) + pd.to_timedelta(
        np.concatenate([40 * np.arange(r) for r in repeats]), unit="D"
    )
    return pd.DataFrame({"user_id": users, "ts": ts, "event_type": "purchase"})


def test_report_renders_in_chromium_offline(tmp_path: Path) -> None:
    bars = go.Figure(go.Bar(x=[0.3, 0.2], y=["recency_days", "frequency_90d"], orientation="h"))
    path = render_backtest_report(
        make_result(),
        tmp_path / "report.html",
        events=make_events(),
        sections=[
            ReportSection("Feature importance", figures=[bars], notes="Longer matters more.")
        ],
    )
    with chromium_page(allow=("file:",)) as browser:
        page = browser.page
        page.goto(path.as_uri())
        page.wait_for_function(
            "() => [...document.querySelectorAll('div.plot')]"
            ".every(d => d.querySelector('.main-svg'))",
            timeout=60_000,
        )
        n_divs = page.evaluate("document.querySelectorAll('div.plot').length")
        drawn = page.evaluate(
            "[...document.querySelectorAll('div.plot')]"
            ".filter(d => d.querySelector('.main-svg')).length"
        )
        n_svg = page.evaluate("document.querySelectorAll('.main-svg').length")
        heights = page.evaluate(
            "[...document.querySelectorAll('div.plot')].map(d => d.getBoundingClientRect().height)"
        )
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
    assert browser.problems == []
    assert browser.outside == []
    assert n_divs == 7 and drawn == n_divs
    assert n_svg >= n_divs
    assert min(heights) >= 250  # no plot collapsed to a sliver
    width, height = png_size(shot)
    assert width == 1400 and height > 2000
