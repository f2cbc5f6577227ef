"""A fuzz test of the whole CLI (issue 10): hypothesis draws argument lists and small files for
``ingest``, ``info``, ``backtest``, ``train``, ``score`` and ``explain``, and after every command:

* no traceback reaches the user, and the exit status is 0 or 2 (70 is an internal error: a bug);
* a failure prints exactly one line on stderr, ``error: ...`` (besides one-line warnings), and a
  success none;
* the store's accounting holds: per ingest, rows read = loaded + duplicates + quarantined, and
  the events table holds as many rows as the ingests into it loaded;
* a failed ingest into a store that did not exist leaves no store file, unless it recorded its
  quarantine.

The commands run in-process (``main([...])``); the examples are bounded (``max_examples``, a
generous ``deadline`` for a shared machine), so the file takes a few tens of seconds.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import string
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import retention.data
from retention.serving.cli import main

pytestmark = pytest.mark.slow

#: bounded for `make test`: an ingest takes a fraction of a second, a command up to a few seconds
#: on the slice; the deadline only catches a hang on a busy shared machine
# bounded for `make test`: an ingest takes a fraction of a second and a command a second or two
# on the slice (a few tens of seconds in all); the deadline only catches a hang
_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
FUZZ_INGEST = settings(
    max_examples=30, deadline=timedelta(seconds=60), suppress_health_check=_SUPPRESS
)
FUZZ_COMMANDS = settings(
    max_examples=15, deadline=timedelta(seconds=60), suppress_health_check=_SUPPRESS
)

# ---------------------------------------------------------------------------- the world
# A small real slice (the CDNOW sample's customers with an id below 03000: about 290 customers
# and 900 purchases), a model trained on it, and files a careless user would pass.


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("cli-fuzz")
    src = Path(retention.data.__file__).parent / "files" / "cdnow_sample.csv.gz"
    with gzip.open(src, "rt", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["id"] < "03000"]
    data = root / "slice.csv"
    with data.open("w", encoding="utf-8", newline="") as out:
        out.write("user_id,ts,quantity,amount\n")
        for r in rows:
            d = r["date"]
            out.write(f"{r['id']},{d[:4]}-{d[4:6]}-{d[6:]},{r['cds']},{r['dollars']}\n")
    base = root / "base.duckdb"
    model = root / "m.retention"
    assert main(["ingest", str(data), "--db", str(base)]) == 0
    argv = ["train", "--db", str(base), "--model", "gbdt_rfm", "--horizon", "60"]
    assert main([*argv, "--n-train", "1", "--out", str(model)]) == 0
    junk = root / "junk.retention"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    empty = root / "empty.duckdb"
    empty.write_bytes(b"")
    folder = root / "folder"
    folder.mkdir()
    yield {
        "root": root,
        "data": data,
        "base": base,
        "model": model,
        "junk": junk,
        "empty": empty,
        "folder": folder,
        "fuzz": root / "fuzz.duckdb",
    }


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _check_output(argv: list[str], code: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err, (argv, err)
    assert code in (0, 2), (argv, code, err)  # 70: an internal error reached main
    lines = [li for li in err.splitlines() if li.strip()]
    strays = [li for li in lines if not li.startswith(("warning: ", "error: "))]
    assert not strays, (argv, strays)
    errors = [li for li in lines if li.startswith("error: ")]
    assert len(errors) == (0 if code == 0 else 1), (argv, code, errors)


def _check_accounting(db: Path) -> None:
    """rows read = loaded + duplicates + quarantined per ingest; events = what was loaded."""
    if not db.is_file() or db.stat().st_size == 0:
        return
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return  # not a DuckDB file (a data file passed as --db): the CLI left it alone
    with con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "ingests" not in tables:
            return
        bad = con.execute(
            "SELECT ingest_id, read, loaded, duplicates, quarantined FROM ingests "
            "WHERE read IS DISTINCT FROM loaded + duplicates + quarantined"
        ).fetchall()
        assert not bad, bad
        ((events,),) = con.execute("SELECT count(*) FROM events").fetchall()
        ((loaded,),) = con.execute(
            "SELECT coalesce(sum(loaded), 0) FROM ingests WHERE table_name = 'events'"
        ).fetchall()
        assert events == loaded, (events, loaded)


# ----------------------------------------------------------------------------- files
USERS = st.sampled_from(["u1", "u2", "u3", "", " ", "[b]u4[/b]", "ü5", "u,6", 'u"7', "NULL"])
TIMES = st.sampled_from(
    [
        "2020-01-05",
        "2020-02-10 10:30:00",
        "2020-03-01T08:00:00Z",
        "2019-12-31",
        "2020-13-45",
        "",
        "1970-01-01",
        "0001-01-01",
        "1600000000",
        "1600000000000",
        "31/12/2020",
        "2099-01-01",
        "nan",
    ]
)
AMOUNTS = st.sampled_from(["", "5", "5.25", "-3", "1e309", "nan", "abc", "12.345", "0"])
TYPES = st.sampled_from(["purchase", "view", "return", "", "[x]", "sale"])
HEADERS = st.sampled_from(
    [
        ("user_id", "ts", "amount"),
        ("user_id", "ts", "amount"),
        ("user_id", "ts", "event_type", "amount"),
        ("user_id", "ts", "event_type", "amount"),
        ("ts", "user_id"),
        ("CustomerID", "InvoiceDate", "Amount"),
        ("user_id", "user_id", "ts"),
        ("a",),
    ]
)
CELLS = {
    "user_id": USERS,
    "CustomerID": USERS,
    "ts": TIMES,
    "InvoiceDate": TIMES,
    "amount": AMOUNTS,
    "Amount": AMOUNTS,
    "event_type": TYPES,
}


@st.composite
def data_files(draw: st.DrawFn, folder: Path) -> Path:
    """A small CSV, TSV, JSON Lines or junk file, sometimes gzipped, sometimes broken."""
    kind = draw(st.sampled_from(["csv"] * 5 + ["tsv", "jsonl", "jsonl", "junk", "empty"]))
    header = draw(HEADERS)
    rows = draw(
        st.lists(
            st.tuples(*(CELLS.get(c, st.text(string.printable, max_size=4)) for c in header)),
            min_size=0,
            max_size=12,
        )
    )
    name = f"f{draw(st.integers(0, 10**9))}"
    if kind == "empty":
        path = folder / f"{name}.csv"
        path.write_bytes(b"")
        return path
    if kind == "junk":
        path = folder / f"{name}.{draw(st.sampled_from(['csv', 'parquet', 'jsonl', 'txt']))}"
        path.write_bytes(draw(st.binary(min_size=1, max_size=200)))
        return path
    if kind == "jsonl":
        lines = []
        for row in rows:
            rec: dict[str, Any] = dict(zip(header, row, strict=True))
            if draw(st.booleans()) and rec.get("ts", "").isdigit():
                rec["ts"] = int(rec["ts"])  # epoch as a JSON number
            lines.append(json.dumps(rec))
        text = "\n".join(lines) + ("\n" if lines else "")
        path = folder / f"{name}.jsonl"
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="\t" if kind == "tsv" else ",", lineterminator="\n")
        if draw(st.booleans()) or not rows:
            writer.writerow(header)
        writer.writerows(rows)
        text = buf.getvalue()
        damage = draw(st.sampled_from(["none"] * 4 + ["quote", "nul", "extra", "crlf"]))
        if damage == "quote":
            text += 'u9,2020-01-01,"5\n'
        elif damage == "nul":
            text = text.replace("u", "u\x00", 1)
        elif damage == "extra":
            text += "u9,2020-01-01,5,6,7\n"
        elif damage == "crlf":
            text = text.replace("\n", "\r\n")
        path = folder / f"{name}.{'tsv' if kind == 'tsv' else 'csv'}"
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["latin-1", "utf-16"]))
    raw = text.encode(encoding, "replace")
    if draw(st.integers(0, 5)) == 0:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


#: what a user maps, the usual first and the careless or hostile after
GOOD_MAPS = st.sampled_from(
    [
        "user_id=CustomerID",
        "ts=InvoiceDate",
        "amount=Amount",
        "amount=abs(amount)",
        "user_id=lower(user_id)",
        "event_type=event_type",
        "item_id=ts",
        "ts=try_strptime(ts, '%Y-%m-%d')",
    ]
)
BAD_MAPS = st.sampled_from(
    [
        "ts=InvoiceDate",
        "amount=Amount",
        "amount=abs(amount)",
        "ts=strptime(ts, '%Y-%m-%d')",
        "user_id=lower(user_id)",
        "event_type=event_type",
        "ts=epoch_ms(ts)",
        "ts=read_csv('x')",
        "user_id=",
        "=x",
        "bogus=1",
        "amount=amount +",
        "user_id=[bold]x",
        "user_id=(SELECT 1)",
    ]
)
GOOD_OPTIONS = st.sampled_from(
    [
        ["--allow-all-quarantined"],
        ["--delimiter", ","],
        ["--encoding", "latin-1"],
        ["--ts-format", "%Y-%m-%d"],
        ["--min-ts", "none"],
        ["--min-ts", "2020-02-01"],
        ["--event-type", "sale=purchase"],
        ["--event-type", "view=purchase"],
    ]
)
BAD_OPTIONS = st.sampled_from(
    [
        ["--strict"],
        ["--allow-all-quarantined"],
        ["--delimiter", ","],
        ["--delimiter", ";;"],
        ["--delimiter", "\t"],
        ["--encoding", "latin-1"],
        ["--encoding", "utf-16"],
        ["--encoding", "klingon"],
        ["--ts-format", "%Y-%m-%d"],
        ["--ts-format", "epoch_s"],
        ["--ts-format", "%Q"],
        ["--min-ts", "none"],
        ["--min-ts", "2020-02-01"],
        ["--min-ts", "soon"],
        ["--table", "items"],
        ["--table", "users"],
        ["--table", "quarantine"],
        ["--event-type", "sale=purchase"],
        ["--event-type", "view"],
        ["--mapping", "/nonexistent.toml"],
        ["--bogus"],
        ["extra-positional"],
    ]
)


@given(data=st.data())
@FUZZ_INGEST
def test_fuzz_ingest_and_info(
    data: st.DataObject, world: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = data.draw(data_files(world["root"]))
    fresh = world["root"] / f"new{data.draw(st.integers(0, 10**9))}.duckdb"
    db = data.draw(st.sampled_from([world["fuzz"], world["fuzz"], fresh]))
    existed = db.exists()
    careless = data.draw(st.integers(0, 3)) == 0
    groups: list[list[str]] = [[str(path)], ["--db", str(db)]]
    for m in data.draw(st.lists(BAD_MAPS if careless else GOOD_MAPS, max_size=2)):
        groups.append(["--map", m])
    for opt in data.draw(st.lists(BAD_OPTIONS if careless else GOOD_OPTIONS, max_size=2)):
        groups.append(opt)
    # options in any order; now and then their words too, which splits a flag from its value
    args = [w for g in data.draw(st.permutations(groups)) for w in g]
    if data.draw(st.integers(0, 9)) == 0:
        args = data.draw(st.permutations(args))
    argv = ["ingest", *args]
    code, out, err = _run(argv, capsys)
    _check_output(argv, code, out, err)
    _check_accounting(db)
    if code != 0 and not existed and db.exists():
        with duckdb.connect(str(db), read_only=True) as con:
            ((n,),) = con.execute("SELECT count(*) FROM ingests").fetchall()
        assert n > 0, (argv, err)  # only a recorded (all-quarantined) ingest keeps the store
    code, out, err = _run(["info", "--db", str(db)], capsys)
    _check_output(["info"], code, out, err)


# ---------------------------------------------------------------------------- commands
#: (plausible, careless) values of each option: a command draws from the first most of the time
CUTOFFS = (
    ["1998-01-01", "1997-10-01", "1998-06-01"],
    ["2030-01-01", "1990-01-01", "1998-02-30", "01/01/1998", "1998-01-01T10:00", "", "never"],
)
HORIZONS = (["60", "30", "14"], ["1", "0", "-5", "100000", "abc", "60.5"])
N_TRAIN = (["1"], ["0", "x", "-1"])
MODELS = (["bgnbd", "bgnbd,gbdt_rfm", "gbdt_rfm,ensemble"], ["nope", ",", "bgnbd,bgnbd", ""])
TRAIN_MODELS = (["bgnbd", "gbdt_rfm"], ["nope", "", "ensemble,gbdt"])
USERS_ = (["00004", "00018", "00021"], ["nobody", "[b]x[/b]", "", " 00004"])
TABLES = (["scores", "scores_fuzz"], ["events", "Models", "a-b", "", "score_reasons"])


@st.composite
def commands(draw: st.DrawFn, world: dict[str, Path]) -> list[str]:
    """An argument list for one of the commands, mostly plausible, sometimes careless."""
    root = world["root"]
    careless = draw(st.integers(0, 3)) == 0

    def pick(pools: tuple[list[Any], list[Any]]) -> Any:
        good, bad = pools
        return draw(st.sampled_from(bad if careless and draw(st.booleans()) else good))

    def maybe(flag: str, pools: tuple[list[Any], list[Any]]) -> None:
        if draw(st.booleans()):
            args.extend([flag, str(pick(pools))])

    command = draw(st.sampled_from(["info", "backtest", "train", "score", "explain", "ingest"]))
    db = pick(
        ([world["base"]], [root / "missing.duckdb", world["folder"], world["data"], world["empty"]])
    )
    args: list[str] = ["--db", str(db)]
    model = (
        [world["model"]],
        [root / "none.retention", world["junk"], world["folder"], world["data"]],
    )
    if command == "backtest":
        args += ["--cutoff", pick(CUTOFFS), "--n-train", pick(N_TRAIN), "--models", pick(MODELS)]
        maybe("--horizon", HORIZONS)
        maybe("--json", ([root / "bt" / "m.json"], [world["data"] / "m.json", world["folder"]]))
    elif command == "train":
        args += ["--model", pick(TRAIN_MODELS), "--n-train", pick(N_TRAIN)]
        maybe("--cutoff", CUTOFFS)
        maybe("--horizon", HORIZONS)
        args += [
            "--out",
            str(
                pick(([root / "out" / "m2.retention"], [world["folder"], world["data"] / "x", ""]))
            ),
        ]
    elif command == "score":
        args += ["--model", str(pick(model))]
        maybe("--cutoff", CUTOFFS)
        maybe("--horizon", (["60"], HORIZONS[0] + HORIZONS[1]))
        maybe("--table", TABLES)
        maybe("--out", ([root / "s.csv", root / "s.parquet"], [root / "s.txt", world["folder"]]))
    elif command == "explain":
        args += ["--model", str(pick(model))]
        mode = pick((["user", "user", "store"], ["report", "none"]))
        if mode == "user":
            args += ["--user", pick(USERS_)]
        elif mode == "store":
            args += ["--store-reasons"]
        elif mode == "report":
            args += ["--report", str(root / "ex.html")]
        maybe("--cutoff", CUTOFFS)
        maybe("--json", ([root / "ex.json"], [world["folder"]]))
    elif command == "ingest":
        args = [str(pick(([world["data"]], [world["junk"], root / "gone.csv"]))), *args]
    if careless and draw(st.booleans()):
        extra = draw(
            st.sampled_from([["--bogus"], ["stray"], ["--db"], ["--horizon", "7", "--horizon"]])
        )
        args.insert(draw(st.integers(0, len(args))), extra[0])
        args += extra[1:]
    return [command, *args]


@given(data=st.data())
@FUZZ_COMMANDS
def test_fuzz_commands(
    data: st.DataObject, world: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = data.draw(commands(world))
    code, out, err = _run(argv, capsys)
    _check_output(argv, code, out, err)
    _check_accounting(world["base"])
