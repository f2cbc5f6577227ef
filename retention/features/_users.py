"""User attributes from the ``users`` side table, encoded as numbers without leakage.

The ``users`` table (``user_id, signup_ts, country, ...``) holds static attributes. Encodings
that learn from data (country frequencies, which countries get a one-hot column) are computed
over the population at the cutoff only: customers with a purchase before it.
"""

from __future__ import annotations

from typing import Any

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from retention.exceptions import SchemaError
from retention.features._families import slug

__all__ = ["BOOKKEEPING_COLUMNS", "slug", "user_attributes"]

#: columns the store keeps for its own bookkeeping (which ingest wrote the row, when): never
#: features, since they describe how the data was loaded, not the customer (a model trained on
#: them fails or misleads on a store loaded another way)
BOOKKEEPING_COLUMNS: frozenset[str] = frozenset({"user_id", "ingest_id", "event_id"})

_DAY = pd.Timedelta(days=1)
#: a string column with more distinct values than this (and than half the rows) looks like an id
_MAX_LEVELS = 1000


def _days_before(values: pd.Series, cutoff: pd.Timestamp) -> pd.Series:
    stamps = pd.to_datetime(values, errors="coerce")
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    days = (cutoff - stamps.astype("datetime64[ns]")) / _DAY
    return days.where(stamps < cutoff)


def user_attributes(
    backend: Any,
    population_expr: ir.Table,
    population: pd.Index,
    cutoff: pd.Timestamp,
    *,
    countries: list[str] | None = None,
    n_countries: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """``user_*`` columns for ``population``.

    - ``user_days_since_signup``: days from ``signup_ts`` to the cutoff (NaN when unknown or
      not before the cutoff); other timestamp columns give ``user_<col>_days`` the same way.
    - ``user_country_freq``: share of the population in the customer's country (NaN when the
      country is unknown); ``user_country_<name>``: 1.0/0.0 for each country in ``countries``
      (default the ``n_countries`` most common in the population).
    - other numeric columns as ``user_<col>``; other string columns with few distinct values as
      ``user_<col>_freq`` (frequency encoding over the population).

    A column that is NaN for the whole population (no user rows, an empty attribute) is left
    out, and so are the store's bookkeeping columns (:data:`BOOKKEEPING_COLUMNS`, such as
    ``ingest_id``, and any column whose name starts with ``_``).

    Parameters
    ----------
    backend : Ibis backend
        Holds the ``users`` table.
    population_expr : ibis Table
        One column ``user_id``: the population, to filter ``users`` in the engine.
    population : pd.Index
        The same population, in output order.
    cutoff : pd.Timestamp
        The cutoff.
    countries : list of str, optional
        Countries that get a one-hot column.
    n_countries : int, default 0
        How many countries get one when ``countries`` is None.

    Returns
    -------
    features : pd.DataFrame
        Indexed like ``population``.
    countries : list of str
        The countries that got a one-hot column.
    """
    users = backend.table("users")
    schema = users.schema()
    if "user_id" not in schema:
        raise SchemaError(
            f"the users table has no user_id column (it has {', '.join(schema.names)}); "
            "name the customer column user_id."
        )
    users = users.mutate(user_id=users.user_id.cast("string"))
    users = users.semi_join(population_expr, "user_id")
    df = users.to_pandas()
    df["user_id"] = df["user_id"].astype(str)
    df = df.sort_values("user_id", kind="stable").drop_duplicates("user_id")
    df = df.set_index("user_id").reindex(population)
    n = max(len(population), 1)
    out: dict[str, pd.Series] = {}
    chosen: list[str] = []
    for column in df.columns:
        if str(column) in BOOKKEEPING_COLUMNS or str(column).startswith("_"):
            continue
        values = df[column]
        dtype = schema[column]
        if column == "signup_ts" and (dtype.is_timestamp() or dtype.is_date()):
            out["user_days_since_signup"] = _days_before(values, cutoff)
        elif column == "country":
            names = values.astype("object").where(values.notna())
            counts = names.value_counts()
            out["user_country_freq"] = names.map(counts / n).astype("float64")
            if countries is None:
                ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
                chosen = [str(name) for name, _count in ranked[: max(int(n_countries), 0)]]
            else:
                chosen = [str(c) for c in countries]
            used: set[str] = set()
            for country in chosen:
                name = f"user_country_{slug(country)}"
                while name in used:
                    name += "_"
                used.add(name)
                out[name] = (names == country).astype("float64")
        elif dtype.is_timestamp() or dtype.is_date():
            out[f"user_{slug(column)}_days"] = _days_before(values, cutoff)
        elif dtype.is_numeric() or dtype.is_boolean():
            out[f"user_{slug(column)}"] = pd.to_numeric(values, errors="coerce").astype("float64")
        elif dtype.is_string():
            names = values.astype("object").where(values.notna())
            counts = names.value_counts()
            if len(counts) > _MAX_LEVELS and len(counts) > len(df) // 2:
                continue  # an identifier or free text, not a category
            out[f"user_{slug(column)}_freq"] = names.map(counts / n).astype("float64")
    frame = pd.DataFrame(out, index=population).astype(np.float64)
    # an attribute nobody in the population has (an empty users table, say) is left out
    frame = frame.loc[:, frame.notna().any()]
    return frame, chosen
