"""``retention uplift|loyalty|plan``: outputs, files, and one-line errors (exit 2, no traceback)."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
sys.path.insert(0, str(Path(__file__).parents[1] / "strategies"))
from retention_synth import synthetic_store
from uplift_synth import campaign_frame

from retention.data import Store
from retention.serving.cli import main


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli_uplift") / "c.csv"
    campaign_frame(2400, seed=8).to_csv(path, index=False)
    return path


def _one_line_error(capsys, args: list[str], match: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error:") and match in err, err


def test_uplift_evaluate_writes_json_and_html(csv, tmp_path, capsys) -> None:
    out = tmp_path / "u.json"
    args = ["uplift", "evaluate", "--csv", str(csv), "--treatment", "segment", "--control"]
    args += ["none", "--outcome", "outcome", "--json", str(out), "--models", "s_learner"]
    assert main([*args, "--n-boot", "20", "--features", "x0,x1,x2,x3,grade"]) == 0
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert {"mail", "sms"} == set(payload["treatments"])
    assert "qini" in payload["treatments"]["mail"]["models"]["s_learner"]
    assert "uplift_at_30" in payload["treatments"]["sms"]["models"]["s_learner"]
    assert "difference" in payload["treatments"]["mail"]
    html = out.with_suffix(".html").read_text()
    assert "Qini curves: mail" in html and "plotly" in html.lower()
    assert "policy at 30% treated" in printed
    # the JSON names the policy row's targeting rule (added keys; the others kept)
    assert payload["chosen_rule"] == payload["policy"]["rule"]["rule"]
    assert payload["chosen_rule"].split("|")[0] in ("s_learner", "ensemble")
    assert "targeting rule: " + payload["chosen_rule"] in printed


@pytest.mark.slow
def test_uplift_train_shows_the_stored_rule_and_score_uses_it(tmp_path, capsys) -> None:
    from retention.data import Mapping, ingest_frame

    db = tmp_path / "camp.duckdb"
    camp = campaign_frame(1500, seed=9)
    camp["user_id"] = [f"u{i}" for i in range(len(camp))]
    with Store(db) as store:
        ingest_frame(
            store,
            camp[["user_id", "x0", "x1", "grade"]],
            Mapping(columns={"user_id": "user_id"}),
            table="users",
            source_name="users",
        )
        ts = pd.Series([pd.Timestamp("2024-03-01")] * len(camp), dtype="datetime64[ns]")
        store.replace_rows(
            "assignments",
            pd.DataFrame(
                {"experiment_id": "c", "user_id": camp["user_id"], "variant": camp["segment"]}
            ).assign(assigned_ts=ts),
            {},
        )
        store.replace_rows(
            "outcomes",
            pd.DataFrame(
                {"experiment_id": "c", "user_id": camp["user_id"], "metric": "visit"}
            ).assign(value=camp["outcome"]),
            {},
        )
    out = tmp_path / "t.json"
    args = ["uplift", "train", "--db", str(db), "--experiment", "c", "--outcome", "visit"]
    assert main([*args, "--control", "none", "--models", "s_learner", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())
    rule = payload["stored_rule"]
    assert rule["rule"] == payload["learner"] == payload["chosen_rule"]
    assert f"stored targeting rule: {rule['rule']}" in printed
    assert "chosen by cross-fitting on the training half" in printed  # three arms
    assert "per 1,000 units" in printed and "refitted on all 1,500 units" in printed
    assert main(["uplift", "score", "--db", str(db)]) == 0
    assert f"(rule {rule['rule']})" in capsys.readouterr().out
    with Store(db, read_only=True) as store:
        assert store.count_rows("uplift_scores") == 2 * 1500
    # the user's segments are stored with the rule (encoded names, no code) and score again
    seg = [*args, "--control", "none", "--models", "s_learner", "--segments", "user_grade"]
    assert main([*seg, "--json", str(out)]) == 0
    capsys.readouterr()
    payload = json.loads(out.read_text())
    assert payload["settings"]["segments"] == ["user_grade"]
    assert main(["uplift", "score", "--db", str(db), "--model-id", payload["model_id"]]) == 0
    assert payload["model_id"] in capsys.readouterr().out


def test_uplift_evaluate_with_segments(csv, tmp_path, capsys) -> None:
    out = tmp_path / "s.json"
    args = ["uplift", "evaluate", "--csv", str(csv), "--treatment", "segment", "--control"]
    args += ["none", "--outcome", "outcome", "--models", "s_learner", "--n-boot", "20"]
    args += ["--features", "x0,x1,x2,x3,grade"]
    assert main([*args, "--segments", "grade", "--json", str(out)]) == 0
    capsys.readouterr()
    payload = json.loads(out.read_text())
    assert payload["settings"]["segments"] == ["grade"]
    assert "segments" in payload["treatments"]["mail"]["models"]
    assert any(r.startswith("segments|") for r in payload["policy"]["rules_tried"])
    _one_line_error(capsys, [*args, "--segments", "colour"], "not among the covariates")
    only = [a if a != "s_learner" else "segments" for a in args]
    _one_line_error(capsys, only, "segments learner needs")


def test_uplift_evaluate_one_line_errors(csv, tmp_path, capsys) -> None:
    df = pd.read_csv(csv)
    one = tmp_path / "one.csv"
    df.assign(segment="none").to_csv(one, index=False)
    flat = tmp_path / "flat.csv"
    df.assign(outcome=0).to_csv(flat, index=False)
    base = ["uplift", "evaluate", "--treatment", "segment", "--control", "none"]
    base += ["--outcome", "outcome", "--json", str(tmp_path / "x.json")]
    _one_line_error(capsys, [*base, "--csv", str(one)], "one value only")
    _one_line_error(capsys, [*base, "--csv", str(flat)], "constant")
    _one_line_error(capsys, [*base, "--csv", str(tmp_path / "missing.csv")], "No file")
    _one_line_error(capsys, [*base, "--csv", str(csv), "--cost", "mail"], "TREATMENT=AMOUNT")


def test_loyalty_example_check_and_errors(tmp_path, capsys) -> None:
    assert main(["loyalty", "example"]) == 0
    text = capsys.readouterr().out
    tomllib.loads(text)
    good = tmp_path / "good.toml"
    good.write_text(text)
    assert main(["loyalty", "check", "--config", str(good)]) == 0
    assert "is valid" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("expiry_days = 365", "expiry = 365"))
    _one_line_error(capsys, ["loyalty", "check", "--config", str(bad)], "unknown key(s) expiry")
    broken = tmp_path / "broken.toml"
    broken.write_text("[program\n")
    _one_line_error(capsys, ["loyalty", "check", "--config", str(broken)], "not valid TOML")


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli_plan")
    db = synthetic_store(folder / "s.duckdb", n_users=120, seed=4)
    with Store(db) as store:
        users = sorted(store.table_df("events")["user_id"].astype(str).unique())
        cutoff = store.event_range("purchase")[1].normalize()
        p = np.random.default_rng(1).uniform(0.05, 0.95, len(users))
        store.write_scores(
            pd.DataFrame(
                {
                    "user_id": users,
                    "p_retained": p,
                    "clv": 80 * p,
                    "risk_band": np.where(p < 0.3, "high", "low"),
                    "cutoff": pd.Series([cutoff] * len(users), dtype="datetime64[ns]"),
                    "horizon_days": 90,
                    "model_version": "m",
                }
            )
        )
    return db


def test_loyalty_run_then_plan(scored, tmp_path, capsys) -> None:
    db = tmp_path / "s.duckdb"
    db.write_bytes(scored.read_bytes())
    assert main(["loyalty", "run", "--db", str(db), "--json", str(tmp_path / "l.json")]) == 0
    out = capsys.readouterr().out
    assert "members" in out and "pays for itself" in out
    offers = tmp_path / "offers.toml"
    offers.write_text(
        '[[offers]]\nname = "mail"\nsend_cost = 0.5\nassumed_uplift = 0.02\n'
        '[[offers]]\nname = "coupon"\nsend_cost = 0.5\nredemption_cost = 4\nassumed_uplift = 0.06\n'
    )
    csv_out = tmp_path / "plan.csv"
    args = ["plan", "--db", str(db), "--budget", "20", "--offers", str(offers)]
    assert main([*args, "--out", str(csv_out), "--report", str(tmp_path / "p.html")]) == 0
    printed = capsys.readouterr().out
    assert "totals by action" in printed
    plan = pd.read_csv(csv_out)
    assert len(plan) == 120 and plan["expected_cost"].sum() <= 20 + 1e-9
    assert "Retention plan" in (tmp_path / "p.html").read_text()
    offers.write_text('[[offers]]\nname = "mail"\nsend_cost = "cheap"\n')
    _one_line_error(capsys, [*args], "send_cost must be a number")
    _one_line_error(capsys, ["plan", "--db", str(db), "--budget", "-3"], "--budget")


def test_plan_help_names_budget(capsys) -> None:
    assert main(["plan", "--help"]) == 0
    assert "--budget" in capsys.readouterr().out
