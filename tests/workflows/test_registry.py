"""The model registry with stages (issue 16): candidates, promotion on the latest backtest,
rollback, and the default model of score."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import synthetic_store

from retention import workflows
from retention.data import Store
from retention.data._store import MIGRATIONS
from retention.exceptions import ConfigError, ModelError, RetentionWarning
from retention.features import MinData

HORIZON = 45
#: no cross-validation and no BTYD inputs: 100 rounds, uncalibrated (a second)
FAST = {
    "n_estimators": 100,
    "learning_rate": 0.1,
    "cv_folds": None,
    "btyd_features": False,
    "btyd_offset": False,
}
#: a deliberately weak configuration: spend alone (independent of the purchase rate here)
WEAK = {**FAST, "feature_set": ["monetary"]}
SMALL = MinData(customers=20, retained=5)


def _promote(**kw: object) -> workflows.PromoteRequest:
    return workflows.PromoteRequest(n_bootstrap=200, min_data=SMALL, **kw)  # type: ignore[arg-type]


def _make_production(store: Store, model_id: str) -> None:
    """What a promotion records, without its backtest."""
    prod = store.production_model_id()
    if prod is not None:
        store.record_model_stage(prod, "archived", action="archive")
    store.record_model_stage(model_id, "production", action="promote", forced=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A 300-customer store with three registered models: a weak gbdt, a good gbdt, and a 30-day
    gbdt (another horizon)."""
    folder = tmp_path_factory.mktemp("registry")
    db = synthetic_store(folder / "synth.duckdb", n_users=300)
    ids = {}
    with Store(db) as store:
        for key, params, horizon in (("weak", WEAK, HORIZON), ("good", FAST, HORIZON)):
            rep = workflows.train(
                store,
                workflows.TrainRequest(
                    out=folder / f"{key}.retention",
                    model="gbdt",
                    horizon_days=horizon,
                    model_params=params,
                    min_data=SMALL,
                ),
            )
            ids[key] = rep.model_id
        rep = workflows.train(
            store,
            workflows.TrainRequest(
                out=folder / "short.retention",
                model="gbdt",
                horizon_days=30,
                model_params=FAST,
                min_data=SMALL,
            ),
        )
        ids["short"] = rep.model_id
    return db, ids


@pytest.fixture()
def db(trained: tuple[Path, dict[str, str]], tmp_path: Path) -> Path:
    path = tmp_path / "copy.duckdb"
    shutil.copy(trained[0], path)
    return path


@pytest.fixture()
def ids(trained: tuple[Path, dict[str, str]]) -> dict[str, str]:
    return trained[1]


def test_trained_models_land_as_candidates(db: Path, ids: dict[str, str]) -> None:
    with Store(db) as store:
        assert {store.model_stage(m) for m in ids.values()} == {"candidate"}
        assert store.production_model_id() is None
        hist = store.model_stage_history()
        assert list(hist["action"]) == ["register"] * 3
        listing = workflows.list_models(store)
    assert listing.production is None
    assert listing.models[0].model_id == ids["short"]  # newest first
    weak = next(m for m in listing.models if m.model_id == ids["weak"])
    assert weak.params == WEAK and weak.horizon_days == HORIZON and weak.artifact == "ok"
    json.dumps(listing.to_dict(), allow_nan=False)


def test_score_uses_the_newest_candidate_with_a_warning_then_production(
    db: Path, ids: dict[str, str]
) -> None:
    with Store(db) as store:
        with pytest.warns(RetentionWarning, match="No production model .* newest candidate"):
            choice = workflows.choose_model(store)
        assert choice == workflows.ModelChoice(ids["short"], "candidate")
        with pytest.raises(ConfigError, match="No model 'nope'"):
            workflows.choose_model(store, "nope")
        _make_production(store, ids["weak"])
        assert workflows.choose_model(store) == workflows.ModelChoice(ids["weak"], "production")
        assert workflows.choose_model(store, ids["good"]).stage == "candidate"
        # a model trained later (`retention retrain` too) is a candidate: it never replaces
        # production by itself
        rep = workflows.train(
            store,
            workflows.TrainRequest(
                out=db.parent / "later.retention",
                model="bgnbd",
                horizon_days=HORIZON,
                min_data=SMALL,
            ),
        )
        assert store.model_stage(rep.model_id) == "candidate"
        assert workflows.choose_model(store).model_id == ids["weak"]
        scored = workflows.score(
            store, workflows.ScoreRequest(model_id=workflows.choose_model(store).model_id)
        )
        assert scored.model_version == ids["weak"]
        # a candidate scored later: the service still shows production's scores, and the stage
        later = workflows.score(store, workflows.ScoreRequest(model_id=ids["good"]))
        uid = str(later.scores["user_id"].iloc[0])
        view = workflows.customer_view(store, workflows.CustomerRequest(user_id=uid))
        assert view.scores is not None
        assert (view.scores["model_version"], view.scores["model_stage"]) == (
            ids["weak"],
            "production",
        )
        asked = workflows.CustomerRequest(user_id=uid, model_version=ids["good"])
        assert workflows.customer_view(store, asked).scores["model_stage"] == "candidate"  # type: ignore[index]


@pytest.mark.slow  # refits two models at the latest backtest cutoff
def test_first_promotion_needs_no_comparison(db: Path, ids: dict[str, str]) -> None:
    with Store(db) as store:
        rep = workflows.promote(store, _promote(model_id=ids["weak"]))
        assert rep.promoted and rep.decision == "first" and rep.production is None
        assert "without comparison" in rep.message
        assert 0 < rep.evidence["candidate"]["metrics"]["roc_auc"] < 1  # its own figures
        assert store.production_model_id() == ids["weak"]
        with pytest.raises(ConfigError, match="already the production model"):
            workflows.promote(store, _promote(model_id=ids["weak"]))
    json.dumps(rep.to_dict(), allow_nan=False)


@pytest.mark.slow  # refits two models at the latest backtest cutoff
def test_promotion_on_the_latest_backtest_is_honest_and_recorded(
    db: Path, ids: dict[str, str]
) -> None:
    with Store(db) as store:
        workflows.promote(store, _promote(model_id=ids["weak"]))
        rep = workflows.promote(store, _promote(model_id=ids["good"]))
        last = workflows.last_event_date(store)
        hist = store.model_stage_history()
    ev = rep.evidence
    # the latest cutoff whose label window has fully passed in the store
    cutoff = pd.Timestamp(ev["cutoff"])
    assert cutoff == last - pd.Timedelta(days=HORIZON)
    assert pd.Timestamp(ev["label_window_end"]) <= last
    for role in ("candidate", "production"):
        part = ev[role]
        # refit there: every label window it learned from ends by the backtest cutoff
        learned = [*part["train_cutoffs"], part["valid_cutoff"]]
        assert all(pd.Timestamp(c) + pd.Timedelta(days=HORIZON) <= cutoff for c in learned)
    cand, prod = ev["candidate"]["metrics"]["roc_auc"], ev["production"]["metrics"]["roc_auc"]
    assert ev["difference"] == pytest.approx(cand - prod)
    assert ev["ci_low"] <= ev["difference"] <= ev["ci_high"]
    assert ev["difference"] >= ev["margin"] == 0.005
    assert rep.promoted and rep.decision == "promote" and rep.production == ids["weak"]
    # the former production model is archived, in order, with the evidence beside the promotion
    tail = hist.tail(2)
    assert list(zip(tail["model_id"], tail["stage"], tail["action"], strict=True)) == [
        (ids["weak"], "archived", "archive"),
        (ids["good"], "production", "promote"),
    ]
    assert json.loads(tail["evidence"].iloc[1])["difference"] == pytest.approx(ev["difference"])
    with Store(db, read_only=True) as store:
        listing = workflows.list_models(store)
    figures = {m.model_id: m.backtest for m in listing.models}
    assert figures[ids["good"]]["roc_auc"] == pytest.approx(cand)  # type: ignore[index]
    assert figures[ids["weak"]]["roc_auc"] == pytest.approx(prod)  # type: ignore[index]


@pytest.mark.slow  # refits two models at the latest backtest cutoff
def test_a_candidate_that_does_not_beat_production_is_refused_unless_forced(
    db: Path, ids: dict[str, str]
) -> None:
    with Store(db) as store:
        workflows.promote(store, _promote(model_id=ids["good"]))
        rep = workflows.promote(store, _promote(model_id=ids["weak"]))
        assert not rep.promoted and rep.decision == "refuse"
        assert "does not beat production" in rep.message and "--force" in rep.message
        assert rep.evidence["difference"] < 0.005
        assert store.production_model_id() == ids["good"]
        assert store.model_stage(ids["weak"]) == "candidate"
        assert store.model_stage_history()["action"].iloc[-1] == "refuse"
        forced = workflows.promote(store, _promote(model_id=ids["weak"], force=True))
        assert forced.promoted and forced.forced and forced.decision == "force"
        last = store.model_stage_history().iloc[-1]
        assert last["model_id"] == ids["weak"] and bool(last["forced"])
        assert store.model_stage(ids["good"]) == "archived"


@pytest.mark.slow  # refits two models at the latest backtest cutoff
def test_models_of_another_horizon_are_not_compared(db: Path, ids: dict[str, str]) -> None:
    with Store(db) as store:
        workflows.promote(store, _promote(model_id=ids["good"]))
        with pytest.raises(ConfigError, match=r"30-day horizon.*--force"):
            workflows.promote(store, _promote(model_id=ids["short"]))
        rep = workflows.promote(store, _promote(model_id=ids["short"], force=True))
        assert rep.forced and "without comparison" in rep.message
        assert store.production_model_id() == ids["short"]


def test_a_changed_artifact_is_not_promoted(db: Path, ids: dict[str, str]) -> None:
    with Store(db) as store:
        record = store.model_record(ids["weak"])
        assert record is not None
        keep = record.path.read_bytes()
        try:
            record.path.write_bytes(keep + b"x")
            with pytest.raises(ModelError, match="changed since"):
                workflows.promote(store, _promote(model_id=ids["weak"]))
            assert workflows.list_models(store).models[-1].artifact == "changed"
        finally:
            record.path.write_bytes(keep)
        assert store.production_model_id() is None


def test_rollback_goes_back_one_production_at_a_time(db: Path, ids: dict[str, str]) -> None:
    with Store(db) as store:
        with pytest.raises(ConfigError, match="no production model to roll back"):
            workflows.rollback(store)
        for key in ("weak", "good"):
            _make_production(store, ids[key])
        with pytest.raises(ConfigError, match="never in production"):
            workflows.rollback(store, workflows.RollbackRequest(to=ids["short"]))
        with pytest.raises(ConfigError, match="No model 'nope'"):
            workflows.rollback(store, workflows.RollbackRequest(to="nope"))
        _make_production(store, ids["short"])
        rep = workflows.rollback(store)
        assert (rep.rolled_back, rep.production) == (ids["short"], ids["good"])
        assert store.model_stage(ids["short"]) == "archived"
        rep = workflows.rollback(store, workflows.RollbackRequest(reason="bad week"))
        assert rep.production == ids["weak"]  # not back to the model rolled back before
        hist = store.model_stage_history()
        assert hist["reason"].iloc[-1] == "bad week" and hist["action"].iloc[-1] == "rollback"
        with pytest.raises(ConfigError, match="no earlier production model"):
            workflows.rollback(store)
        rep = workflows.rollback(store, workflows.RollbackRequest(to=ids["short"]))
        assert store.production_model_id() == ids["short"]
    json.dumps(rep.to_dict(), allow_nan=False)


def test_requests_are_checked() -> None:
    with pytest.raises(ConfigError, match="margin"):
        workflows.PromoteRequest(margin=-0.1)
    with pytest.raises(ConfigError, match="margin"):
        workflows.PromoteRequest(margin=float("nan"))
    with pytest.raises(ConfigError, match="model_id"):
        workflows.PromoteRequest(model_id="  ")
    with pytest.raises(ConfigError, match="n_bootstrap"):
        workflows.PromoteRequest(n_bootstrap=0)
    with pytest.raises(ConfigError, match="to must be"):
        workflows.RollbackRequest(to="")
    with pytest.raises(ConfigError, match="stage must be"), Store(":memory:") as store:
        store.record_model_stage("x", "staging", action="promote")


def test_models_registered_before_the_stages_become_candidates(
    db: Path, ids: dict[str, str]
) -> None:
    version = next(i + 1 for i, m in enumerate(MIGRATIONS) if "model_stages" in str(m[0]))
    con = duckdb.connect(str(db))
    for migration in MIGRATIONS[version - 1 :]:  # back to the store before that version
        for step in migration:
            found = re.match(
                r"\s*CREATE TABLE IF NOT EXISTS (\w+)", step if isinstance(step, str) else ""
            )
            if found:
                con.execute(f"DROP TABLE {found.group(1)}")
    con.execute("DELETE FROM schema_version WHERE version >= ?", [version])
    con.close()
    with Store.open(db) as store:
        assert {store.model_stage(m) for m in ids.values()} == {"candidate"}
        assert set(store.model_stage_history()["action"]) == {"register"}
