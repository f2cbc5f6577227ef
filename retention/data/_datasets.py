"""Bundled real datasets: a registry, and loaders that turn each one into the event contract.

The files lie compressed in ``retention/data/files/``. Each table a dataset fills is described by a
mapping file next to them (``NAME.TABLE.toml``), read with :meth:`Mapping.from_toml` and applied
by :func:`ingest` or :func:`ingest_frame`: the same mechanism a user applies to their own data.
Where a table needs a reshaping a column map cannot express (one line per user in Amazon Beauty,
one row per product in Online Retail, a click event next to each view in Open Bandit), the loader
first builds a frame with plain SQL over the bundled file and then ingests that frame with its
mapping. Attribution and what is loaded: ``docs/datasets.md``.
"""

from __future__ import annotations

import functools
import gzip
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from retention._progress import progress_bar
from retention.data._ingest import IngestReport, _sha256, ingest, ingest_frame
from retention.data._mapping import Mapping
from retention.data._store import Store
from retention.exceptions import ConfigError, ReadError, StoreError

__all__ = [
    "DatasetInfo",
    "amazon_beauty_items",
    "dataset_path",
    "get_dataset",
    "list_datasets",
    "load_dataset",
]

FILES = Path(__file__).parent / "files"

#: nominal dates for datasets without timestamps (documented in docs/datasets.md)
HILLSTROM_ASSIGNED_TS = pd.Timestamp("2008-03-01")
AMAZON_BEAUTY_START = pd.Timestamp("2000-01-01")

#: where both CDNOW files were published, and the paper that introduced them
_CDNOW_SOURCE = "https://www.brucehardie.com/datasets/"
_CDNOW_CITATION = (
    "Fader, Hardie & Lee (2005). 'Counting Your Customers' the Easy Way. "
    "Marketing Science 24(2), 275-284."
)


@dataclass(frozen=True)
class DatasetInfo:
    """What a bundled dataset is, and where it comes from.

    Attributes
    ----------
    name : str
        The name :func:`load_dataset` takes.
    title : str
        A short human title.
    what : str
        One line: what the data are.
    rows : int
        Rows of the main source file (what ``read`` counts when the main table is loaded).
    unit : str
        What one of those rows is (``"invoice lines"``, ``"customers"``...).
    licence : str
        The licence in a few words (``"none stated"`` when the authors give none; details and
        attribution in ``docs/datasets.md``).
    source : str
        Where the data were published.
    citation : str
        The reference to cite.
    files : tuple of str
        The bundled files, in ``retention/data/files/``.
    tables : tuple of str
        The store tables a load fills.
    """

    name: str
    title: str
    what: str
    rows: int
    unit: str
    licence: str
    source: str
    citation: str
    files: tuple[str, ...]
    tables: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every attribute (tuples as lists)."""
        return {
            "name": self.name,
            "title": self.title,
            "what": self.what,
            "rows": int(self.rows),
            "unit": self.unit,
            "licence": self.licence,
            "source": self.source,
            "citation": self.citation,
            "files": list(self.files),
            "tables": list(self.tables),
        }


_INFOS: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="online_retail",
        title="Online Retail (UCI)",
        what="UK online gift shop, invoice lines 2010-12-01..2011-12-09, with returns",
        rows=541_909,
        unit="invoice lines",
        licence="CC BY 4.0",
        source="https://archive.ics.uci.edu/dataset/352/online+retail (doi:10.24432/C5BW33)",
        citation=(
            "Chen, D. (2015). Online Retail [Dataset]. UCI Machine Learning Repository. "
            "doi:10.24432/C5BW33; Chen, Sain & Guo (2012), J. Database Marketing & Customer "
            "Strategy Management 19(3)."
        ),
        files=("online_retail.parquet",),
        tables=("events", "items", "users"),
    ),
    DatasetInfo(
        name="cdnow_master",
        title="CDNOW master",
        what="CDNOW music store, 23,570 customers of the Q1 1997 cohort, purchases to 1998-06-30",
        rows=69_659,
        unit="purchases",
        licence="none stated",
        source=_CDNOW_SOURCE,
        citation=_CDNOW_CITATION,
        files=("cdnow_master.csv.gz",),
        tables=("events",),
    ),
    DatasetInfo(
        name="cdnow_sample",
        title="CDNOW 1/10 sample",
        what="The 2,357-customer CDNOW sample of Fader, Hardie & Lee (2005)",
        rows=6_919,
        unit="purchases",
        licence="none stated",
        source=_CDNOW_SOURCE,
        citation=_CDNOW_CITATION,
        files=("cdnow_sample.csv.gz",),
        tables=("events", "users"),
    ),
    DatasetInfo(
        name="hillstrom",
        title="Hillstrom e-mail experiment",
        what="64,000 customers randomised to Mens / Womens / No e-mail; visit, conversion, spend",
        rows=64_000,
        unit="customers",
        licence="none stated",
        source="https://blog.minethatdata.com/2008/03/minethatdata-e-mail-analytics-and-data.html",
        citation=(
            "Hillstrom, K. (2008). The MineThatData E-Mail Analytics And Data Mining Challenge."
        ),
        files=("hillstrom.csv.gz",),
        tables=("users", "assignments", "outcomes"),
    ),
    DatasetInfo(
        name="amazon_beauty",
        title="Amazon Beauty sequences",
        what="Amazon Beauty 5-core review sequences (S3-Rec), 22,363 users; order only, no time",
        rows=198_502,
        unit="reviews",
        licence="research use",
        source="https://github.com/RUCAIBox/CIKM2020-S3Rec (data/Beauty.txt)",
        citation=(
            "McAuley et al. (2015), SIGIR; He & McAuley (2016), WWW; "
            "Zhou et al. (2020), S3-Rec, CIKM."
        ),
        files=("amazon_beauty.txt.gz", "amazon_beauty_item2attributes.json.gz"),
        tables=("events", "items"),
    ),
    DatasetInfo(
        name="amazon_musical_instruments",
        title="Amazon Musical Instruments reviews",
        what="Amazon Musical Instruments 5-core reviews (first 5,050), real dates 2004..2014",
        rows=5_050,
        unit="reviews",
        licence="research use",
        source="https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html (2014 release)",
        citation=(
            "He & McAuley (2016), Ups and downs, WWW; McAuley, Targett, Shi & van den Hengel "
            "(2015), SIGIR."
        ),
        files=("amazon_musical_instruments.csv.gz",),
        tables=("events",),
    ),
    DatasetInfo(
        name="open_bandit_random_all",
        title="Open Bandit Dataset (random/all sample)",
        what="ZOZOTOWN recommendations logged by a uniform-random policy (off-policy evaluation)",
        rows=10_000,
        unit="impressions",
        licence="CC BY 4.0",
        source="https://research.zozo.com/data.html (sample shipped in PyPI obp 0.4.1)",
        citation=(
            "Saito, Aihara, Matsutani & Narita (2021). Open Bandit Dataset and Pipeline. "
            "NeurIPS Datasets and Benchmarks."
        ),
        files=("open_bandit_random_all.csv.gz", "open_bandit_random_all_item_context.csv.gz"),
        tables=("bandit_feedback", "events", "items"),
    ),
)

_BY_NAME = {info.name: info for info in _INFOS}


def list_datasets() -> list[DatasetInfo]:
    """The bundled datasets, in a fixed order.

    Returns
    -------
    list of DatasetInfo
        Name, description, row count, licence, source and citation of each dataset.

    Examples
    --------
    >>> [d.name for d in list_datasets()][:2]
    ['online_retail', 'cdnow_master']
    """
    return list(_INFOS)


def get_dataset(name: str) -> DatasetInfo:
    """The description of bundled dataset ``name``.

    Raises
    ------
    ConfigError
        ``name`` is not a bundled dataset; the message lists the names.
    """
    info = _BY_NAME.get(name)
    if info is None:
        names = ", ".join(_BY_NAME)
        raise ConfigError(
            f"Unknown dataset {name!r}. Use one of: {names} (see `retention datasets list`)."
        )
    return info


def dataset_path(name: str, file: str | None = None) -> Path:
    """Path of a bundled file: the first file of dataset ``name``, or ``file`` among its files.

    Parameters
    ----------
    name : str
        A dataset name from :func:`list_datasets`.
    file : str, optional
        One of ``DatasetInfo.files``; default the main file.

    Returns
    -------
    Path
        The file inside the installed package.
    """
    info = get_dataset(name)
    chosen = info.files[0] if file is None else file
    if chosen not in info.files:
        raise ConfigError(
            f"Dataset {name!r} has no file {chosen!r}. Use one of: {', '.join(info.files)}."
        )
    path = FILES / chosen
    if not path.is_file():
        raise ReadError(
            f"The bundled file {path} is missing: the installation of retention is incomplete. "
            "Reinstall the package (pip install --force-reinstall retention)."
        )
    return path


def _mapping(name: str, table: str) -> Mapping:
    return Mapping.from_toml(FILES / f"{name}.{table}.toml")


def _ingest_built(
    store: Store, frame: pd.DataFrame, name: str, table: str, path: Path
) -> IngestReport:
    """Ingest ``frame``, built from the bundled file ``path``, into ``table`` with the dataset's
    mapping for it; ``ingests`` records the file as ``"<file name> (<table>)"``."""
    return ingest_frame(
        store, frame, _mapping(name, table), table=table, source_name=f"{path.name} ({table})"
    )


def _sql_frame(sql: str, **files: Path) -> pd.DataFrame:
    """Run ``sql`` on a private in-memory DuckDB; ``{key}`` placeholders become quoted paths."""
    quoted = {key: "'" + str(path).replace("'", "''") + "'" for key, path in files.items()}
    with duckdb.connect() as con:
        return con.execute(sql.format(**quoted)).df()


# -- one function per dataset: a list of (table, step) run in order by load_dataset --------------

_Step = Callable[[Store], IngestReport]


def _events_only(name: str) -> list[tuple[str, _Step]]:
    """The ``events`` step of a dataset whose main file maps straight onto ``events`` with its
    mapping file: all of CDNOW master and Amazon Musical Instruments, the first step of Online
    Retail and the CDNOW sample."""
    path = dataset_path(name)

    def events(store: Store) -> IngestReport:
        return ingest(store, path, _mapping(name, "events"), table="events")

    return [("events", events)]


def _online_retail() -> list[tuple[str, _Step]]:
    name = "online_retail"
    path = dataset_path(name)

    def items(store: Store) -> IngestReport:
        frame = _sql_frame(
            """
            SELECT StockCode AS stock_code,
                   mode(Description) FILTER (WHERE Description IS NOT NULL) AS description,
                   round(median(UnitPrice) FILTER (WHERE UnitPrice > 0), 2) AS typical_price
            FROM read_parquet({path})
            WHERE StockCode IS NOT NULL
            GROUP BY StockCode
            ORDER BY StockCode
            """,
            path=path,
        )
        return _ingest_built(store, frame, name, "items", path)

    def users(store: Store) -> IngestReport:
        frame = _sql_frame(
            """
            SELECT CustomerID AS customer_id, mode(Country) AS country
            FROM read_parquet({path})
            WHERE CustomerID IS NOT NULL
            GROUP BY CustomerID
            ORDER BY CustomerID
            """,
            path=path,
        )
        return _ingest_built(store, frame, name, "users", path)

    return [*_events_only(name), ("items", items), ("users", users)]


def _cdnow_sample() -> list[tuple[str, _Step]]:
    name = "cdnow_sample"
    path = dataset_path(name)

    def users(store: Store) -> IngestReport:
        frame = _sql_frame(
            """
            SELECT DISTINCT id, cohort FROM read_csv({path}, all_varchar = true) ORDER BY id
            """,
            path=path,
        )
        return _ingest_built(store, frame, name, "users", path)

    return [*_events_only(name), ("users", users)]


_HILLSTROM_COVARIATES = (
    "recency",
    "history_segment",
    "history",
    "mens",
    "womens",
    "zip_code",
    "newbie",
    "channel",
)


def _hillstrom() -> list[tuple[str, _Step]]:
    name = "hillstrom"
    path = dataset_path(name)

    @functools.cache
    def frame() -> pd.DataFrame:  # read once per load, shared by the three tables
        df = pd.read_csv(path, dtype={"zip_code": str, "channel": str, "segment": str})
        df.insert(0, "row_number", (df.index + 1).astype(str))
        df["assigned_ts"] = HILLSTROM_ASSIGNED_TS
        return df

    def users(store: Store) -> IngestReport:
        covariates = frame()[["row_number", *_HILLSTROM_COVARIATES]]
        return _ingest_built(store, covariates, name, "users", path)

    def assignments(store: Store) -> IngestReport:
        return _ingest_built(store, frame(), name, "assignments", path)

    def outcomes(store: Store) -> IngestReport:
        df = frame().melt(
            id_vars=["row_number", "assigned_ts"],
            value_vars=["visit", "conversion", "spend"],
            var_name="metric",
            value_name="value",
        )
        df["value"] = df["value"].astype("float64")
        return _ingest_built(store, df, name, "outcomes", path)

    return [("users", users), ("assignments", assignments), ("outcomes", outcomes)]


def _amazon_beauty() -> list[tuple[str, _Step]]:
    name = "amazon_beauty"
    seq_path = dataset_path(name, "amazon_beauty.txt.gz")
    attr_path = dataset_path(name, "amazon_beauty_item2attributes.json.gz")

    def events(store: Store) -> IngestReport:
        users: list[str] = []
        items: list[str] = []
        positions: list[int] = []
        with gzip.open(seq_path, "rt", encoding="utf-8") as fh:
            for line in fh:
                user, *seq = line.split()
                users.extend([user] * len(seq))
                items.extend(seq)
                positions.extend(range(len(seq)))
        frame = pd.DataFrame({"user": users, "item": items, "position": positions})
        frame["ts"] = AMAZON_BEAUTY_START + pd.to_timedelta(frame["position"], unit="D")
        return _ingest_built(store, frame, name, "events", seq_path)

    def items(store: Store) -> IngestReport:
        frame = amazon_beauty_items().rename(columns={"item_id": "item", "category": "attributes"})
        return _ingest_built(store, frame, name, "items", attr_path)

    return [("events", events), ("items", items)]


def amazon_beauty_items() -> pd.DataFrame:
    """The bundled Amazon Beauty items as the ``items`` table holds them after
    :func:`load_dataset`: ``item_id`` (the ids of the sequences file) and ``category``, the
    item's brand/category attribute ids, space separated (S3-Rec's ``item2attributes``)."""
    path = dataset_path("amazon_beauty", "amazon_beauty_item2attributes.json.gz")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        attrs: dict[str, list[int]] = json.load(fh)
    return pd.DataFrame(
        {
            "item_id": list(attrs),
            "category": [" ".join(str(a) for a in values) for values in attrs.values()],
        }
    )


def _bandit_log(path: Path) -> pd.DataFrame:
    """The Open Bandit log with naive-UTC ``ts``, a hashed ``user_id`` and one affinity list."""
    return _sql_frame(
        """
        SELECT column00 AS row_id,
               timezone('UTC', "timestamp") AS ts,
               substr(md5(concat_ws('|', user_feature_0, user_feature_1,
                                    user_feature_2, user_feature_3)), 1, 16) AS user_id,
               CAST(item_id AS VARCHAR) AS item_id,
               CAST(position AS INTEGER) AS position,
               CAST(click AS INTEGER) AS click,
               propensity_score,
               user_feature_0, user_feature_1, user_feature_2, user_feature_3,
               list_value(*COLUMNS('^user-item_affinity_[0-9]+$')) AS affinity
        FROM read_csv({path}, header = true)
        ORDER BY row_id
        """,
        path=path,
    )


def _open_bandit() -> list[tuple[str, _Step]]:
    name = "open_bandit_random_all"
    log_path = dataset_path(name, "open_bandit_random_all.csv.gz")
    ctx_path = dataset_path(name, "open_bandit_random_all_item_context.csv.gz")

    @functools.cache
    def read_log() -> pd.DataFrame:  # read once per load, shared by bandit_feedback and events
        return _bandit_log(log_path)

    def feedback(store: Store) -> IngestReport:
        raw = read_log().copy()
        raw.insert(0, "dataset", name)
        return _insert_bandit_feedback(store, raw, source=log_path)

    def events(store: Store) -> IngestReport:
        log = read_log()
        views = log.assign(event_type="view")
        clicks = log[log["click"] == 1].assign(event_type="click")
        frame = pd.concat([views, clicks], ignore_index=True)[
            ["row_id", "user_id", "ts", "event_type", "item_id", "position"]
        ]
        return _ingest_built(store, frame, name, "events", log_path)

    def items(store: Store) -> IngestReport:
        frame = _sql_frame(
            """
            SELECT CAST(item_id AS VARCHAR) AS item_id,
                   concat_ws(' ', item_feature_1, item_feature_2, item_feature_3) AS features,
                   'item_feature_0=' || CAST(item_feature_0 AS VARCHAR) AS description
            FROM read_csv({path}, header = true)
            ORDER BY item_id
            """,
            path=ctx_path,
        )
        return _ingest_built(store, frame, name, "items", ctx_path)

    return [("bandit_feedback", feedback), ("events", events), ("items", items)]


def _insert_bandit_feedback(store: Store, log: pd.DataFrame, source: Path) -> IngestReport:
    """Append the raw bandit log to ``bandit_feedback`` in one transaction, with its accounting.

    Rows whose ``(dataset, row_id)`` is already stored count as duplicates. The ingest is logged
    in ``ingests`` like any other, so ``retention info`` shows it.
    """
    if store.read_only:
        raise StoreError(
            f"Store {store.path} is open read-only: open it with read_only=False to load data."
        )
    con = store.con
    started = time.perf_counter()
    started_at = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()
    con.execute("BEGIN TRANSACTION")
    try:
        ingest_id = _count(con, "SELECT coalesce(max(ingest_id), 0) + 1 FROM ingests")
        log = log.assign(ingest_id=ingest_id)
        con.register("__retention_bandit_log", log)
        try:
            loaded = _count(
                con,
                """INSERT INTO bandit_feedback BY NAME
                SELECT * FROM __retention_bandit_log s
                WHERE NOT EXISTS (SELECT 1 FROM bandit_feedback t
                                  WHERE t.dataset = s.dataset AND t.row_id = s.row_id)""",
            )
        finally:
            con.unregister("__retention_bandit_log")
        report = IngestReport(
            ingest_id=ingest_id,
            file=str(source),
            table="bandit_feedback",
            sha256=_sha256(source)[0],
            read=len(log),
            loaded=loaded,
            duplicates=len(log) - loaded,
            quarantined=0,
            reasons={},
            seconds=time.perf_counter() - started,
            columns={c: c for c in log.columns if c != "ingest_id"},
        )
        con.execute(
            "INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                report.ingest_id,
                report.file,
                report.table,
                report.sha256,
                report.read,
                report.loaded,
                report.duplicates,
                report.quarantined,
                "{}",
                started_at,
                report.seconds,
            ],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return report


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    rows = con.execute(sql).fetchall()  # fetch all: DuckDB 2 refuses new work on a pending result
    return int(rows[0][0]) if rows else 0


_LOADERS: dict[str, Callable[[], list[tuple[str, _Step]]]] = {
    "online_retail": _online_retail,
    "cdnow_master": lambda: _events_only("cdnow_master"),
    "cdnow_sample": _cdnow_sample,
    "hillstrom": _hillstrom,
    "amazon_beauty": _amazon_beauty,
    "amazon_musical_instruments": lambda: _events_only("amazon_musical_instruments"),
    "open_bandit_random_all": _open_bandit,
}


def load_dataset(name: str, store: Store) -> list[IngestReport]:
    """Load a bundled dataset into ``store``, one ingest per table.

    Loading is idempotent: every row gets a stable id, so a second load reports everything as
    duplicates and adds nothing.

    Parameters
    ----------
    name : str
        One of the names of :func:`list_datasets`.
    store : Store
        An open, writable store.

    Returns
    -------
    list of IngestReport
        One report per table loaded, in order; each satisfies
        ``read == loaded + duplicates + quarantined``.

    Raises
    ------
    ConfigError
        ``name`` is not a bundled dataset (the message lists the names).

    Examples
    --------
    >>> from retention.data import Store, load_dataset
    >>> with Store("cdnow.duckdb") as store:  # doctest: +SKIP
    ...     [r.loaded for r in load_dataset("cdnow_sample", store)]
    [6919, 2357]
    """
    get_dataset(name)
    steps = _LOADERS[name]()
    reports: list[IngestReport] = []
    with progress_bar() as bar:
        task = bar.add_task(f"{name}: loading", total=len(steps))
        for table, step in steps:
            bar.update(task, description=f"{name}: {table}")
            reports.append(step(store))
            bar.advance(task)
    return reports
