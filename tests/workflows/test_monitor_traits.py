"""Monitoring a store with a ``users`` table: features that age with the calendar are measured
but raise no flag unless asked; the country, which the features encode as a share recomputed at
each cutoff, is compared on the countries themselves, so a steady mix raises nothing and a real
change of the mix is flagged; the features at a cutoff are what they were.

Simulated stores of 700 customers (a steady purchase process; 90% of them in one country), a
BG/NBD model (fitted in a second, no label needed), three monitor runs each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sim_store import insert_purchases

from retention import workflows
from retention.data import Store
from retention.experiments import MonitorThresholds, psi
from retention.features import MinData, make_frame

START = pd.Timestamp("2015-01-01")
DAYS = 1200
HORIZON = 45
TRAIN_AT = START + pd.Timedelta(days=700)
#: customers who arrive after this day live in Germany 90% of the time (the mix changes)
MIX_FROM = 800
SMALL = MinData(customers=20, retained=5)


def simulate(n_users: int = 700, seed: int = 0, mix: bool = False) -> tuple[pd.DataFrame, ...]:
    """Events and users: customers arrive uniformly, buy at their own Poisson rate for an
    exponential lifetime; 90% live in the United Kingdom, the rest in three other countries
    (with ``mix``, those arriving after :data:`MIX_FROM` live in Germany 90% of the time)."""
    rng = np.random.default_rng(seed)
    rows, users = [], []
    for u in range(n_users):
        t0 = t = rng.uniform(0, DAYS)
        end = min(t + rng.exponential(1000), DAYS)
        rate = rng.gamma(2.0, 1 / 40)
        if mix and t0 >= MIX_FROM:
            country = "Germany" if rng.uniform() < 0.9 else "United Kingdom"
        else:
            country = "United Kingdom" if rng.uniform() < 0.9 else rng.choice(["DE", "FR", "ES"])
        users.append((f"u{u:04d}", START + pd.Timedelta(days=float(t0)), str(country)))
        while t < end:
            rows.append((f"u{u:04d}", START + pd.Timedelta(days=float(t)), 20.0))
            t += rng.exponential(1 / rate)
    ev = pd.DataFrame(rows, columns=["user_id", "ts", "amount"])
    ev["ts"] = ev["ts"].astype("datetime64[ns]").dt.floor("s")
    ev["event_id"] = "e" + np.arange(len(ev)).astype(str)
    us = pd.DataFrame(users, columns=["user_id", "signup_ts", "country"])
    us["signup_ts"] = us["signup_ts"].astype("datetime64[ns]").dt.floor("s")
    return ev, us


def _store(path: Path, mix: bool = False) -> tuple[Path, str]:
    events, users = simulate(mix=mix)
    with Store(path) as store:
        insert_purchases(store, events)
        store.con.register("_us", users)
        store.con.execute(
            "INSERT INTO users (user_id, signup_ts, country) SELECT user_id, signup_ts, country "
            "FROM _us"
        )
        store.con.unregister("_us")
        rep = workflows.train(
            store,
            workflows.TrainRequest(
                out=path.parent / "bgnbd.retention",
                model="bgnbd",
                cutoff=TRAIN_AT,
                horizon_days=HORIZON,
                min_data=SMALL,
            ),
        )
    return path, rep.model_id


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return _store(tmp_path_factory.mktemp("steady") / "sim.duckdb")


def _monitor(store: Store, **kw: object) -> workflows.MonitorReport:
    return workflows.monitor(store, workflows.MonitorRequest(**kw))  # type: ignore[arg-type]


def test_ageing_features_are_measured_and_raise_no_flag_unless_asked(
    steady: tuple[Path, str],
) -> None:
    path, _ = steady
    with Store(path) as store:
        # every feature above a zero threshold: only the ageing ones are kept out of the flag
        zero = MonitorThresholds(feature_psi=0.0, score_psi=10.0, decay=10.0)
        rep = _monitor(store, thresholds=zero)
        f = rep.features.set_index("feature")
        ageing = {"tenure_days", "tenure_first_event_days", "user_days_since_signup"}
        assert ageing <= set(rep.ageing_features) == set(f.index[f["ages_with_calendar"]])
        assert (f.loc[list(ageing), "psi"] > 0).all()  # measured
        assert not set(rep.drifted_features) & ageing
        assert {"recency_days", "frequency_orders"} <= set(rep.drifted_features)
        assert any("age with the calendar" in n for n in rep.notes)
        assert "feature_drift" in rep.flags
        assert rep.messages()[0].startswith(
            f"{len(rep.drifted_features)} of {len(f) - len(rep.ageing_features)} features"
        )
        # with include_ageing they flag like any other
        rep2 = _monitor(store, thresholds=zero, include_ageing=True)
        assert ageing <= set(rep2.drifted_features)
        assert not any("age with the calendar" in n for n in rep2.notes)
        # recorded, marked
        rows = store.read_rows("monitor_features", where={"run_id": rep.run_id})
        marked = rows.set_index("feature")
        assert bool(marked.loc["tenure_days", "ages_with_calendar"])
        assert not bool(marked.loc["tenure_days", "drifted"])
        assert not bool(marked.loc["recency_days", "ages_with_calendar"])
        runs = store.read_rows("monitor_runs").set_index("run_id")
        assert not runs.loc[rep.run_id, "include_ageing"]
        assert runs.loc[rep2.run_id, "include_ageing"]
        payload = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
        assert payload["include_ageing"] is False and "tenure_days" in payload["ageing_features"]
        part = workflows.dashboard_monitor(store).to_dict()["data"]["features"]
        assert {"ages_with_calendar", "binning"} <= set(part[0])


def test_a_steady_country_mix_raises_nothing(steady: tuple[Path, str]) -> None:
    path, _ = steady
    with Store(path) as store:
        rep = _monitor(store, write=False)
        row = rep.features.set_index("feature").loc["user_country_freq"]
        assert row["binning"] == "categories of users.country"
        assert row["psi"] < 0.05 and not row["drifted"]
        # the features themselves: the same share map recomputed at each cutoff moves every
        # customer's value a little, which the decile binning read as a large shift
        ref = pd.concat(
            [
                make_frame(store, c, HORIZON, with_label=False).features
                for c in rep.reference_cutoffs
            ]
        )
        cur = pd.concat(
            [make_frame(store, c, HORIZON, with_label=False).features for c in rep.current_cutoffs]
        )
        assert psi(ref["user_country_freq"], cur["user_country_freq"]) > 1.0
        # low-cardinality features get a bin per value, the others deciles
        binning = rep.features.set_index("feature")["binning"]
        assert binning["recency_days"] == "deciles"
        assert binning["w7d_purchases"] == "distinct values"


def test_a_changed_country_mix_is_flagged(tmp_path: Path) -> None:
    path, _ = _store(tmp_path / "mix.duckdb", mix=True)
    with Store(path) as store:
        rep = _monitor(store, write=False)
        row = rep.features.set_index("feature").loc["user_country_freq"]
        assert row["binning"] == "categories of users.country"
        assert row["psi"] > 0.2 and row["drifted"], row
        assert "user_country_freq" in rep.drifted_features and "feature_drift" in rep.flags
        # KS compares the shares frozen at the training window: Germany's was tiny there
        assert row["ks"] > 0.1 and row["ks_p_value"] < 1e-6


def test_the_features_at_a_cutoff_are_unchanged(steady: tuple[Path, str]) -> None:
    """The monitor reads categories beside the features; it does not change them: the
    country share is the population's share at that cutoff, as before."""
    path, _ = steady
    with Store(path, read_only=True) as store:
        frame = make_frame(store, TRAIN_AT, HORIZON, with_label=False)
        users = store.table_df("users").set_index("user_id")["country"]
        country = users.reindex(frame.features.index.astype(str))
        share = country.map(country.value_counts() / len(country))
        assert np.allclose(frame.features["user_country_freq"], share.to_numpy(dtype=float))
        days = (
            TRAIN_AT - store.table_df("users").set_index("user_id")["signup_ts"]
        ) / pd.Timedelta(days=1)
        expected = days.reindex(frame.features.index.astype(str)).where(lambda d: d > 0)
        assert np.allclose(
            frame.features["user_days_since_signup"], expected.to_numpy(dtype=float), equal_nan=True
        )


def test_include_ageing_is_checked() -> None:
    from retention.exceptions import ConfigError

    with pytest.raises(ConfigError, match="include_ageing must be True or False"):
        workflows.MonitorRequest(include_ageing="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="include_ageing must be True or False"):
        workflows.RetrainRequest(include_ageing=1)  # type: ignore[arg-type]
