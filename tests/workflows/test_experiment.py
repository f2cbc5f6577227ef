"""Experiment workflows: create, assign, expose, list, analyse from the store (CUPED, CUPAC,
segments), the measured uplift the plan reads, design, and the CSV analysis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from retention import workflows
from retention.data import Mapping, Store, ingest_frame
from retention.exceptions import ConfigError, DataError
from retention.experiments import assign_variants

START = pd.Timestamp("2024-03-01")


def _store_with_effect(path: Path, n: int = 1200, lift: float = 0.25) -> list[str]:
    """A store of ``n`` customers who bought before START; after START, those the experiment
    ``promo`` assigns to ``treatment`` buy again more often. Scores put a third of them in each
    risk band."""
    rng = np.random.default_rng(0)
    users = [f"c{i:04d}" for i in range(n)]
    arm = assign_variants(users, ["control", "treatment"], salt="promo")
    habit = rng.gamma(2.0, 1.0, n)  # a customer's own propensity: drives pre and post
    rows = []
    for i, u in enumerate(users):
        for _ in range(1 + rng.poisson(habit[i])):
            rows.append((u, START - pd.Timedelta(days=int(rng.integers(1, 30))), 20.0))
        p = min(0.95, 0.15 * habit[i] + (lift if arm[u] == "treatment" else 0.0))
        if rng.random() < p:
            rows.append((u, START + pd.Timedelta(days=int(rng.integers(0, 29))), 30.0))
    events = pd.DataFrame(rows, columns=["user_id", "ts", "amount"])
    mapping = Mapping(columns={"user_id": "user_id", "ts": "ts", "amount": "amount"})
    with Store(path) as store:
        ingest_frame(store, events, mapping, source_name="synthetic")
        bands = np.array(["high", "medium", "low"])[np.arange(n) % 3]
        scores = pd.DataFrame(
            {
                "user_id": users,
                "p_retained": np.clip(0.15 * habit, 0, 1),
                "risk_band": bands,
                "cutoff": START,
                "horizon_days": 30,
                "model_version": "m1",
                "scored_at": START,
            }
        )
        scores["cutoff"] = scores["cutoff"].astype("datetime64[ns]")
        scores["scored_at"] = scores["scored_at"].astype("datetime64[ns]")
        store.write_scores(scores)
    return users


def test_create_assign_analyse_and_measured_uplift(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    users = _store_with_effect(path)
    with Store(path) as store:
        rec = workflows.create_experiment(
            store,
            workflows.CreateExperimentRequest(
                "promo", metrics=("retention_30", "revenue"), guardrails=("orders",), start=START
            ),
        )
        assert rec.salt == "promo" and rec.status == "created"
        with pytest.raises(ConfigError, match="exists already"):
            workflows.create_experiment(store, workflows.CreateExperimentRequest("promo"))
        rep = workflows.assign_users(store, workflows.AssignRequest("promo"))
        assert rep.assigned == len(users) and rep.already == 0
        again = workflows.assign_users(store, workflows.AssignRequest("promo"))
        assert again.assigned == 0 and again.already == len(users)
        listed = {r.experiment_id: r for r in workflows.list_experiments(store)}
        assert listed["promo"].status == "running"
        assert sum(listed["promo"].arms.values()) == len(users)

        report = workflows.analyze_experiment(
            store, workflows.AnalyzeExperimentRequest("promo", covariate="pre")
        )
        c = report.analysis.comparison("treatment", "retention_30")
        assert c.difference > 0.15 and c.ci_low > 0  # the injected +0.25 is found
        assert c.covariate == "pre" and c.variance_reduction is not None
        # everyone bought in the 30 days before: that covariate is constant and CUPED does
        # nothing; the revenue of the pre-period varies with each customer's habit and helps
        assert c.variance_reduction == 0
        assert report.analysis.comparison("treatment", "revenue").variance_reduction > 0.05
        payload = json.loads(json.dumps(report.to_dict(), allow_nan=False))
        assert payload["variants"]["treatment"]["p_value"] < 0.001
        assert report.written

        results = store.read_rows("experiment_results", where={"experiment_id": "promo"})
        assert set(results["metric"]) == {"retention_30", "revenue", "orders"}
        uplift = workflows.measured_uplift(store, metric="retention_30")
        assert set(uplift["segment"]) == {"high", "medium", "low"}
        assert (uplift["uplift"] > 0).all()
        overall = workflows.measured_uplift(store, metric="retention_30", segment_by="all")
        assert overall["uplift"].iloc[0] == pytest.approx(c.difference)
        assert workflows.get_experiment(store, "promo").status == "analysed"


def test_cupac_exposures_and_exposed_population(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    users = _store_with_effect(path, n=600)
    with Store(path) as store:
        workflows.create_experiment(
            store, workflows.CreateExperimentRequest("promo", start=START, holdout=0.1)
        )
        workflows.assign_users(store, workflows.AssignRequest("promo"))
        exposed = pd.DataFrame({"user_id": [*users[:300], "stranger"], "exposed_ts": START})
        rep = workflows.log_exposures(store, "promo", exposed, source="log.csv")
        held = store.count_rows("assignments", where={"variant": "holdout"})
        assert rep.not_assigned == 1 and rep.logged == 300
        again = workflows.log_exposures(store, "promo", exposed)
        assert again.logged == 0 and again.already == 300
        result = workflows.analyze_experiment(
            store,
            workflows.AnalyzeExperimentRequest(
                "promo", covariate="cupac", population="exposed", write=False
            ),
        )
        n = sum(result.analysis.counts.values())
        assert n <= 300 and n >= 300 - held
        assert result.analysis.comparisons[0].covariate == "cupac"
        assert not result.written


def test_analysis_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    _store_with_effect(path, n=100)
    with Store(path) as store:
        with pytest.raises(ConfigError, match="No experiment 'nope'"):
            workflows.analyze_experiment(store, workflows.AnalyzeExperimentRequest("nope"))
        workflows.create_experiment(store, workflows.CreateExperimentRequest("e1", start=START))
        with pytest.raises(DataError, match="no assigned users"):
            workflows.analyze_experiment(store, workflows.AnalyzeExperimentRequest("e1"))
        workflows.assign_users(store, workflows.AssignRequest("e1"))
        with pytest.raises(ConfigError, match="Unknown metric 'nope'"):
            workflows.analyze_experiment(
                store, workflows.AnalyzeExperimentRequest("e1", metrics=("nope",))
            )
    with pytest.raises(ConfigError, match="control"):
        workflows.CreateExperimentRequest("x", variants=("a", "b"), control="c")


@pytest.mark.parametrize("kind", ["csv", "store"])
def test_both_analysis_requests_check_their_shared_options_alike(kind: str) -> None:
    """The level, correction and sequential design are one set of keyword-only options,
    checked when the request is made (before any data is read)."""

    def make(**options: Any) -> Any:
        if kind == "csv":
            return workflows.AnalyzeCsvRequest(
                Path("units.csv"), "variant", "control", ("visit",), **options
            )
        return workflows.AnalyzeExperimentRequest("e1", **options)

    with pytest.raises(ConfigError, match="correction must be 'holm' or 'bh'; got 'nope'"):
        make(correction="nope")
    with pytest.raises(ConfigError, match="alpha must be a number strictly between 0 and 1"):
        make(alpha=1.5)
    with pytest.raises(ConfigError, match="need --planned-n"):
        make(looks=3)
    req = make(sequential="group", planned_n=1000, looks=3, look_n=[300, 600], alpha=0.1)
    assert req.look_n == (300, 600) and req.alpha == 0.1 and req.correction == "holm"


def test_design_from_the_store_uses_the_pre_period_correlation(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    _store_with_effect(path, n=800)
    with Store(path, read_only=True) as store:
        r = workflows.design_experiment(
            store,
            workflows.DesignRequest("revenue", relative_mde=0.1, cutoff=START, window_days=14),
        )
        plain = workflows.design_experiment(
            store,
            workflows.DesignRequest(
                "revenue", relative_mde=0.1, cutoff=START, window_days=14, cuped=False
            ),
        )
    assert r.population is not None and r.population > 100
    assert r.rho > 0 and r.n_per_variant_cuped < r.n_per_variant
    assert plain.rho == 0 and plain.n_per_variant == r.n_per_variant
    assert json.dumps(r.to_dict(), default=str)


@pytest.mark.slow
def test_hillstrom_in_the_store_equals_the_csv_analysis(tmp_path: Path) -> None:
    from retention.data import load_dataset

    path = tmp_path / "h.duckdb"
    with Store(path) as store:
        load_dataset("hillstrom", store)
        stored = workflows.analyze_experiment(
            store,
            workflows.AnalyzeExperimentRequest(
                "hillstrom",
                metrics=("visit",),
                control="No E-Mail",
                covariate="history",
                segment_by="channel",
            ),
        )
        seg = workflows.measured_uplift(store, metric="visit", segment_by="channel")
    csv = tmp_path / "h.csv"
    from importlib import resources

    src = Path(str(resources.files("retention.data").joinpath("files", "hillstrom.csv.gz")))
    pd.read_csv(src).to_csv(csv, index=False)
    flat = workflows.analyze_csv(
        workflows.AnalyzeCsvRequest(
            csv, variant="segment", control="No E-Mail", metrics=("visit",), covariate="history"
        )
    )
    for v in ("Mens E-Mail", "Womens E-Mail"):
        a, b = stored.analysis.comparison(v), flat.analysis.comparison(v)
        assert a.difference == pytest.approx(b.difference, rel=1e-9)
        assert a.p_value == pytest.approx(b.p_value, rel=1e-6)
    assert set(seg["segment"]) == {"Phone", "Web", "Multichannel"}
