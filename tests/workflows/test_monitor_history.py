"""Monitoring a young store: the training cutoffs lie a few months after the store's first event,
so every longer look-back was cut short there. By default the latest window's features are then
computed on the same length of history (``history_matched``): a steady process raises no flag
(on every event it would: the histories grew), drift injected after a date is still detected,
and the training window's features are exactly what they were.

Simulated stores of a steady purchase process whose log starts long after its customers did
(as a shop's export does), a small gbdt, a few monitor runs each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sim_store import insert_purchases

from retention import workflows
from retention.data import Store
from retention.features import MinData, make_frame

ORIGIN = pd.Timestamp("2015-01-01")
DAYS = 1700
#: the log (the store) starts here: customers arrived from ORIGIN on, their earlier events are lost
LOG_FROM = 1200
HORIZON = 45
#: training cutoffs 90, 105 and 120 days after the store's first event
TRAIN_AT = ORIGIN + pd.Timedelta(days=LOG_FROM + 180)
#: after this day the drifted store's customers spend 4x and buy 3x as often
DRIFT_FROM = LOG_FROM + 440
SMALL = MinData(customers=20, retained=5)
FAST = {"n_estimators": 150, "learning_rate": 0.1, "early_stopping_rounds": 20}
#: two simulated stores, two small gbdt fits, seven monitor runs: ~25 s on 2 cores
pytestmark = pytest.mark.slow


def simulate(n_users: int = 3000, seed: int = 3, drift: bool = False) -> pd.DataFrame:
    """Customers arrive uniformly from ORIGIN, buy at their own Poisson rate for an exponential
    lifetime, with their own order value; only the events from LOG_FROM on are kept. With
    ``drift``, orders after DRIFT_FROM are worth 4x and come 3x as often."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        t = rng.uniform(0, DAYS)
        end = min(t + rng.exponential(400), DAYS)
        rate = rng.gamma(2.0, 1 / 40)
        value = rng.lognormal(3.0, 0.4)
        while t < end:
            drifted = drift and t >= DRIFT_FROM
            if t >= LOG_FROM:
                amount = value * rng.lognormal(0, 0.2) * (4.0 if drifted else 1.0)
                rows.append((f"u{u:04d}", ORIGIN + pd.Timedelta(days=float(t)), round(amount, 2)))
            t += rng.exponential(1 / (rate * (3.0 if drifted else 1.0)))
    ev = pd.DataFrame(rows, columns=["user_id", "ts", "amount"])
    ev["ts"] = ev["ts"].astype("datetime64[ns]").dt.floor("s")
    ev["event_id"] = "e" + np.arange(len(ev)).astype(str)
    return ev


def _store(path: Path, drift: bool = False) -> tuple[Path, str]:
    events = simulate(drift=drift)
    with Store(path) as store:
        insert_purchases(store, events)
        rep = workflows.train(
            store,
            workflows.TrainRequest(
                out=path.parent / "gbdt.retention",
                model="gbdt",
                cutoff=TRAIN_AT,
                horizon_days=HORIZON,
                model_params=FAST,
                min_data=SMALL,
            ),
        )
    return path, rep.model_id


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return _store(tmp_path_factory.mktemp("young") / "sim.duckdb")


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return _store(tmp_path_factory.mktemp("young-drift") / "sim.duckdb", drift=True)


def test_a_steady_young_store_raises_no_flag_on_matched_histories(
    steady: tuple[Path, str],
) -> None:
    path, model_id = steady
    with Store(path) as store:
        first = store.event_range(None)[0].normalize()
        rep = workflows.monitor(store)
        assert rep.model_id == model_id and rep.history_matched
        assert rep.flags == [], rep.messages()
        assert rep.features["psi"].max() < 0.2 and rep.score["psi"] < 0.1
        # each latest cutoff reads as many days of events as its training cutoff had
        days = [int((r - first).days) for r in rep.reference_cutoffs]
        assert rep.history_days == days and max(days) < 365
        assert rep.history_starts == [
            c - pd.Timedelta(days=d) for c, d in zip(rep.current_cutoffs, days, strict=True)
        ]
        assert any("history_matched" in n and "--full-history" in n for n in rep.notes)
        # on every event the same store flags: the store's history grew, the customers did not
        full = workflows.monitor(store, workflows.MonitorRequest(full_history=True))
        assert not full.history_matched and full.history_starts == []
        assert "feature_drift" in full.flags
        assert {"frequency_orders", "tenure_active_days"} & set(full.drifted_features)
        assert full.features["psi"].max() > 5 * rep.features["psi"].max()
        # recorded, and said so in the JSON (every earlier key kept)
        payload = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
        assert payload["history_matched"] is True
        assert payload["history_start"] == f"{min(rep.history_starts):%Y-%m-%d}"
        assert payload["history_days"] == days and len(payload["history_starts"]) == 3
        assert {"reference", "current", "score", "features", "notes", "performance"} <= set(payload)
        runs = store.read_rows("monitor_runs").set_index("run_id")
        assert bool(runs.loc[rep.run_id, "history_matched"])
        assert [pd.Timestamp(s) for s in runs.loc[rep.run_id, "history_starts"]] == (
            rep.history_starts
        )
        assert not bool(runs.loc[full.run_id, "history_matched"])
        # retraining on drift: nothing to retrain by default; on every event, it would retrain
        again = workflows.retrain(store, workflows.RetrainRequest(mode="if_drift", min_data=SMALL))
        assert not again.triggered and again.trained is None
        assert again.monitor is not None and again.monitor.history_matched
        part = workflows.dashboard_monitor(store).to_dict()["data"]["run"]
        assert part["history_matched"] is True


def test_the_training_window_is_unchanged_and_the_latest_window_reads_the_bound(
    steady: tuple[Path, str],
) -> None:
    path, _ = steady
    with Store(path, read_only=True) as store:
        rep = workflows.monitor(store, workflows.MonitorRequest(write=False))
        full = workflows.monitor(store, workflows.MonitorRequest(write=False, full_history=True))
        a, b = rep.features.set_index("feature"), full.features.set_index("feature")
        # the training window's features: exactly the same in both modes, and as make_frame
        assert (
            rep.n_reference == full.n_reference and rep.reference_cutoffs == full.reference_cutoffs
        )
        pd.testing.assert_series_equal(a["reference_mean"], b.loc[a.index, "reference_mean"])
        ref = pd.concat(
            [
                make_frame(store, c, HORIZON, with_label=False).features
                for c in rep.reference_cutoffs
            ]
        )
        assert a.loc["frequency_orders", "reference_mean"] == pytest.approx(
            ref["frequency_orders"].mean(), rel=1e-12
        )
        # the latest window: the frames of make_frame(events_from=) at each cutoff
        cur = pd.concat(
            [
                make_frame(store, c, HORIZON, with_label=False, events_from=s).features
                for c, s in zip(rep.current_cutoffs, rep.history_starts, strict=True)
            ]
        )
        assert rep.n_current == len(cur) < full.n_current
        assert a.loc["frequency_orders", "current_mean"] == pytest.approx(
            cur["frequency_orders"].mean(), rel=1e-12
        )
        # decay and realised performance do not depend on the mode
        assert rep.baseline_roc_auc == full.baseline_roc_auc
        pd.testing.assert_frame_equal(rep.performance, full.performance)
        # one latest cutoff (a narrow window) pairs with the newest training cutoff
        one = workflows.monitor(store, workflows.MonitorRequest(window_days=1, write=False))
        newest = max(rep.reference_cutoffs)
        assert one.history_days == [int((newest - store.event_range(None)[0].normalize()).days)]


def test_injected_drift_is_detected_on_matched_histories(drifted: tuple[Path, str]) -> None:
    path, _ = drifted
    with Store(path) as store:
        rep = workflows.monitor(store, workflows.MonitorRequest(write=False))
        assert rep.history_matched and "feature_drift" in rep.flags
        drifted_features = set(rep.drifted_features)
        assert {"w30d_spend", "monetary_mean"} <= drifted_features  # 4x the order value
        assert any(f.startswith(("frequency_", "w30d_purchases")) for f in drifted_features)
        assert not any(f.startswith("tenure_") for f in drifted_features)


def test_full_history_is_checked() -> None:
    from retention.exceptions import ConfigError

    with pytest.raises(ConfigError, match="full_history must be True or False"):
        workflows.MonitorRequest(full_history="no")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="full_history must be True or False"):
        workflows.RetrainRequest(full_history=1)  # type: ignore[arg-type]
