"""``retention recommend``: its output and its one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retention.serving.cli import main
from retention.serving.cli._recommend import RECOMMENDERS

ROOT = Path(__file__).parents[2]


def test_recommender_choices_match_the_registry() -> None:
    from retention.strategies import RECOMMENDER_NAMES

    assert [n.strip() for n in RECOMMENDERS.split(",")] == list(RECOMMENDER_NAMES)


def test_one_customer(retail_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["recommend", "--db", str(retail_db), "--user", "12748", "-k", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [r["rank"] for r in out["recommendations"]] == [1, 2, 3]
    assert all(r["reason"] for r in out["recommendations"])
    assert out["n_new_users"] == 0


def test_all_customers_into_the_store(
    retail_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "or.duckdb"
    shutil.copy(retail_db, db)
    code = main(["recommend", "--db", str(db), "--all", "-k", "2", "--cutoff", "2011-06-01"])
    out = capsys.readouterr().out
    assert code == 0
    assert "table: recommendations" in out and "customers" in out


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--user", "1", "--all"], "not both"),
        ([], "pass --user ID"),
        (["--user", "1", "-k", "0"], "k must be a positive integer"),
        (["--user", "1", "--recommender", "magic"], "Unknown recommender"),
        (["--user", "1", "--model", "missing.recommender"], "No recommender file"),
        (["--user", "1", "--params", "{nope"], "--params is not a valid JSON object"),
        (["--user", "1", "--params", '{"bogus": 1}'], "Bad parameters for recommender"),
    ],
)
def test_errors_are_one_line(
    retail_db: Path, args: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["recommend", "--db", str(retail_db), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert match in " ".join(err.split())
    assert "Traceback" not in err


def test_params_reach_the_recommender(
    retail_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from retention.strategies import load_recommender

    saved = tmp_path / "t.recommender"
    args = ["recommend", "--db", str(retail_db), "--user", "12748", "-k", "3", "--json"]
    extra = ["--params", '{"weights": [1.0, 0.25]}', "--save-model", str(saved)]
    code = main([*args, *extra])
    capsys.readouterr()
    assert code == 0
    assert tuple(load_recommender(saved).weights) == (1.0, 0.25)


def test_benchmark_rejects_a_malformed_sequences_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("u1 1 2 3\nu2\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "recommend.py"), "--sequences", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Line 2 of" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_benchmark_json_is_strict_json(tmp_path: Path) -> None:
    # every user has several items, so the "cold" segment is empty: its figures are null, never
    # NaN, which strict parsers (JavaScript's, jq) refuse
    rng = np.random.default_rng(0)
    lines = [
        f"u{u} " + " ".join(str(i) for i in rng.choice(30, size=int(rng.integers(4, 7))))
        for u in range(80)
    ]
    seqs = tmp_path / "seq.txt"
    seqs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "recommend.py"), "--sequences", str(seqs)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    def refuse(name: str) -> None:
        raise ValueError(name)

    payload = json.loads(proc.stdout, parse_constant=refuse)
    cold = payload["models"]["popularity"]["segments"]["cold (<= 1 item)"]
    assert cold["n_users"] == 0 and cold["hr@10"] is None
    assert 0 <= payload["models"]["popularity"]["hr@10"] <= 1
