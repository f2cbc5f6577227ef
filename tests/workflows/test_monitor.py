"""Monitoring and retraining on simulated stores: drift injected after a date is detected and
triggers retraining; the same process without it raises no flag and retrains nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention import workflows
from retention.data import Store
from retention.exceptions import ConfigError
from retention.features import MinData

START = pd.Timestamp("2015-01-01")
DAYS = 2000
HORIZON = 45
#: the model is trained for this cutoff, and scores at it and a month later (both mature)
TRAIN_AT = START + pd.Timedelta(days=1900)
SCORE_AT = (TRAIN_AT, TRAIN_AT + pd.Timedelta(days=30))
#: after this date the drifted store's customers spend 4x and buy 3x as often
DRIFT_FROM = START + pd.Timedelta(days=1935)
FAST = {"n_estimators": 150, "learning_rate": 0.1, "early_stopping_rounds": 20}
SMALL = MinData(customers=20, retained=5)
#: three simulated stores, five trainings, several monitor runs: about two minutes on 2 cores
pytestmark = pytest.mark.slow


def simulate(
    n_users: int = 900, seed: int = 0, drift: bool = False, concept: bool = False
) -> pd.DataFrame:
    """A steady purchase process: customers arrive uniformly over the whole span, buy at their
    own Poisson rate for an exponential lifetime, with their own order value.

    With ``drift``, orders after :data:`DRIFT_FROM` are worth 4x and come 3x as often (the
    features shift). With ``concept``, from :data:`TRAIN_AT` on whether a customer buys no
    longer depends on their history: a coin makes a third of the customers (active or lapsed)
    buy at a new random rate, the rest silent (what the model learned stops holding)."""
    rng = np.random.default_rng(seed)
    shift = (DRIFT_FROM - START).days
    turn = (TRAIN_AT - START).days
    rows = []
    for u in range(n_users):
        t = rng.uniform(0, DAYS)
        end = t + rng.exponential(1500)
        rate = rng.gamma(2.0, 1 / 50)
        value = rng.lognormal(3.0, 0.4)
        before = concept and t < turn
        stop = min(end, DAYS, turn) if before else min(end, DAYS)
        while t < stop:
            drifted = drift and t >= shift
            amount = value * rng.lognormal(0, 0.2) * (4.0 if drifted else 1.0)
            rows.append((f"u{u:04d}", START + pd.Timedelta(days=float(t)), round(amount, 2)))
            t += rng.exponential(1 / (rate * (3.0 if drifted else 1.0)))
        if before and rng.uniform() < 1 / 3:  # alive or lapsed before, it does not matter
            t, rate = turn + rng.exponential(10), rng.gamma(2.0, 1 / 50)
            while t < DAYS:
                rows.append((f"u{u:04d}", START + pd.Timedelta(days=float(t)), round(value, 2)))
                t += rng.exponential(1 / rate)
    ev = pd.DataFrame(rows, columns=["user_id", "ts", "amount"])
    ev["ts"] = ev["ts"].astype("datetime64[ns]").dt.floor("s")
    ev["event_id"] = "e" + np.arange(len(ev)).astype(str)
    ev["order_id"] = "o" + np.arange(len(ev)).astype(str)
    return ev


def _store(path: Path, events: pd.DataFrame) -> Path:
    with Store(path) as store:
        store.con.register("_sim", events)
        store.con.execute(
            "INSERT INTO events (event_id, user_id, ts, event_type, order_id, quantity, amount) "
            "SELECT event_id, user_id, ts, 'purchase', order_id, 1.0, "
            "CAST(amount AS DECIMAL(18,2)) FROM _sim"
        )
        store.con.unregister("_sim")
    return path


def _trained_and_scored(path: Path) -> str:
    with Store(path) as store:
        rep = workflows.train(
            store,
            workflows.TrainRequest(
                out=path.parent / "models" / "gbdt.retention",
                model="gbdt",
                cutoff=TRAIN_AT,
                horizon_days=HORIZON,
                model_params=FAST,
                min_data=SMALL,
            ),
        )
        for at in SCORE_AT:
            workflows.score(
                store, workflows.ScoreRequest(model_id=rep.model_id, cutoff=at, reasons=False)
            )
    return rep.model_id


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Three stores of the same process (steady, drifted after DRIFT_FROM, its concept changed
    at TRAIN_AT), each with a gbdt trained
    at TRAIN_AT and its scores at TRAIN_AT and a month later: ``{name: (path, model_id)}``."""
    out = {}
    kinds = {"steady": {}, "drifted": {"drift": True}, "concept": {"concept": True}}
    for name, kind in kinds.items():
        folder = tmp_path_factory.mktemp(name)
        path = _store(folder / "sim.duckdb", simulate(**kind))
        out[name] = (path, _trained_and_scored(path))
    return out


def _copy(src: Path, tmp_path: Path) -> Path:
    """A copy of the store (its registry still points at the fixture's artifacts)."""
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    return dst


def test_without_drift_no_flag_is_raised(stores, tmp_path: Path) -> None:
    path, model_id = stores["steady"]
    with Store(_copy(path, tmp_path)) as store:
        rep = workflows.monitor(store)
        assert rep.model_id == model_id  # the newest model (no production one yet)
        assert rep.flags == [], rep.messages()
        assert not rep.drift and rep.drifted_features == []
        assert rep.features["psi"].max() < 0.2
        assert rep.score["psi"] < 0.1
        # both scoring runs matured and were measured against the model's reference
        perf = rep.performance
        assert list(perf["cutoff"]) == list(SCORE_AT) and perf["monitored"].all()
        assert (perf["roc_auc"] > 0.6).all() and perf["n_users"].gt(100).all()
        assert rep.decay == pytest.approx(rep.baseline_roc_auc - perf["roc_auc"].iloc[-1])
        assert rep.decay < 0.05
        # the windows: training cutoffs from the metadata, the latest as many, ending newest
        assert len(rep.current_cutoffs) == len(rep.reference_cutoffs) == 3
        assert rep.current_cutoffs[-1] == workflows.last_event_date(store)
        payload = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
        assert payload["drift"] is False and payload["performance"]["decay"] == pytest.approx(
            rep.decay
        )
        # recorded: one run, its features and its performance rows
        runs = store.read_rows("monitor_runs")
        assert list(runs["run_id"]) == [rep.run_id] and not runs["drift"].iloc[0]
        assert store.count_rows("monitor_features", where={"run_id": rep.run_id}) == len(
            rep.features
        )
        assert store.count_rows("monitor_performance", where={"run_id": rep.run_id}) == 2
        # nothing to retrain
        n_models = store.count_rows("models")
        again = workflows.retrain(store, workflows.RetrainRequest(mode="if_drift", min_data=SMALL))
        assert not again.triggered and again.trained is None and again.reasons == []
        assert store.count_rows("models") == n_models
        part = workflows.dashboard_monitor(store).to_dict()
        assert part["data"]["run"]["run_id"] == again.monitor.run_id
        assert part["data"]["run"]["flags"] == [] and len(part["data"]["history"]) == 2


def test_injected_drift_is_detected_and_triggers_retraining(stores, tmp_path: Path) -> None:
    path, model_id = stores["drifted"]
    with Store(_copy(path, tmp_path)) as store:
        rep = workflows.monitor(store)
        assert "feature_drift" in rep.flags
        drifted = set(rep.drifted_features)
        assert {"w30d_spend", "w90d_spend"} <= drifted  # spend in the recent windows
        assert any(f.startswith("frequency_") or f.startswith("w30d_") for f in drifted)
        assert not any(f.startswith("tenure_") for f in drifted)  # ageing is not the drift
        # the score moves less than the spend (P(retained) leans on recency and frequency)
        assert rep.score["psi"] > 0.02
        assert any("features drifted" in m for m in rep.messages())
        # the model's own reference ROC-AUC: its validation cutoff's (no backtest recorded)
        assert rep.baseline_source is not None and rep.baseline_source.startswith("validation")
        # retraining: a new model for the newest cutoff, registered as a candidate only
        before = set(store.read_rows("models")["model_id"])
        out = workflows.retrain(store, workflows.RetrainRequest(mode="if_drift", min_data=SMALL))
        assert out.triggered and out.trained is not None
        assert any("features drifted" in r for r in out.reasons)
        new = out.trained.model_id
        assert new not in before and out.stage == "candidate" == store.model_stage(new)
        assert store.model_stage(model_id) == "candidate"  # nothing was promoted
        meta = out.trained.metadata
        assert pd.Timestamp(meta["cutoff"]) == workflows.last_event_date(store)
        assert meta["registry_name"] == "gbdt" and meta["horizon_days"] == HORIZON
        assert meta["model_params"] == FAST  # the monitored model's configuration
        # beside the monitored model's artifact, under a name of its cutoff
        record = store.model_record(model_id)
        assert record is not None and out.trained.path.parent == record.path.parent
        assert out.trained.path.name.startswith(f"gbdt-{meta['cutoff'][:10]}")
        payload = json.loads(json.dumps(out.to_dict(), allow_nan=False))
        assert payload["new_model"]["stage"] == "candidate"
        # two monitor runs recorded, both drifted; the history reads them oldest first
        hist = workflows.monitor_history(store)
        assert len(hist) == 2 and hist["drift"].all()
        # the new model, trained on the drifted data, resembles it: monitoring it is quieter
        fresh = workflows.monitor(store, workflows.MonitorRequest(model_id=new, write=False))
        assert fresh.features["psi"].max() < rep.features["psi"].max()


def test_a_changed_concept_is_caught_by_the_decay_of_realised_performance(
    stores, tmp_path: Path
) -> None:
    path, _ = stores["concept"]
    with Store(_copy(path, tmp_path)) as store:
        rep = workflows.monitor(store)
        assert "decay" in rep.flags, rep.messages()
        perf = rep.performance.set_index("cutoff")
        # the scores at TRAIN_AT met customers who no longer behaved as before
        assert perf.loc[TRAIN_AT, "roc_auc"] < 0.65 < rep.baseline_roc_auc
        assert rep.realised is not None and rep.decay is not None and rep.decay > 0.1
        assert pd.Timestamp(rep.realised["cutoff"]) == SCORE_AT[-1]
        assert any("performance decayed" in m for m in rep.messages())
        stored = store.read_rows("monitor_runs", where={"run_id": rep.run_id})
        assert "decay" in list(stored["flags"].iloc[0])
        assert stored["decay"].iloc[0] == pytest.approx(rep.decay)


def test_a_scheduled_retrain_runs_without_a_flag(stores, tmp_path: Path) -> None:
    path, model_id = stores["steady"]
    with Store(_copy(path, tmp_path)) as store:
        out = workflows.retrain(
            store,
            workflows.RetrainRequest(
                mode="always", model_id=model_id, out=tmp_path / "next.retention", min_data=SMALL
            ),
        )
        assert out.triggered and out.reasons == ["scheduled (--always)"]
        assert out.monitor is not None and not out.monitor.drift
        assert out.trained is not None and out.trained.path == tmp_path / "next.retention"
        assert store.model_stage(out.trained.model_id) == "candidate"


def test_requests_and_errors(stores, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="window_days must be a positive"):
        workflows.MonitorRequest(window_days=0)
    with pytest.raises(ConfigError, match="mode must be"):
        workflows.RetrainRequest(mode="sometimes")  # type: ignore[arg-type]
    with (
        Store(tmp_path / "empty.duckdb") as store,
        pytest.raises(ConfigError, match=r"No model is registered .* train one first"),
    ):
        workflows.monitor(store)
    path, _ = stores["steady"]
    with Store(_copy(path, tmp_path)) as store:
        with pytest.raises(ConfigError, match="not after the model's training window"):
            workflows.monitor(
                store, workflows.MonitorRequest(cutoff=TRAIN_AT - pd.Timedelta(days=80))
            )
        with pytest.raises(ConfigError, match="No model 'nope'"):
            workflows.monitor(store, workflows.MonitorRequest(model_id="nope"))
        # a narrower window: one cutoff; thresholds from the environment
        rep = workflows.monitor(
            store,
            workflows.MonitorRequest(
                window_days=1, thresholds=workflows.MonitorThresholds(feature_psi=0.0), write=False
            ),
        )
        assert len(rep.current_cutoffs) == 1 and "feature_drift" in rep.flags
        assert store.count_rows("monitor_runs") == 0
        # ignored features are measured, shown, and raise no flag (patterns, or the environment)
        quiet = workflows.MonitorRequest(
            thresholds=workflows.MonitorThresholds(feature_psi=0.0, score_psi=10.0),
            ignore=("w*", "tenure_*", "recency_*", "gap_*", "frequency_*", "monetary_*", "*_*"),
            write=False,
        )
        rep = workflows.monitor(store, quiet)
        assert rep.flags == [] and rep.features["ignored"].all() and len(rep.features) > 10
        assert any("left out of the flags" in n for n in rep.notes)
        monkeypatch.setenv("RETENTION_MONITOR_IGNORE", "tenure_*, recency_*")
        rep = workflows.monitor(
            store,
            workflows.MonitorRequest(
                thresholds=workflows.MonitorThresholds(feature_psi=0.0), write=False
            ),
        )
        ignored = set(rep.features.loc[rep.features["ignored"], "feature"])
        assert ignored and all(f.startswith(("tenure_", "recency_")) for f in ignored)
        assert not ignored & set(rep.drifted_features)
    with pytest.raises(ConfigError, match="ignore must be feature names or glob patterns"):
        workflows.MonitorRequest(ignore=("",))
