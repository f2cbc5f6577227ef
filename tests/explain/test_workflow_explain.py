from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from explain_synth import FAST, START, synthetic_store

from retention import workflows
from retention.data import Store
from retention.exceptions import ConfigError
from retention.explain import REASON_COLUMNS
from retention.features import MinData

H = 45


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("explain_wf")
    db = synthetic_store(folder / "synth.duckdb", n_users=250, seed=4)
    model = folder / "gbdt.retention"
    with Store(db) as store:
        workflows.train(
            store,
            workflows.TrainRequest(
                out=model,
                model="gbdt",
                horizon_days=H,
                model_params=FAST,
                # 250 synthetic customers (fast): inside the thin-data warning zone, lowered
                min_data=MinData(customers=20, retained=5),
            ),
        )
    return db, model


def _explain(db: Path, user: str, model: Path, **kw) -> workflows.UserExplanation:
    with Store(db, read_only=True) as store:
        return workflows.explain_user(
            store, workflows.ExplainUserRequest(user_id=user, model_path=model, **kw)
        )


def test_explain_one_customer(trained) -> None:
    db, model = trained
    with Store(db, read_only=True) as store:
        user = store.con.execute("SELECT min(user_id) FROM events").fetchone()[0]
    exp = _explain(db, user, model)
    assert exp.source == "computed" and exp.user_id == user
    assert 0 < exp.p_retained < 1
    assert exp.risk_band in {"high", "medium", "low"}
    assert 1 <= len(exp.churn) + len(exp.retention) <= 6
    assert all(r["contribution"] < 0 for r in exp.churn)
    assert all(r["contribution"] > 0 for r in exp.retention)
    payload = exp.to_dict()
    json.dumps(payload, allow_nan=False)  # ready for the API
    assert set(payload["reasons"]) == {"churn", "retention"}
    assert _explain(db, user, model).to_dict() == payload  # stable


def test_reasons_stored_beside_the_scores(trained, tmp_path) -> None:
    db0, model = trained
    db = tmp_path / "copy.duckdb"
    shutil.copy(db0, db)
    with Store(db) as store:
        rep = workflows.score(store, workflows.ScoreRequest(model_path=model, reasons=False))
        stored = workflows.store_reasons(store, workflows.StoreReasonsRequest(model_path=model))
    assert rep.n_reasons == 0
    assert stored.n_users == len(rep.scores) and stored.cutoff == rep.cutoff
    json.dumps(stored.to_dict(), allow_nan=False)
    with Store(db, read_only=True) as store:
        table = store.table_df(workflows.REASONS_TABLE)
    assert set(REASON_COLUMNS) | {"cutoff", "model_version"} <= set(table.columns)
    assert table["user_id"].nunique() == len(rep.scores)
    assert set(table["model_version"]) == {rep.model_version}
    # writing again replaces the rows of the same cutoff and model
    with Store(db) as store:
        workflows.store_reasons(store, workflows.StoreReasonsRequest(model_path=model))
    with Store(db, read_only=True) as store:
        assert len(store.table_df(workflows.REASONS_TABLE)) == len(table)
    user = str(rep.scores["user_id"].iloc[3])
    read = _explain(db, user, model)
    fresh = _explain(db, user, model, use_stored=False)
    assert read.source == "stored" and fresh.source == "computed"
    assert read.p_retained == pytest.approx(fresh.p_retained)
    assert [r["text"] for r in read.churn] == [r["text"] for r in fresh.churn]
    assert [r["text"] for r in read.retention] == [r["text"] for r in fresh.retention]


def test_unknown_customer_names_the_fix(trained) -> None:
    db, model = trained
    with pytest.raises(ConfigError, match=r"no purchase before .* Check the id"):
        _explain(db, "nobody", model)
    with pytest.raises(ConfigError, match="--user"):
        _explain(db, "  ", model)


@pytest.mark.slow
def test_explain_backtest_end_to_end(trained, tmp_path, monkeypatch) -> None:
    db, _ = trained
    cutoff = START + pd.Timedelta(days=480)
    seen = {}
    real = workflows._explain.select_features

    def spy(train, valid, **kw):
        seen["cutoffs"] = [f.cutoff for f in train] + [valid.cutoff]
        seen["label_ends"] = [f.cutoff + pd.Timedelta(days=f.horizon_days) for f in [*train, valid]]
        return real(train, valid, **kw)

    monkeypatch.setattr(workflows._explain, "select_features", spy)
    request = workflows.ExplainBacktestRequest(
        cutoff=cutoff,
        horizon_days=H,
        model_params=FAST,
        n_repeats=1,
        permutation_models=("gbdt", "bgnbd"),
    )
    with Store(db, read_only=True) as store:
        rep = workflows.explain_backtest(store, request)
    # selection never saw the test cutoff, nor a label window past it
    assert cutoff not in seen["cutoffs"]
    assert max(seen["label_ends"]) <= cutoff
    assert rep.selection.valid_cutoff == cutoff - pd.Timedelta(days=H)
    assert set(rep.test_auc) == {"full", "selected"} and rep.test_auc["full"] > 0.6
    assert rep.shap.max_additivity_error() < 1e-6
    assert rep.permutation["bgnbd"].attrs["source"] == "events"
    assert "gbdt" in rep.permutation_family
    assert "tenure band" in set(rep.fairness.table["segment"])
    assert (rep.sample_reasons["p_retained"] < 0.3).all()
    out = workflows.write_explain_json(rep, tmp_path / "explain.json")
    payload = json.loads(out.read_text())
    assert payload["selection"]["valid_cutoff"] == f"{rep.valid_cutoff:%Y-%m-%d}"
    assert payload["test_roc_auc"]["full"] == pytest.approx(rep.test_auc["full"])

    from retention.serving.report import explain_sections, render_explain_report

    titles = [s.title for s in explain_sections(rep)]
    assert titles == [
        "Feature importance (SHAP)",
        "Permutation importance (validation cutoff)",
        "SHAP beeswarm",
        "Dependence of the top five features",
        "Reasons for high-risk customers",
        "Feature selection",
        "Fairness and stability by segment",
    ]
    dependence = explain_sections(rep)[3]
    assert len(dependence.figures) == 5
    html = render_explain_report(rep, tmp_path / "explain.html").read_text()
    assert "Feature selection" in html and "Model comparison" in html
