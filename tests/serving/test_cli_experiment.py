"""``retention experiment``: the DESIGN.md contract on a CSV, the store commands, the report,
and one-line errors."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from retention.serving.cli import main


@pytest.fixture(scope="module")
def cookie_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = Path(str(resources.files("retention.data").joinpath("files", "cookie_cats.csv.gz")))
    out = tmp_path_factory.mktemp("cc") / "cookie_cats.csv"
    pd.read_csv(src).to_csv(out, index=False)
    return out


def test_analyze_csv_writes_the_contract_json_and_a_report(
    cookie_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, page = tmp_path / "e.json", tmp_path / "e.html"
    argv = ["experiment", "analyze", "--csv", str(cookie_csv), "--variant", "version"]
    argv += ["--control", "gate_30", "--metric", "retention_7", "--json", str(out)]
    assert main([*argv, "--report", str(page)]) == 0
    payload = json.loads(out.read_text())
    v = payload["variants"]["gate_40"]
    assert v["difference"] < 0 and v["interval"][0] < v["difference"] < v["interval"][1]
    assert 0 < v["p_value"] < 0.01
    html = page.read_text()
    assert "Differences" in html and "Chance to win" in html and "plotly" in html.lower()
    assert "gate_40" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--control", "gate_99"], "control value 'gate_99' is not in"),
        (["--control", "gate_30", "--covariate", "version"], "not numeric"),
        (["--control", "gate_30", "--metric", "nope"], "Column 'nope' (--metric) is not in"),
    ],
)
def test_bad_input_is_one_line_on_stderr(
    cookie_csv: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["experiment", "analyze", "--csv", str(cookie_csv), "--variant", "version"]
    if "--metric" not in args:
        args = [*args, "--metric", "retention_7"]
    assert main([*argv, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_analyze_csv_with_a_group_sequential_design(
    cookie_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, page = tmp_path / "g.json", tmp_path / "g.html"
    argv = ["experiment", "analyze", "--csv", str(cookie_csv), "--variant", "version"]
    argv += ["--control", "gate_30", "--metric", "retention_7", "--json", str(out)]
    group = ["--sequential-design", "group", "--looks", "4", "--planned-n", "120000"]
    assert main([*argv, *group, "--spending", "pocock", "--report", str(page)]) == 0
    payload = json.loads(out.read_text())
    assert payload["sequential_design"] == "group" and payload["group_sequential"]["look"] == 3
    assert payload["group_sequential"]["spending"] == "pocock"
    assert payload["variants"]["gate_40"]["metrics"]["retention_7"]["group_sequential"]["crossed"]
    assert "group sequential (Pocock-type alpha spending), look 3 of 4" in page.read_text()
    assert "look 3 of 4" in capsys.readouterr().out
    assert main([*argv, "--sequential", "--planned-n", "1000"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--sequential-design group" in err and len(err.splitlines()) == 1


def test_one_variant_and_nan_covariate_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = tmp_path / "one.csv"
    one.write_text("arm,y\na,1\na,0\n")
    assert (
        main(
            [
                "experiment",
                "analyze",
                "--csv",
                str(one),
                "--variant",
                "arm",
                "--control",
                "a",
                "--metric",
                "y",
            ]
        )
        == 2
    )
    assert "at least two variants" in capsys.readouterr().err
    holes = tmp_path / "holes.csv"
    holes.write_text("arm,y,x\na,1,1\nb,0,\na,1,2\nb,1,3\n")
    assert (
        main(
            [
                "experiment",
                "analyze",
                "--csv",
                str(holes),
                "--variant",
                "arm",
                "--control",
                "a",
                "--metric",
                "y",
                "--covariate",
                "x",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "missing value" in err and len(err.splitlines()) == 1


def test_create_assign_list_analyze_in_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.duckdb"
    rows = ["user_id,ts,amount"]
    for i in range(300):
        rows.append(f"u{i},2024-02-{1 + i % 28:02d},{10 + i % 7}")
        if i % 3 == 0:
            rows.append(f"u{i},2024-03-{1 + i % 20:02d},{5 + i % 5}")
    events = tmp_path / "events.csv"
    events.write_text("\n".join(rows) + "\n")
    assert main(["ingest", str(events), "--db", str(db)]) == 0
    assert (
        main(
            [
                "experiment",
                "create",
                "e1",
                "--variant",
                "a",
                "--variant",
                "b",
                "--metric",
                "revenue",
                "--start",
                "2024-03-01",
                "--db",
                str(db),
            ]
        )
        == 0
    )
    assert main(["experiment", "assign", "--experiment", "e1", "--db", str(db)]) == 0
    assert "assigned 300 new user(s)" in capsys.readouterr().out
    assert main(["experiment", "list", "--db", str(db)]) == 0
    assert "e1" in capsys.readouterr().out
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "experiment",
                "analyze",
                "--experiment",
                "e1",
                "--db",
                str(db),
                "--covariate",
                "pre",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    payload = json.loads(out.read_text())
    assert payload["experiment_id"] == "e1" and "b" in payload["variants"]
    assert payload["comparisons"][0]["cuped"]["covariate"] == "pre"
    assert (
        main(
            [
                "experiment",
                "design",
                "--metric",
                "revenue",
                "--db",
                str(db),
                "--cutoff",
                "2024-03-29",
                "--window",
                "14",
            ]
        )
        == 0
    )
    assert "units per variant" in capsys.readouterr().out
    assert main(["experiment", "analyze", "--experiment", "e2", "--db", str(db)]) == 2
    assert "No experiment 'e2'" in capsys.readouterr().err
