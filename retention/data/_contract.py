"""The event contract (DESIGN.md) and the side tables, as data.

Each table the store accepts from files is described by a :class:`TableSpec`: its canonical
columns, which are required, how each is parsed and validated (its *kind*), and its key (the
columns that make a row unique; re-ingesting a key is a duplicate).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COLUMN_SYNONYMS",
    "EVENT_TYPES",
    "TABLES",
    "ColumnSpec",
    "TableSpec",
    "table_spec",
]

#: event types that pass without a value map
EVENT_TYPES: tuple[str, ...] = ("view", "cart", "purchase", "return", "review")


@dataclass(frozen=True)
class ColumnSpec:
    """One canonical column.

    Attributes
    ----------
    name : str
        Canonical name.
    kind : str
        How values are parsed and validated: ``id`` (string identifier; integral floats such as
        ``17850.0`` become ``"17850"``), ``text``, ``ts`` (timestamp, naive UTC, not in the future),
        ``double``, ``money`` (``DECIMAL(18,2)``, never negative), ``rating`` (1 to 5) or
        ``event_type`` (canonical names or the mapping's value map).
    sql_type : str
        DuckDB type in the store.
    required : bool
        A row without a value is quarantined; a file without the column is refused.
    """

    name: str
    kind: str
    sql_type: str
    required: bool = False


@dataclass(frozen=True)
class TableSpec:
    """A table that ``ingest`` writes.

    Attributes
    ----------
    name : str
        Table name in the store.
    columns : tuple of ColumnSpec
        Canonical columns, in store order.
    key : tuple of str
        Columns that identify a row; a row whose key is already stored counts as a duplicate and
        the stored row is kept (first write wins).
    extra_columns : bool
        Source columns that no mapping uses are kept as extra ``VARCHAR`` columns (``users``).
    """

    name: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...]
    extra_columns: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """Canonical column names."""
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        """Names of the required columns."""
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> ColumnSpec:
        """The spec of column ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


EVENTS = TableSpec(
    name="events",
    columns=(
        ColumnSpec("event_id", "id", "VARCHAR"),
        ColumnSpec("user_id", "id", "VARCHAR", required=True),
        ColumnSpec("ts", "ts", "TIMESTAMP", required=True),
        ColumnSpec("event_type", "event_type", "VARCHAR"),
        ColumnSpec("item_id", "id", "VARCHAR"),
        ColumnSpec("order_id", "id", "VARCHAR"),
        ColumnSpec("quantity", "double", "DOUBLE"),
        ColumnSpec("amount", "money", "DECIMAL(18,2)"),
        ColumnSpec("rating", "rating", "DOUBLE"),
        ColumnSpec("text", "text", "VARCHAR"),
    ),
    key=("event_id",),
)

ITEMS = TableSpec(
    name="items",
    columns=(
        ColumnSpec("item_id", "id", "VARCHAR", required=True),
        ColumnSpec("title", "text", "VARCHAR"),
        ColumnSpec("description", "text", "VARCHAR"),
        ColumnSpec("category", "text", "VARCHAR"),
        ColumnSpec("price", "money", "DECIMAL(18,2)"),
    ),
    key=("item_id",),
)

USERS = TableSpec(
    name="users",
    columns=(
        ColumnSpec("user_id", "id", "VARCHAR", required=True),
        ColumnSpec("signup_ts", "ts", "TIMESTAMP"),
        ColumnSpec("country", "text", "VARCHAR"),
    ),
    key=("user_id",),
    extra_columns=True,
)

ASSIGNMENTS = TableSpec(
    name="assignments",
    columns=(
        ColumnSpec("experiment_id", "id", "VARCHAR", required=True),
        ColumnSpec("user_id", "id", "VARCHAR", required=True),
        ColumnSpec("variant", "id", "VARCHAR", required=True),
        ColumnSpec("assigned_ts", "ts", "TIMESTAMP"),
    ),
    key=("experiment_id", "user_id"),
)

OUTCOMES = TableSpec(
    name="outcomes",
    columns=(
        ColumnSpec("experiment_id", "id", "VARCHAR", required=True),
        ColumnSpec("user_id", "id", "VARCHAR", required=True),
        ColumnSpec("metric", "id", "VARCHAR", required=True),
        ColumnSpec("value", "double", "DOUBLE", required=True),
    ),
    key=("experiment_id", "user_id", "metric"),
)

#: source column names that often hold a canonical column (compared in lower case, letters and
#: digits only): a file without the canonical column whose column by one of these names would go
#: unread is told the ``--map`` that reads it (never mapped without being asked)
COLUMN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "user_id": (
        "customer", "customerid", "client", "clientid", "user", "userid", "member", "memberid",
        "account", "accountid", "shopper", "shopperid", "buyer", "buyerid", "visitor",
        "visitorid", "reviewerid",
    ),
    "ts": (
        "timestamp", "time", "date", "datetime", "eventtime", "eventdate", "createdat",
        "orderdate", "invoicedate", "purchasedate", "unixreviewtime",
    ),
    "event_type": (
        "event", "type", "kind", "action", "eventname", "activity", "behavior", "behaviour",
    ),
    "item_id": (
        "item", "itemid", "product", "productid", "sku", "asin", "stockcode", "article",
        "articleid",
    ),
    "order_id": (
        "order", "orderid", "orderref", "invoice", "invoiceno", "invoiceid", "transaction",
        "transactionid", "basket", "basketid", "receipt",
    ),
    "quantity": ("qty", "units", "count", "quantityordered"),
    "amount": (
        "price", "unitprice", "revenue", "value", "total", "sales", "spend", "linetotal",
        "ordervalue", "gmv", "paid",
    ),
    "rating": ("score", "stars", "reviewscore", "overall"),
    "text": ("review", "reviewtext", "comment", "body", "message", "reviewbody", "content"),
    "title": ("name", "productname", "itemname"),
    "category": ("categoryname", "productcategory", "department"),
    "price": ("unitprice", "listprice"),
    "signup_ts": ("signup", "signupdate", "registered", "registrationdate", "createdat"),
}  # fmt: skip

#: every table ``ingest`` can write, by name
TABLES: dict[str, TableSpec] = {t.name: t for t in (EVENTS, ITEMS, USERS, ASSIGNMENTS, OUTCOMES)}


def table_spec(name: str) -> TableSpec:
    """The spec of table ``name``; a :class:`~retention.exceptions.ConfigError` when unknown."""
    from retention.exceptions import ConfigError

    try:
        return TABLES[name]
    except KeyError:
        raise ConfigError(
            f"Unknown table {name!r}: data can be ingested into {', '.join(TABLES)}. "
            "Pass one of these with --table."
        ) from None
