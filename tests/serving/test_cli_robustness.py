"""The CLI as a careless or hostile user meets it (issue 10, the CLI half): text is printed as
written (never read as Rich markup), every failure is one line on stderr with a non-zero exit,
and the messages name the real problem and its fix."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pandas as pd
import pytest

import retention.serving.cli as cli
from retention.exceptions import RetentionWarning
from retention.serving.cli import main

SHOP = "user_id,ts,amount\n" + "".join(
    f"u{u},2020-{m:02d}-{d:02d},{5 + u % 7}.50\n"
    for u in range(12)
    for m, d in ((1, 3 + u), (2, 10 + u), (3, 1 + u))
    if (u + m) % 4
)


def _errors(err: str) -> list[str]:
    """The lines of stderr that are not warnings."""
    return [li for li in err.splitlines() if li.strip() and not li.startswith("warning:")]


@pytest.fixture()
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.csv"
    path.write_text(SHOP, encoding="utf-8")
    return path


@pytest.fixture()
def store(tmp_path: Path, shop: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    db = tmp_path / "shop.duckdb"
    assert main(["ingest", str(shop), "--db", str(db)]) == 0
    capsys.readouterr()
    return db


# ------------------------------------------------------------------------------ Rich markup
def test_help_texts_keep_their_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert (
        "TOML mapping file ([columns], [event_types], [reader])." in out
    )  # was: "TOML mapping file (, , )"


def test_every_help_page_renders(capsys: pytest.CaptureFixture[str]) -> None:
    import typer.main

    group = typer.main.get_command(cli.app)
    names = list(group.commands)  # type: ignore[attr-defined]
    assert {"ingest", "info", "backtest", "train", "score", "explain"} <= set(names)
    for name in names:
        assert main([name, "--help"]) == 0, name
        captured = capsys.readouterr()
        assert "Usage" in captured.out and not captured.err, name


def test_a_file_name_with_markup_is_printed_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["ingest", str(tmp_path / "nofile[/b].csv")]) == 2
    assert _errors(capsys.readouterr().err) == [
        f"error: File {tmp_path / 'nofile[/b].csv'} does not exist: check the path and try again."
    ]
    folder = tmp_path / "a[" / "b]"  # the path reads "a[/b]/[bold]shop.csv"
    folder.mkdir(parents=True)
    odd = folder / "[bold]shop.csv"
    odd.write_text(SHOP, encoding="utf-8")
    db = tmp_path / "s.duckdb"
    assert main(["ingest", str(odd), "--db", str(db)]) == 0
    assert f"{odd} -> events" in capsys.readouterr().out.replace("\n", "")
    from retention.serving.cli._app import console

    monkeypatch.setattr(console, "width", 400)  # the whole path on one line of the table
    assert main(["info", "--db", str(db)]) == 0  # was: a MarkupError from the ingests table
    assert str(odd) in capsys.readouterr().out


def test_a_map_value_and_a_mapping_section_are_echoed_as_written(
    tmp_path: Path, shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "s.duckdb")
    assert main(["ingest", str(shop), "--db", db, "--map", "user_id=[bold]x"]) == 2
    assert "'[bold]x'" in capsys.readouterr().err
    mapping = tmp_path / "m.toml"
    mapping.write_text("[reader]\nfoo = 1\n", encoding="utf-8")
    assert main(["ingest", str(shop), "--db", db, "--mapping", str(mapping)]) == 2
    assert "[reader]" in capsys.readouterr().err


def test_progress_messages_with_markup_do_not_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    import retention._progress as progress

    monkeypatch.setenv("RETENTION_PROGRESS", "1")
    out = io.StringIO()
    monkeypatch.setattr(progress, "_console", Console(file=out, force_terminal=True, width=100))
    with progress.status("ingesting x[/b].csv"):  # was: MarkupError
        pass
    with progress.progress_bar() as bar:
        bar.add_task("scoring [bold]me[/b]", total=1)
        bar.refresh()
    assert "[bold]me[/b]" in out.getvalue()


def test_a_customer_id_with_markup_is_printed_as_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from retention.serving.cli._explain import print_user_explanation

    exp = SimpleNamespace(
        user_id="[bold]u1[/]",
        p_retained=0.5,
        horizon_days=1,
        cutoff=pd.Timestamp("2020-01-01"),
        risk_band="medium",
        model_version="abc",
        source="computed",
        note="",
        churn=[{"text": "bought [red]nothing[/]", "contribution": -0.2}],
        retention=[],
    )
    print_user_explanation(exp)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "Customer [bold]u1[/]: P(retained) 0.50 within 1 day of 2020-01-01" in out
    assert "bought [red]nothing[/]" in out


# ------------------------------------------------------------------------------ warnings
def test_the_same_warning_from_two_places_is_shown_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "The BG/NBD fit is degenerate: a=1e-07 [a -> 0]"

    def fit_one() -> None:
        warnings.warn(text, RetentionWarning, stacklevel=1)

    def fit_two() -> None:
        warnings.warn(text, RetentionWarning, stacklevel=1)

    def command(args: Any, prog_name: str, **kw: Any) -> None:
        fit_one()
        with warnings.catch_warnings():  # what sklearn and friends do: it resets the registry
            warnings.simplefilter("ignore", UserWarning)
        fit_two()
        fit_one()

    monkeypatch.setattr(cli, "app", command)
    assert main([]) == 0
    assert capsys.readouterr().err.splitlines() == [f"warning: {text}"]  # was: three lines
    assert main([]) == 0  # once per command: the next command shows it again
    assert capsys.readouterr().err.splitlines() == [f"warning: {text}"]


def test_the_same_warning_with_other_numbers_is_counted_not_repeated(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def command(args: Any, prog_name: str, **kw: Any) -> None:
        for a in ("4.8e-07", "1.2e-05", "3.1e-07", "4.8e-07"):  # one fit per cutoff
            warnings.warn(f"The BG/NBD fit is degenerate: a={a}", RetentionWarning, stacklevel=1)
        warnings.warn("Thin data: 291 customers", RetentionWarning, stacklevel=1)

    monkeypatch.setattr(cli, "app", command)
    assert main([]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "warning: The BG/NBD fit is degenerate: a=4.8e-07",
        "warning: Thin data: 291 customers",
        "warning: 2 more warnings like the above (the same with other numbers: another fit or "
        "cutoff) were not repeated.",
    ]


# ------------------------------------------------------------------------ one-line failures
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["ingest", "--bogus"], "No such option: --bogus (see `retention ingest --help`)."),
        (["ingest"], "Missing argument 'file' (see `retention ingest --help`)."),
        (["uplift", "evaluate"], "Missing option '--csv'"),
        (["train", "--horizon", "abc"], "'--horizon'"),
        (["train", "--horizon", "0"], "'--horizon'"),
        (["backtest", "--cutoff", "2020-01-01", "--n-train", "0"], "'--n-train'"),
        (["no-such-command"], "No such command"),
        (["datasets"], "no command given: pass one of list, load"),
        (["score", "--horizon"], "requires an argument (see `retention score --help`)."),
        (["--db", "s.duckdb", "info"], "options go after the command: `retention info --db ...`"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    lines = _errors(capsys.readouterr().err)  # was: a usage line, a hint and a boxed panel
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines


def test_an_unexpected_error_is_one_line_and_says_it_is_a_bug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from retention import workflows

    def broken(store: Any) -> None:
        raise KeyError("boom\nsecond line")

    monkeypatch.setattr(workflows, "info", broken)
    monkeypatch.delenv("RETENTION_TRACEBACK", raising=False)
    db = Path(tempfile.mkdtemp()) / "s.duckdb"
    from retention.data import Store

    Store(db).close()
    assert main(["info", "--db", str(db)]) == cli.INTERNAL_ERROR
    lines = _errors(capsys.readouterr().err)
    assert len(lines) == 1 and "internal error: KeyError" in lines[0] and "bug" in lines[0]
    monkeypatch.setenv("RETENTION_TRACEBACK", "1")
    with pytest.raises(KeyError):
        main(["info", "--db", str(db)])


# ------------------------------------------------------------------------------ the store
def test_a_data_file_passed_as_the_store_is_named(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = shop.read_bytes()
    for argv in (["info", "--db", str(shop)], ["ingest", str(shop), "--db", str(shop)]):
        assert main(argv) == 2
        lines = _errors(capsys.readouterr().err)
        # was: "Cannot launch in-memory database in read-only mode!"
        assert len(lines) == 1 and "it is not a DuckDB file" in lines[0], lines
    assert shop.read_bytes() == before


def _as_nobody(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user without write permission (root ignores file modes)."""
    # the command runs once as the user who may write, on a copy, so that every module it needs
    # is imported before the privileges are dropped (Python's own files may be out of reach)
    code = (
        "import contextlib, io, os, shutil, sys\n"
        "from retention.serving.cli import main\n"
        "argv = sys.argv[1:]\n"
        "db = argv[argv.index('--db') + 1]\n"
        "warm = os.path.join(os.getcwd(), 'warm.duckdb')\n"
        "if os.path.exists(db):\n"
        "    shutil.copy(db, warm)\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "    main([warm if a == db else a for a in argv])\n"
        "if os.geteuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "sys.exit(main(argv))\n"
    )
    env = {**os.environ, "RETENTION_PROGRESS": "0", "COLUMNS": "300"}
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_a_read_only_store_names_the_permission(shop: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="retention-ro-"))  # reachable by an unprivileged user
    try:
        work.chmod(0o777)
        data = work / "shop.csv"
        data.write_bytes(shop.read_bytes())
        data.chmod(0o644)
        db = work / "ro.duckdb"
        assert main(["ingest", str(data), "--db", str(db)]) == 0
        db.chmod(0o444)
        proc = _as_nobody(["ingest", str(data), "--db", str(db)], work)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        lines = _errors(proc.stderr)  # was: "... or a new file name"
        assert lines == [
            f"error: Store {db} is read-only (permission denied): chmod u+w {db} or pass "
            "another --db."
        ]
        proc = _as_nobody(["info", "--db", str(db)], work)  # reading needs no write permission
        assert proc.returncode == 0, proc.stderr
        locked = work / "locked"
        locked.mkdir(mode=0o555)
        proc = _as_nobody(["ingest", str(data), "--db", str(locked / "new.duckdb")], work)
        assert proc.returncode == 2 and "not writable (permission denied)" in proc.stderr
        assert not (locked / "new.duckdb").exists()
    finally:
        for p in sorted(work.rglob("*"), reverse=True):
            p.chmod(0o777)
            p.rmdir() if p.is_dir() else p.unlink()
        work.rmdir()


@pytest.mark.slow
def test_info_beside_a_writer_says_to_wait(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"con = duckdb.connect({str(store)!r})\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert main(["info", "--db", str(store)]) == 2
        lines = _errors(capsys.readouterr().err)
        assert len(lines) == 1 and f"PID {holder.pid}" in lines[0], lines
        assert "wait for that command to finish (or stop it)" in lines[0]
        assert "read-only" not in lines[0]  # was: "close it (or open this one read-only)"
    finally:
        holder.communicate("", timeout=60)


def test_score_refuses_the_stores_own_tables_before_scoring(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing_model = tmp_path / "never-trained.retention"  # the table is checked first
    for name in ("events", "Events", "models", "score_reasons", "quarantine"):
        argv = ["score", "--db", str(store), "--model", str(missing_model), "--table", name]
        assert main(argv) == 2
        lines = _errors(capsys.readouterr().err)
        assert len(lines) == 1, lines
        assert f"Table {name!r} is one of the store's own tables (" in lines[0]
        assert "events" in lines[0] and "ingests" in lines[0] and "'scores'" in lines[0]
    with duckdb.connect(str(store), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] > 0


def test_train_checks_out_before_training(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from retention import workflows

    monkeypatch.setattr(workflows, "train", lambda *a, **k: pytest.fail("trained first"))
    assert main(["train", "--db", str(store), "--out", str(tmp_path)]) == 2
    assert _errors(capsys.readouterr().err) == [
        f"error: --out {tmp_path} is a folder: pass a file name, e.g. --out "
        f"{tmp_path / 'model.retention'}."
    ]
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    assert main(["train", "--db", str(store), "--out", str(blocker / "m.retention")]) == 2
    assert "a-file is a file, not a folder" in capsys.readouterr().err
    for argv in (
        ["backtest", "--db", str(store), "--cutoff", "2020-03-01", "--json", str(blocker / "x")],
        ["score", "--db", str(store), "--out", str(tmp_path)],
        ["explain", "--db", str(store), "--user", "u1", "--json", str(tmp_path)],
    ):
        assert main(argv) == 2
        assert "is a f" in capsys.readouterr().err, argv


def test_the_train_workflow_checks_out_before_fitting(store: Path, tmp_path: Path) -> None:
    from retention import workflows
    from retention.exceptions import ConfigError

    with workflows.Store(store) as s, pytest.raises(ConfigError, match="is a folder"):
        workflows.train(s, workflows.TrainRequest(out=tmp_path, model="bgnbd", horizon_days=7))


def test_a_cutoff_after_the_data_is_named_as_given(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(Path(tempfile.mkdtemp()) / "m.retention")
    assert main(["train", "--db", str(store), "--cutoff", "2030-01-01", "--out", out]) == 2
    lines = _errors(capsys.readouterr().err)
    # was: "cutoff 2029-07-05 is after the last event", a training cutoff the user never gave
    assert len(lines) == 1 and "cutoff 2030-01-01 is after the last event" in lines[0], lines


def test_one_day_is_singular(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["backtest", "--db", str(store), "--cutoff", "2020-03-12", "--horizon", "3"]
    assert main([*argv, "--models", "bgnbd", "--n-train", "1"]) == 2
    err = capsys.readouterr().err
    assert "a horizon of at most 1 day." in err and "1 days" not in err  # was: "at most 1 days"


def test_ingest_can_accept_a_file_whose_rows_are_all_quarantined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.csv"
    path.write_text("user_id,ts\nu1,1970-01-01\nu2,1971-05-01\n", encoding="utf-8")
    db = str(tmp_path / "s.duckdb")
    assert main(["ingest", str(path), "--db", db]) == 2
    capsys.readouterr()
    assert main(["ingest", str(path), "--db", db, "--allow-all-quarantined"]) == 0
    capsys.readouterr()
    assert main(["ingest", str(path), "--db", db, "--min-ts", "none"]) == 0
    out = capsys.readouterr().out
    line = next(li for li in out.splitlines() if "= loaded" in li)
    assert line.rstrip(" │").split()[-1] == "2"


def test_a_failed_first_ingest_leaves_no_store(
    tmp_path: Path, shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "new.duckdb"
    assert main(["ingest", str(shop), "--db", str(db), "--map", "user_id=nope"]) == 2
    assert "'nope'" in capsys.readouterr().err
    assert not list(tmp_path.glob("new.duckdb*"))  # was: an empty store file
    # an ingest whose rows were all quarantined keeps its store: the quarantine says why
    old = tmp_path / "old.csv"
    old.write_text("user_id,ts\nu1,1970-01-01\n", encoding="utf-8")
    assert main(["ingest", str(old), "--db", str(db)]) == 2
    capsys.readouterr()
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM quarantine").fetchall() == [(1,)]
