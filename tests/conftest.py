"""Shared fixtures. Every test runs offline and without progress bars."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["RETENTION_PROGRESS"] = "0"
# run tracking (MLflow) off: tests/workflows/test_tracking.py turns it on where it is tested
os.environ["RETENTION_TRACKING"] = "0"


# -- bundled datasets (owner: datasets) ------------------------------------------------------------
# Session-scoped stores built once from the data bundled in the package. Treat them as read-only:
# open them with ``Store(path, read_only=True)`` (or use ``retail_store``), or copy the file to
# ``tmp_path`` before writing.
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _bundled_store(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    from retention.data import Store, load_dataset

    path = tmp_path_factory.mktemp(name) / f"{name}.duckdb"
    with Store(path) as store:
        load_dataset(name, store)
    return path


@pytest.fixture(scope="session")
def retail_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a store with the bundled Online Retail (UCI) loaded: events, items, users."""
    return _bundled_store(tmp_path_factory, "online_retail")


@pytest.fixture(scope="session")
def retail_store(retail_db: Path) -> Iterator[Any]:
    """An open read-only ``Store`` on ``retail_db`` (do not open that file for writing too)."""
    from retention.data import Store

    with Store(retail_db, read_only=True) as store:
        yield store


@pytest.fixture(scope="session")
def cdnow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a store with the bundled CDNOW 1/10 sample (2,357 customers) loaded."""
    return _bundled_store(tmp_path_factory, "cdnow_sample")


@pytest.fixture(scope="session")
def cdnow_master_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a store with the bundled CDNOW master (23,570 customers) loaded."""
    return _bundled_store(tmp_path_factory, "cdnow_master")


# -- torch -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the tests of a module that names it
    (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): tiny networks run faster so,
    and on a shared 2-core machine more threads only wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- Spark (owner: scale-out, issue 17) ------------------------------------------------------------
@pytest.fixture(scope="session")
def spark_local() -> Iterator[Any]:
    """One local Spark session (2 cores, 2 shuffle partitions) for every test marked ``spark``:
    starting one takes 10-20 s, so the files share it. Skipped without pyspark or Java."""
    import shutil

    pytest.importorskip("pyspark")
    pytest.importorskip("ibis.backends.pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java")
    from retention.features import spark_session

    session = spark_session(
        "local[2]",
        app_name="retention-tests",
        shuffle_partitions=2,
        driver_memory="1g",
        config={
            "spark.ui.enabled": "false",
            "spark.default.parallelism": "2",
            # small data: adaptive planning costs more than it saves
            "spark.sql.adaptive.enabled": "false",
            "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
        },
    )
    yield session
    session.stop()


@pytest.fixture
def spark(spark_local: Any) -> Any:
    """The shared session without side tables other tests left as views: a Parquet log of
    events has no ``items`` or ``users``."""
    for view in ("items", "users"):
        spark_local.catalog.dropTempView(view)
    return spark_local
