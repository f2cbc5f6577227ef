"""Outputs a user can trust: BTYD fit flags and twins, P(alive), CLV, bookkeeping, drift.

On the bundled Online Retail log (real data): every BTYD fit collapses to the NBD there, so the
backtest must say so, list one NBD row, and leave P(alive) unavailable rather than print ~1.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import synthetic_store

from retention import workflows
from retention.data import Store
from retention.exceptions import RetentionWarning
from retention.features import MinData, build_features, make_frame

#: the RetentionWarnings a backtest on Online Retail raises by design (degenerate NBD fits)
DEGENERATE = r"degenerate|thin data"


@pytest.fixture(scope="module")
def retail_backtest(retail_db: Path) -> workflows.BacktestResult:
    request = workflows.BacktestRequest(cutoff="2011-09-10", horizon_days=90)
    with (
        Store(retail_db, read_only=True) as store,
        pytest.warns(RetentionWarning, match=DEGENERATE),
    ):
        return workflows.backtest(store, request)


@pytest.mark.slow
def test_backtest_flags_the_degenerate_fits_and_lists_the_nbd_once(retail_backtest) -> None:
    payload = json.loads(json.dumps(retail_backtest.to_dict(), allow_nan=False))
    fits = payload["fits"]
    for name in ("bgnbd", "paretonbd", "mbgnbd"):
        assert fits[name]["degenerate"] and fits[name]["nbd"], name
        assert fits[name]["p_alive"] == "unavailable" and "collapse to 0" in fits[name]["reason"]
    # Pareto/NBD and MBG/NBD are the same NBD as BG/NBD here: one row, not three
    assert payload["twins"] == {"paretonbd": "bgnbd", "mbgnbd": "bgnbd"}
    assert set(payload["models"]) == {"bgnbd", "gbdt", "ensemble"}
    assert fits["paretonbd"]["same_as"] == "bgnbd"
    # and the ensemble stacked only one of them
    assert set(retail_backtest.extra["ensemble_weights"]) == {"bgnbd", "gbdt"}
    assert fits["ensemble"]["dropped_members"] == {"paretonbd": "bgnbd", "mbgnbd": "bgnbd"}
    assert payload["p_alive_source"] is None


@pytest.mark.slow
def test_long_inactive_customers_get_no_misleading_p_alive(retail_db: Path) -> None:
    """Customers without a purchase in the 270 days before the cutoff: median P(alive) below
    0.5, or P(alive) NULL with the flag set. On Online Retail every BTYD fit is degenerate, so
    it is NULL (the flag: ``fit_report``, the backtest's ``fits`` and ``p_alive_source``)."""
    from retention.models import get_model

    with Store(retail_db, read_only=True) as store:
        frame = make_frame(store, "2011-09-10", 90, with_label=False)
    last = frame.events[frame.events["event_type"] == "purchase"].groupby("user_id")["ts"].max()
    quiet = last.index[(frame.cutoff - last) >= pd.Timedelta(days=270)]
    assert len(quiet) > 100
    with pytest.warns(RetentionWarning, match=DEGENERATE):
        members = [(n, get_model(n).fit([frame])) for n in ("bgnbd", "paretonbd", "mbgnbd")]
    for _, m in members:
        details = m.predict_details(frame)
        report = m.fit_report(frame)
        median = details.loc[quiet, "p_alive"].median()
        assert median < 0.5 or (details.loc[quiet, "p_alive"].isna().all() and report["degenerate"])
    # the old answer was a number near 1 for all of them: that is what is now withheld
    raw = members[0][1]._details(frame, mask_degenerate=False)["p_alive"]
    assert raw.loc[quiet].median() > 0.99


@pytest.mark.slow
def test_clv_is_checked_against_realised_spend(retail_backtest) -> None:
    clv = retail_backtest.to_dict()["clv"]
    assert clv["n_users"] == retail_backtest.to_dict()["n_users"]
    assert len(clv["deciles"]) == 10 and len(clv["baseline"]["deciles"]) == 10
    predicted = [d["predicted"] for d in clv["deciles"]]
    realised = [d["realised"] for d in clv["deciles"]]
    assert predicted == sorted(predicted)  # deciles of the prediction
    assert realised[-1] > 5 * max(realised[0], 1.0)  # the top decile does spend more
    assert clv["mae"] > 0 and clv["baseline"]["mae"] > 0 and clv["realised_total"] > 0


@pytest.mark.slow
def test_report_shows_the_fits_and_the_clv_check(retail_backtest, tmp_path: Path) -> None:
    from retention.serving.report import render_backtest_report

    html = render_backtest_report(retail_backtest, tmp_path / "r.html").read_text()
    assert "BTYD fits" in html and "CLV against realised spend (90 days)" in html
    assert "expected spend over the 90 days after the cutoff, net of returns" in html
    assert "unavailable (every BTYD fit degenerate)" in html


@pytest.mark.slow
def test_score_leaves_p_alive_null_and_nets_returns(retail_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "retail.duckdb"
    shutil.copy(retail_db, db)
    with Store(db) as store:
        with pytest.warns(RetentionWarning, match=DEGENERATE):
            workflows.train(
                store, workflows.TrainRequest(out=tmp_path / "bg.retention", model="bgnbd")
            )
        request = workflows.ScoreRequest(model_path=tmp_path / "bg.retention")
        with pytest.warns(RetentionWarning, match=DEGENERATE + "|unavailable") as record:
            report = workflows.score(store, request)
        assert any("P(alive) is unavailable" in str(w.message) for w in record)
        rows = store.con.execute(
            "SELECT count(*), count(p_alive), count(clv), max(CASE WHEN user_id = '12346' "
            "THEN clv END) FROM scores WHERE model_version = ?",
            [report.model_version],
        ).fetchall()[0]
        peers = store.con.execute(
            "WITH f AS (SELECT user_id, min(ts) AS first, count(DISTINCT ts::DATE) AS days, "
            "sum(CASE WHEN event_type = 'return' THEN 1 ELSE 0 END) AS returns FROM events "
            "GROUP BY user_id) SELECT median(s.clv) FROM scores s JOIN f USING (user_id) "
            "WHERE f.days = 1 AND f.returns = 0 AND f.first < '2011-01-31' AND s.model_version = ?",
            [report.model_version],
        ).fetchall()[0][0]
    n, n_alive, n_clv, clv_12346 = rows
    assert n == len(report.scores) and n_alive == 0 and n_clv == n  # P(alive) NULL, CLV not
    # 12346 bought 77,184 once, 325 days ago, and returned it all: not the 78.3 it used to get,
    # and less than the one-time buyers of that month who kept what they bought
    assert clv_12346 < 78.3
    assert clv_12346 < peers


def test_bookkeeping_columns_are_never_features(retail_store) -> None:
    features = build_features(retail_store, "2011-09-10")
    assert "user_ingest_id" not in features.columns
    assert not [c for c in features.columns if "ingest" in c]
    assert "user_country_freq" in features.columns  # the real attribute stays


@pytest.mark.slow
def test_a_model_scores_a_store_without_users_and_warns_about_another_store(
    tmp_path: Path,
) -> None:
    """Trained where a users table exists; scored on a store without one (works, says which
    features are unknown); scored on another store's customers (warns that they differ)."""
    horizon, fast = 45, {"n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 20}
    with_users = synthetic_store(tmp_path / "a.duckdb", n_users=300)
    without = synthetic_store(tmp_path / "b.duckdb", n_users=300)
    other = synthetic_store(tmp_path / "c.duckdb", n_users=300, seed=7)
    with Store(with_users) as store:
        users = store.con.execute("SELECT DISTINCT user_id FROM events").fetchall()
        rows = pd.DataFrame(
            {
                "user_id": [u for (u,) in users],
                "country": np.where(np.arange(len(users)) % 3 == 0, "France", "Spain"),
            }
        )
        store.con.register("_users", rows)
        store.con.execute("INSERT INTO users (user_id, country) SELECT * FROM _users")
        store.con.unregister("_users")
        report = workflows.train(
            store,
            workflows.TrainRequest(
                out=tmp_path / "m.retention",
                model="gbdt",
                horizon_days=horizon,
                model_params=fast,
                min_data=MinData.off(),
            ),
        )
    names = report.metadata.get("features", None)
    if names is not None:
        assert "user_ingest_id" not in names
    with Store(without) as store, pytest.warns(RetentionWarning, match="user_country_freq"):
        scored = workflows.score(store, workflows.ScoreRequest(model_path=tmp_path / "m.retention"))
    assert scored.scores["p_retained"].notna().all() and len(scored.scores) > 100
    # another store's customers (shifted amounts and a new event type): a warning says so
    with Store(other) as store:
        store.con.execute("UPDATE events SET amount = amount * 50")
        store.con.execute(
            "INSERT INTO events (event_id, user_id, ts, event_type) SELECT event_id || 'v', "
            "user_id, ts, 'view' FROM events"
        )
        with pytest.warns(RetentionWarning) as record:
            workflows.score(store, workflows.ScoreRequest(model_path=tmp_path / "m.retention"))
    messages = [str(w.message) for w in record]
    assert any("does not resemble the data the model was trained on" in m for m in messages)
    assert any("event types never seen in training: view" in m for m in messages)
