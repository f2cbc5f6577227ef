"""``--retained-by`` on the command line: backtest, train and score of a review-only log."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from retention.serving.cli import main


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("cli_reviews") / "mi.duckdb"
    assert main(["datasets", "load", "amazon_musical_instruments", "--db", str(db)]) == 0
    return db


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_without_the_flag_the_one_line_error_names_it(reviews: Path, capsys) -> None:
    assert main(["backtest", "--db", str(reviews), "--cutoff", "2014-01-01"]) == 2
    lines = _errors(capsys.readouterr().err)
    assert len(lines) == 1 and "--retained-by review" in lines[0] and "review (5,050)" in lines[0]
    assert main(["backtest", "--db", str(reviews), "--cutoff", "2014-01-01", "--retained-by", ""])
    lines = _errors(capsys.readouterr().err)
    assert len(lines) == 1 and "empty event type" in lines[0]


@pytest.mark.slow
def test_backtest_train_score_with_retained_by_review(reviews: Path, tmp_path: Path, capsys):
    out = tmp_path / "bt.json"
    args = ["backtest", "--db", str(reviews), "--cutoff", "2014-01-01", "--retained-by", "review"]
    assert main([*args, "--models", "bgnbd,gbdt_rfm", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["retained_by"] == "review" and payload["n_users"] == 1_149
    model = tmp_path / "m.retention"
    args = ["train", "--db", str(reviews), "--model", "gbdt_rfm", "--retained-by", "review"]
    assert main([*args, "--out", str(model)]) == 0
    scores = tmp_path / "s.csv"
    assert main(["score", "--db", str(reviews), "--model", str(model), "--out", str(scores)]) == 0
    assert len(pd.read_csv(scores)) > 1_000  # reviewers before the last review's day
    capsys.readouterr()
    argv = ["score", "--db", str(reviews), "--model", str(model), "--retained-by", "any"]
    assert main(argv) == 2
    lines = _errors(capsys.readouterr().err)
    mismatch = "trained with --retained-by review; got --retained-by any"
    assert len(lines) == 1 and mismatch in lines[0]
