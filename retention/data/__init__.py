"""data stage: the event contract, readers, validation with quarantine, and the DuckDB store.

>>> from retention.data import Mapping, Store, ingest  # doctest: +SKIP
>>> with Store("retention.duckdb") as store:  # doctest: +SKIP
...     report = ingest(store, "orders.csv", Mapping.from_cli(["user_id=CustomerID"]))
"""

from retention.data._contract import (
    COLUMN_SYNONYMS,
    EVENT_TYPES,
    TABLES,
    ColumnSpec,
    TableSpec,
    table_spec,
)
from retention.data._datasets import (
    DatasetInfo,
    amazon_beauty_items,
    dataset_path,
    get_dataset,
    list_datasets,
    load_dataset,
)
from retention.data._expr import MAP_FUNCTIONS, MAP_WINDOW_FUNCTIONS
from retention.data._ingest import IngestReport, ingest, ingest_frame
from retention.data._mapping import EPOCH_UNITS, FORMATS, Mapping
from retention.data._readers import check_file
from retention.data._store import (
    MODEL_STAGES,
    SCHEMA_VERSION,
    TABLE_COLUMNS,
    ModelRecord,
    Store,
    store_info,
)

__all__ = [
    "COLUMN_SYNONYMS",
    "EPOCH_UNITS",
    "EVENT_TYPES",
    "FORMATS",
    "MAP_FUNCTIONS",
    "MAP_WINDOW_FUNCTIONS",
    "MODEL_STAGES",
    "SCHEMA_VERSION",
    "TABLES",
    "TABLE_COLUMNS",
    "ColumnSpec",
    "DatasetInfo",
    "IngestReport",
    "Mapping",
    "ModelRecord",
    "Store",
    "TableSpec",
    "amazon_beauty_items",
    "check_file",
    "dataset_path",
    "get_dataset",
    "ingest",
    "ingest_frame",
    "list_datasets",
    "load_dataset",
    "store_info",
    "table_spec",
]
