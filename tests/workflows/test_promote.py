"""Uplift, loyalty and plan workflows on small stores: requests checked, store round trips,
``to_dict()`` through ``json.dumps(allow_nan=False)``, replays that add nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
sys.path.insert(0, str(Path(__file__).parents[1] / "strategies"))
from retention_synth import synthetic_store
from uplift_synth import campaign_frame

from retention import workflows
from retention.data import Mapping, Store, ingest_frame
from retention.exceptions import (
    ConfigError,
    DataError,
    ModelError,
    RetentionWarning,
    StoreError,
)
from retention.strategies import FeatureEncoder, Offer, SLearner, UpliftPolicyModel
from retention.workflows._promote import _covariates

FAST = ("s_learner", "t_learner")


@pytest.fixture(scope="module")
def campaign_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("uplift") / "campaign.csv"
    campaign_frame(9000, seed=3).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_evaluate_a_csv_and_the_json_contract(campaign_csv) -> None:
    req = workflows.UpliftEvaluateRequest(
        path=campaign_csv,
        treatment="segment",
        control="none",
        outcome="outcome",
        features="x0,x1,x2,x3,grade",
        models="s_learner,transformed_outcome",
        costs={"sms": 0.01},
        n_boot=50,
    )
    rep = workflows.uplift_evaluate(req)
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert set(d["treatments"]) == {"mail", "sms"}
    for t in d["treatments"].values():
        assert {"estimate", "low", "high", "p_value"} <= set(t["difference"])
        for m in ("s_learner", "transformed_outcome"):
            assert {"qini", "uplift_at_30", "auuc"} <= set(t["models"][m])
    assert d["chosen_model"] in ("s_learner", "transformed_outcome")
    pol = d["policy"]["policies"]
    assert {"random", "nobody", "everyone_best_single"} <= set(pol)
    assert pol["nobody"]["ipw"]["incremental"] == 0
    assert d["policy"]["costs"] == {"mail": 0.0, "sms": 0.01}
    # the synthetic treatment helps half the units: the model's policy beats random targeting
    chosen = pol[f"model:{d['chosen_model']}"]["dr"]
    assert chosen["incremental"] > pol["random"]["dr"]["incremental"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"treatment": "nope"}, DataError, "no column 'nope'"),
        ({"control": "zzz"}, DataError, "does not occur"),
        ({"share": 1.5}, ConfigError, "share"),
        ({"models": "magic"}, ConfigError, "Unknown uplift model"),
        ({"propensity": "guess"}, ConfigError, "propensity"),
        ({"costs": {"mail": -1}}, ConfigError, "cost of 'mail'"),
    ],
)
def test_evaluate_errors(campaign_csv, kwargs, error, message) -> None:
    base = {"path": campaign_csv, "treatment": "segment", "control": "none", "outcome": "outcome"}
    with pytest.raises(error, match=message):
        workflows.uplift_evaluate(workflows.UpliftEvaluateRequest(**{**base, **kwargs}))


def test_evaluate_unreadable_file(tmp_path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_bytes(b"")
    req = workflows.UpliftEvaluateRequest(path=bad, treatment="t", control="0", outcome="y")
    with pytest.raises(Exception, match="empty"):
        workflows.uplift_evaluate(req)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """A store with purchases, scores, reasons and a randomised campaign on its customers."""
    folder = tmp_path_factory.mktemp("shop")
    db = synthetic_store(folder / "shop.duckdb", n_users=300, seed=2)
    with Store(db) as store:
        users = sorted(str(u) for u in store.table_df("events")["user_id"].unique())
        cutoff = store.event_range("purchase")[1].normalize()
        rng = np.random.default_rng(0)
        p = rng.uniform(0.05, 0.95, len(users))
        scores = pd.DataFrame(
            {
                "user_id": users,
                "p_retained": p,
                "p_alive": p,
                "expected_purchases": 2 * p,
                "clv": 100 * p,
                "risk_band": np.where(p < 0.3, "high", np.where(p < 0.6, "medium", "low")),
                "cutoff": pd.Series([cutoff] * len(users), dtype="datetime64[ns]"),
                "horizon_days": 90,
                "model_version": "m1",
                "scored_at": pd.Series(
                    [pd.Timestamp("2024-01-01")] * len(users), dtype="datetime64[ns]"
                ),
            }
        )
        reasons = pd.DataFrame(
            {
                "user_id": users,
                "direction": "churn",
                "rank": 1,
                "feature": "recency_days",
                "family": "recency",
                "contribution": -0.5,
                "value": 100.0,
                "typical": 30.0,
                "text": "no purchase for a long time",
            }
        )
        store.write_scores(scores, reasons)
        camp = campaign_frame(len(users), seed=5)
        camp["user_id"] = users
        # a strong effect, so that 300 units are enough: either treatment helps when x0 > 0
        treated = (camp["segment"] != "none").to_numpy()
        lift = 0.5 * treated * (camp["x0"].to_numpy() > 0)
        camp["outcome"] = (rng.random(len(users)) < 0.2 + lift).astype(float)
        ingest_frame(
            store,
            camp[["user_id", "x0", "x1", "grade"]],
            Mapping(columns={"user_id": "user_id"}),
            table="users",
            source_name="users",
        )
        store.replace_rows(
            "assignments",
            pd.DataFrame({"experiment_id": "spring", "user_id": users, "variant": camp["segment"]}),
            {},
        )
        store.replace_rows(
            "outcomes",
            pd.DataFrame(
                {
                    "experiment_id": "spring",
                    "user_id": users,
                    "metric": "bought",
                    "value": camp["outcome"],
                }
            ),
            {},
        )
    return db


@pytest.mark.slow
def test_uplift_train_score_round_trip(shop, tmp_path) -> None:
    db = tmp_path / "shop.duckdb"
    db.write_bytes(shop.read_bytes())
    with Store(db) as store:
        req = workflows.UpliftTrainRequest(
            experiment_id="spring", outcome="bought", control="none", models=FAST, n_boot=20
        )
        with pytest.warns(RetentionWarning, match="no dates"):
            rep = workflows.uplift_train(store, req)
        json.dumps(rep.to_dict(), allow_nan=False)
        with pytest.warns(RetentionWarning, match="no dates"):
            again = workflows.uplift_train(store, req)
        assert again.model_id == rep.model_id  # the same data, the same model id
        rec = workflows.read_uplift_model(store)
        assert rec.treatments == ("mail", "sms") and rec.learner_name == rep.learner
        assert any(f.startswith("user_") for f in rec.features)
        # the stored model is the rule the evaluation chose (three arms: by cross-fitting)
        assert rep.evaluation.rule is not None and rep.model is not None
        assert rec.rule.label == rep.evaluation.rule.label == rep.learner
        assert rec.rule == rep.model.rule_ and np.isfinite(rec.rule.value)
        d = rep.to_dict()
        assert d["stored_rule"]["rule"] == rep.learner
        assert "cross-fitting" in d["stored_rule"]["chosen_by"]
        assert d["chosen_rule"] == rep.learner
        sc = workflows.uplift_score(store, workflows.UpliftScoreRequest())
        assert sc.n_customers == 300 and sc.rule == rep.learner
        rows = store.read_rows("uplift_scores")
        assert len(rows) == 600 and set(rows["treatment"]) == {"mail", "sms"}
        # uplift_scores hold the rule's uplift: the in-memory rule scores the same, exactly
        cov = _covariates(store, sc.cutoff, 90, None)[list(rec.features)].dropna(how="all")
        X = rec.encoder().transform(cov).reset_index(drop=True)
        expected = rep.model.predict(X)
        assert np.array_equal(rec.model().predict(X), expected)
        got = rows.pivot(index="user_id", columns="treatment", values="uplift")
        got = got.loc[cov.index.astype(str), ["mail", "sms"]].to_numpy()
        assert np.array_equal(got, expected)
        workflows.uplift_score(store, workflows.UpliftScoreRequest())
        assert store.count_rows("uplift_scores") == 600  # replaced, not appended
        # the plan reads the uplift scores: without --offers, the treatments are the offers
        rep_plan = workflows.plan(store, workflows.PlanRequest(budget=30.0))
        plan_rows = store.read_rows("plan")
        assert {o.name for o in rep_plan.offers} == {"mail", "sms"}
        assert set(plan_rows.loc[plan_rows["action"] != "none", "uplift_source"]) == {"model"}
        assert (plan_rows["action"] != "none").sum() == 30  # 1 per send, budget 30
        # an experiment's measured uplift in a risk band shifts the model's there
        measured = pd.DataFrame(
            {
                "experiment_id": ["e1"],
                "metric": ["bought"],
                "segment_by": ["risk_band"],
                "segment": ["high"],
                "variant": ["mail"],
                "control": ["none"],
                "uplift": [0.5],
                "ci_low": [0.4],
                "ci_high": [0.6],
                "measured_at": pd.Series([pd.Timestamp("2024-01-01")], dtype="datetime64[ns]"),
            }
        )
        store.replace_rows("segment_uplift", measured, {})
        workflows.plan(store, workflows.PlanRequest(budget=300.0, offers=(Offer("mail"),)))
        high = store.read_rows("plan", where={"risk_band": "high"})
        assert set(high["uplift_source"].dropna()) == {"model, calibrated to measured"}
        assert high["uplift"].mean() == pytest.approx(0.5)
        # a changed state is refused
        store.con.execute("UPDATE uplift_models SET state = replace(state, 'num_leaves', 'nl')")
        with pytest.raises(Exception, match="SHA-256"):
            workflows.read_uplift_model(store)
    with Store(db) as store, pytest.raises(ConfigError, match="No assignments"):
        workflows.uplift_train(store, workflows.UpliftTrainRequest(experiment_id="x", outcome="y"))


def _store_state(store: Store, model_id: str, state: dict, *, learner: str) -> None:
    """An uplift_models row for ``state`` with its digest (as an older version wrote it)."""
    import hashlib

    text = json.dumps(state, sort_keys=True, allow_nan=False)
    row = pd.DataFrame(
        {
            "model_id": [model_id],
            "experiment_id": ["spring"],
            "outcome": ["bought"],
            "control": ["none"],
            "treatments": [["mail", "sms"]],
            "learner": [learner],
            "features": [["user_x0", "user_x1", "user_grade"]],
            "state": [text],
            "sha256": [hashlib.sha256(text.encode()).hexdigest()],
            "metrics": ["{}"],
            "cutoff": pd.Series([pd.NaT], dtype="datetime64[ns]"),
            "created_at": pd.Series([pd.Timestamp("2020-01-01")], dtype="datetime64[ns]"),
        }
    )
    store.replace_rows("uplift_models", row, {"model_id": model_id})


@pytest.mark.slow
def test_uplift_train_two_arms_old_models_and_tampered_rules(shop, tmp_path) -> None:
    db = tmp_path / "shop.duckdb"
    db.write_bytes(shop.read_bytes())
    with Store(db) as store:
        assign = store.read_rows("assignments", where={"experiment_id": "spring"})
        pair = assign[assign["variant"] != "sms"].assign(experiment_id="pair")
        store.replace_rows("assignments", pair, {"experiment_id": "pair"})
        out = store.read_rows("outcomes", where={"experiment_id": "spring"})
        out = out[out["user_id"].isin(pair["user_id"])].assign(experiment_id="pair")
        store.replace_rows("outcomes", out, {"experiment_id": "pair"})
        req = workflows.UpliftTrainRequest(
            experiment_id="pair", outcome="bought", control="none", models=FAST, n_boot=0, seed=4
        )
        with pytest.warns(RetentionWarning, match="no dates"):
            rep = workflows.uplift_train(store, req)
        # one treatment: the rule is the validation-Qini learner's raw ranking
        ev = rep.evaluation
        assert rep.learner == f"{ev.chosen}|shrink0|raw" and ev.settings["policy_folds"] == 0
        assert "validation Qini" in rep.to_dict()["stored_rule"]["chosen_by"]
        rec = workflows.read_uplift_model(store, rep.model_id)
        assert rec.treatments == ("mail",) and rec.rule.members == (ev.chosen,)
        sc = workflows.uplift_score(store, workflows.UpliftScoreRequest(model_id=rep.model_id))
        rows = store.read_rows("uplift_scores", where={"model_id": rep.model_id})
        assert len(rows) == sc.n_customers and set(rows["treatment"]) == {"mail"}
        cov = _covariates(store, sc.cutoff, 90, None)[list(rec.features)].dropna(how="all")
        X = rec.encoder().transform(cov).reset_index(drop=True)
        assert rep.model is not None
        got = rows.set_index("user_id").loc[cov.index.astype(str), "uplift"].to_numpy()
        assert np.array_equal(got, rep.model.predict(X)[:, 0])

        # a model stored before the rule was (one learner's state) still scores, as that learner
        cols = ["user_x0", "user_x1", "user_grade"]
        camp = _covariates(store, sc.cutoff, 90, None)[cols].loc[assign["user_id"].astype(str)]
        enc = FeatureEncoder(cols).fit(camp)
        Xc = enc.transform(camp).reset_index(drop=True)
        codes = assign["variant"].map({"none": 0, "mail": 1, "sms": 2}).to_numpy()
        spring = store.read_rows("outcomes", where={"experiment_id": "spring"})
        y = spring.set_index("user_id")["value"].loc[assign["user_id"]].to_numpy(dtype=float)
        learner = SLearner(n_estimators=20).fit(Xc, y, codes)
        old = {"learner": learner.get_state(), "encoder": enc.to_dict()}
        _store_state(store, "old000000000", old, learner="s_learner")
        old_req = workflows.UpliftScoreRequest(model_id="old000000000")
        sc_old = workflows.uplift_score(store, old_req)
        assert sc_old.rule == "s_learner|shrink0|raw"
        rows = store.read_rows("uplift_scores", where={"model_id": "old000000000"})
        got = rows.pivot(index="user_id", columns="treatment", values="uplift")
        cov = _covariates(store, sc_old.cutoff, 90, None)[cols].dropna(how="all")
        want = learner.predict(enc.transform(cov).reset_index(drop=True))
        assert np.array_equal(got.loc[cov.index.astype(str), ["mail", "sms"]].to_numpy(), want)

        # a rule stored with the wrong number of treatments, or malformed, is refused on one line
        rule_model = UpliftPolicyModel(rule=rec.rule, folds=0).fit(Xc, y, codes)
        state = {**rule_model.get_state(), "encoder": enc.to_dict()}
        state["rule"]["slope"] = [1.0, 2.0, 3.0]
        state["rule"]["calibrated"] = True
        _store_state(store, "bad000000000", state, learner="x")
        with pytest.raises(ModelError, match="retrain") as info:
            workflows.uplift_score(store, workflows.UpliftScoreRequest(model_id="bad000000000"))
        assert "\n" not in str(info.value)
        # a rule changed after training fails its SHA-256
        store.con.execute(
            "UPDATE uplift_models SET state = replace(state, '\"shrinkage\": 0.0', "
            "'\"shrinkage\": 0.5') WHERE model_id = ?",
            [rep.model_id],
        )
        with pytest.raises(ModelError, match="SHA-256"):
            workflows.uplift_score(store, workflows.UpliftScoreRequest(model_id=rep.model_id))


def test_loyalty_run_twice_adds_nothing_and_tracks_movement(shop, tmp_path) -> None:
    db = tmp_path / "shop.duckdb"
    db.write_bytes(shop.read_bytes())
    with Store(db) as store:
        first = workflows.loyalty_run(store, workflows.LoyaltyRunRequest())
        d = json.loads(json.dumps(first.to_dict(), allow_nan=False))
        assert d["summary"]["members"] + d["summary"]["holdout"] == d["summary"]["customers"]
        assert first.ledger["added"] == first.ledger["entries"] > 0
        second = workflows.loyalty_run(store, workflows.LoyaltyRunRequest())
        assert second.ledger["added"] == 0 and second.ledger["restated"] == 0
        assert second.run_id == first.run_id
        members = second.members
        assert set(members.loc[~members["holdout"], "movement"]) == {"same"}
        assert members.loc[members["holdout"], "tier"].isna().all()
        ledger = store.read_rows("loyalty_ledger")
        assert (ledger["balance"] >= 0).all() and ledger["entry_id"].is_unique
        loy = store.read_rows("loyalty")
        assert len(loy) == len(members) and loy["user_id"].is_unique
        held = store.read_rows("loyalty_holdout")
        assert held["holdout"].sum() == members["holdout"].sum()
    with Store(db) as store, pytest.raises(ConfigError, match="no scores at or before"):
        workflows.loyalty_run(store, workflows.LoyaltyRunRequest(as_of="2019-01-01"))


def test_plan_within_budget_one_row_per_customer(shop, tmp_path) -> None:
    db = tmp_path / "shop.duckdb"
    db.write_bytes(shop.read_bytes())
    offers = (
        Offer("email", send_cost=0.1, assumed_uplift=0.01),
        Offer("coupon", send_cost=0.1, redemption_cost=5.0, cap=20, assumed_uplift=0.05),
    )
    with Store(db) as store:
        workflows.loyalty_run(store, workflows.LoyaltyRunRequest())
        out = tmp_path / "plan.parquet"
        rep = workflows.plan(store, workflows.PlanRequest(budget=15.0, offers=offers, out=out))
        rows = store.read_rows("plan")
        assert len(rows) == 300 and rows["user_id"].is_unique
        assert rows["expected_cost"].sum() <= 15.0 + 1e-9
        assert (rows["action"] == "coupon").sum() <= 20
        assert set(rows["action"]) <= {"email", "coupon", "none"}
        assert rows["why"].str.len().min() > 20 and rows["tier"].notna().any()
        assert (rows["items"] == "[]").all()
        assert any("no recommended items" in n for n in rep.notes)
        assert pd.read_parquet(out).shape[0] == 300
        json.dumps(rep.to_dict(), allow_nan=False)
        # recommendations, when stored, fill the items; a second plan replaces the first
        rec = pd.DataFrame(
            {
                "user_id": ["u0001", "u0001"],
                "rank": [2, 1],
                "item_id": ["i2", "i1"],
                "cutoff": pd.Series([pd.Timestamp("2021-01-01")] * 2, dtype="datetime64[ns]"),
                "model_version": "r1",
            }
        )
        store.replace_rows("recommendations", rec, {})
        workflows.plan(store, workflows.PlanRequest(budget=15.0, offers=offers, objective="net"))
        rows = store.read_rows("plan").set_index("user_id")
        assert len(rows) == 300
        assert json.loads(rows.loc["u0001", "items"]) == ["i1", "i2"]
        assert "Show: i1, i2" in rows.loc["u0001", "why"]
        net = rows["expected_value"] - rows["expected_cost"]
        assert (net[rows["action"] != "none"] > 0).all()


def test_plan_requests_and_empty_store(tmp_path) -> None:
    with pytest.raises(ConfigError, match="budget"):
        workflows.PlanRequest(budget=-5)
    with pytest.raises(ConfigError, match=r"csv or \.parquet"):
        workflows.PlanRequest(budget=5, out=tmp_path / "x.xlsx")
    with (
        Store(tmp_path / "empty.duckdb") as store,
        pytest.raises(ConfigError, match="Nothing to plan"),
    ):
        workflows.plan(store, workflows.PlanRequest(budget=10))
    with Store(tmp_path / "empty.duckdb", read_only=True) as store, pytest.raises(StoreError):
        workflows.plan(store, workflows.PlanRequest(budget=10))


def test_plan_warns_when_nothing_helps(shop, tmp_path) -> None:
    db = tmp_path / "shop.duckdb"
    db.write_bytes(shop.read_bytes())
    with Store(db) as store, pytest.warns(RetentionWarning, match="sends nothing"):
        workflows.plan(
            store,
            workflows.PlanRequest(budget=10.0, offers=(Offer("x", assumed_uplift=-0.01),)),
        )
