"""The dashboard in headless Debian Chromium: sign in with a key, load every page, look up a
customer; no console error, no failed request, nothing fetched from outside the service.

Chromium and its listeners come from ``tests/browser_helpers.py``. Screenshots go to the test's
tmp folder, and also to ``$RETENTION_SCREENSHOT_DIR`` when set (the README's come from there). With
``$RETENTION_DASHBOARD_DB`` set to a store, a copy of it is served instead of the test store
(e.g. the demo's Online Retail store, for the README).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from api_helpers import Keys, LiveServer
from browser_helpers import BROWSER_MARKS, chromium_page, png_size

from retention import workflows

PAGES = ["overview", "cohorts", "risk", "drivers", "customers", "plan", "experiments", "models"]
#: pages whose plots must all draw (the others draw only when their stage has data)
PLOTTED = {"overview": 2, "cohorts": 1, "risk": 1, "drivers": 2, "models": 1}

pytestmark = BROWSER_MARKS


def _store(api_db: Path, keys: Keys, tmp_path: Path) -> tuple[Path, str, str]:
    """The store to serve, a read key and a customer to look up."""
    given = os.environ.get("RETENTION_DASHBOARD_DB")
    if not given:
        with workflows.Store(api_db) as store:
            top = store.read_scores().sort_values("clv", ascending=False)
        return api_db, keys.read, str(top["user_id"].iloc[0])
    db = tmp_path / "dashboard.duckdb"
    shutil.copy(given, db)
    with workflows.Store(db) as store:
        key = workflows.create_api_key(store, workflows.ApiKeyRequest("read", "browser test"))
        scores = store.read_scores().sort_values("clv", ascending=False)
    return db, key.key, str(scores["user_id"].iloc[0])


def test_dashboard_in_chromium(api_db: Path, keys: Keys, tmp_path: Path) -> None:
    db, key, customer = _store(api_db, keys, tmp_path)
    shots = tmp_path / "shots"
    shots.mkdir()
    with LiveServer(db) as url, chromium_page(allow=(url,)) as browser:
        page, problems = browser.page, browser.problems
        # without a key, a page sends the browser to the login page
        page.goto(f"{url}/dashboard/risk")
        page.wait_for_url("**/dashboard/login?next=risk")
        page.fill("#key", "rk_000000000000_" + "x" * 43)
        page.click("button[type=submit]")
        page.wait_for_selector("#error:not([hidden])")
        assert "not valid" in page.inner_text("#error")
        problems.clear()  # the refused sign-in's 401 was the point
        page.fill("#key", key)
        page.click("button[type=submit]")
        page.wait_for_url("**/dashboard/risk")
        page.wait_for_selector("#app[data-ready='1']", state="attached", timeout=60_000)

        for name in PAGES:
            page.goto(f"{url}/dashboard/{name}")
            page.wait_for_selector("#app[data-ready='1']", state="attached", timeout=60_000)
            assert page.is_hidden("#error"), page.inner_text("#error")
            assert "key " in page.inner_text("#who")
            if name in PLOTTED:
                page.wait_for_function(
                    "() => [...document.querySelectorAll('div.plot')]"
                    ".every(d => d.querySelector('.main-svg'))",
                    timeout=60_000,
                )
                n = page.evaluate("document.querySelectorAll('div.plot .main-svg').length")
                assert n >= PLOTTED[name], name
            if name == "customers":
                page.fill("#customer-input", customer)
                page.click("#lookup-form button")
                page.wait_for_selector("[data-testid=customer-id]")
                page.wait_for_selector("#customer[aria-busy='false']")
                assert customer in page.inner_text("[data-testid=customer-id]")
                assert "%" in page.inner_text("[data-testid=customer-p] .value")
                assert page.inner_text("[data-testid=customer-band] .value") in {
                    "high",
                    "medium",
                    "low",
                }
                assert page.query_selector("#plot-reasons .main-svg") is not None
                assert page.is_visible("[data-testid=customer-recommendations]")
                assert page.is_visible("[data-testid=customer-plan]")
            page.screenshot(path=str(shots / f"dashboard-{name}.png"), full_page=True)

        page.click("#logout")
        page.wait_for_url("**/dashboard/login**")
    assert browser.problems == []
    assert browser.outside == []
    for name in PAGES:
        width, height = png_size(shots / f"dashboard-{name}.png")
        assert width == 1400 and height >= 600
    target = os.environ.get("RETENTION_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for png in shots.glob("*.png"):
            shutil.copy(png, Path(target) / png.name)
