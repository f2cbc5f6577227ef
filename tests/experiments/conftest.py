"""Fixtures of the experiments tests: the bundled Cookie Cats and Hillstrom files, read once."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd
import pytest


def bundled(name: str) -> Path:
    return Path(str(resources.files("retention.data").joinpath("files", name)))


@pytest.fixture(scope="session")
def cookie_cats() -> pd.DataFrame:
    """Cookie Cats (90,189 players, gate_30 / gate_40), as bundled."""
    return pd.read_csv(bundled("cookie_cats.csv.gz"), dtype={"version": str})


@pytest.fixture(scope="session")
def hillstrom() -> pd.DataFrame:
    """Hillstrom (64,000 customers, three arms), as bundled."""
    return pd.read_csv(bundled("hillstrom.csv.gz"), dtype={"segment": str})
