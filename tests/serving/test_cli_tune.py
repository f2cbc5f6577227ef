"""``retention tune`` and ``retention train --params / --params-from-tune``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import START, synthetic_store

from retention.models import load_model
from retention.serving.cli import main

CUTOFF = (START + pd.Timedelta(days=480)).strftime("%Y-%m-%d")
FAST = '{"n_estimators": 150, "early_stopping_rounds": 20}'


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("cli_tune") / "synth.duckdb", n_users=250)


def _args(db: Path, *more: str) -> list[str]:
    return ["tune", "--db", str(db), "--cutoff", CUTOFF, "--horizon", "45", "--n-train", "1", *more]


@pytest.mark.slow
def test_tune_prints_and_stores_the_best_then_train_uses_them(
    db: Path, tmp_path: Path, capsys
) -> None:
    store = tmp_path / "s.duckdb"
    shutil.copy(db, store)
    out = tmp_path / "tune.json"
    args = _args(store, "--trials", "2", "--sampler", "random", "--params", FAST)
    assert main([*args, "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "best value" in captured.out and "(the defaults: " in captured.out
    assert (
        f"train with them: retention train --db {store} --model gbdt --params {out}" in captured.out
    )
    assert "Trial 0 finished" not in captured.err and "Traceback" not in captured.err
    payload = json.loads(out.read_text())
    assert payload["model"] == "gbdt" and payload["n_trials"] == 2
    assert payload["params"]["n_estimators"] == 150
    assert Path(payload["storage"]) == Path(str(store) + ".optuna.sqlite3")
    # resumed: the trial count adds up
    assert main(_args(store, "--trials", "1", "--sampler", "random", "--params", FAST)) == 0
    assert "1 trial(s) run now, 3 in all" in capsys.readouterr().out.replace("\n", " ")

    model = tmp_path / "m.retention"
    train = ["train", "--db", str(store), "--model", "gbdt", "--horizon", "45", "--n-train", "1"]
    train += ["--cutoff", CUTOFF, "--out", str(model)]
    assert main([*train, "--params", str(out)]) == 0
    assert load_model(model).num_leaves == payload["params"]["num_leaves"]
    assert main([*train, "--params-from-tune"]) == 0
    assert load_model(model).n_estimators == 150
    capsys.readouterr()
    assert main([*train, "--params", '{"num_leaves": 5, "n_estimators": 60}']) == 0
    assert load_model(model).num_leaves == 5
    capsys.readouterr()
    # one-line errors
    assert main([*train, "--params", str(out), "--params-from-tune"]) == 2
    assert "either --params or --params-from-tune" in capsys.readouterr().err
    assert main([*train, "--params", "{num_leaves: 5}"]) == 2
    assert "--params is not a valid JSON object" in capsys.readouterr().err
    seq = ["train", "--db", str(store), "--model", "sequence", "--out", str(model)]
    assert main([*seq, "--params", str(out)]) == 2
    assert "tuned for 'gbdt'; got --model sequence" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--trials", "2", "--sampler", "bayes"], "Unknown sampler 'bayes'"),
        (["--trials", "2", "--model", "bgnbd"], "Unknown model 'bgnbd'"),
        (["--trials", "0"], "--trials"),
        (["--trials", "1", "--params", "[1]"], "Cannot read --params"),
    ],
)
def test_bad_options_are_one_line_errors(db: Path, capsys, flags, message) -> None:
    assert main(_args(db, *flags)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
