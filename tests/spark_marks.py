"""The marks every test that runs Spark shares (the session, ``spark_local``, and its clean view,
``spark``, are fixtures of conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])

_SPARK_MARKS = (
    pytest.mark.spark,
    pytest.mark.slow,
    # py4j leaves its gateway sockets to the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
)


def spark_test(fn: F) -> F:
    """Mark a test that runs Spark."""
    for mark in _SPARK_MARKS:
        fn = mark(fn)
    return fn
