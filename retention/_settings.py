"""Runtime settings read from ``RETENTION_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["DEFAULT_MIN_TS", "Settings", "get_settings", "parse_count", "parse_min_ts"]

#: times before this are quarantined by ingest unless ``RETENTION_MIN_TS`` says otherwise
DEFAULT_MIN_TS = "1990-01-01"


@dataclass(frozen=True)
class Settings:
    """Runtime settings.

    Attributes
    ----------
    db : Path
        The DuckDB store (``RETENTION_DB``, default ``./retention.duckdb``).
    progress : bool
        Show progress bars (``RETENTION_PROGRESS``, default on; ``0`` turns them off).
    encoder : str
        The pretrained text encoder (``RETENTION_ENCODER``, default ``all-MiniLM-L6-v2``).
    cache_dir : Path
        Folder for unpacked model weights (``RETENTION_CACHE_DIR``).
    seed : int
        Default random seed (``RETENTION_SEED``, default 0).
    min_ts : datetime or None
        Ingest quarantines times before it as not real (``RETENTION_MIN_TS``, a date such as
        ``1990-01-01``, the default; ``none`` keeps every time).
    min_customers, min_retained, min_history_days : int or None
        The least data ``backtest`` and ``train`` learn from (``RETENTION_MIN_CUSTOMERS``,
        ``RETENTION_MIN_RETAINED``, ``RETENTION_MIN_HISTORY_DAYS``; unset: the measured
        defaults of ``retention.features.MinData``).
    """

    db: Path
    progress: bool
    encoder: str
    cache_dir: Path
    seed: int
    min_ts: datetime | None = datetime(1990, 1, 1)
    min_customers: int | None = None
    min_retained: int | None = None
    min_history_days: int | None = None


def parse_count(value: str | None, name: str) -> int | None:
    """``value`` as a whole number >= 0, or None when unset or empty.

    Raises
    ------
    ConfigError
        ``value`` is not a whole number >= 0.
    """
    from retention.exceptions import ConfigError

    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    if not text.isdigit():
        raise ConfigError(f"{name} must be a whole number >= 0, such as 200; got {value!r}.")
    return int(text)


def parse_min_ts(value: str, name: str = "RETENTION_MIN_TS") -> datetime | None:
    """``value`` as the earliest real time (naive UTC), or None for ``none``/``off``/empty.

    Raises
    ------
    ConfigError
        ``value`` is neither a date/ISO time nor ``none``.
    """
    from retention.exceptions import ConfigError

    text = str(value).strip()
    if text.lower() in {"", "none", "off", "false", "0"}:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{name} must be a date such as {DEFAULT_MIN_TS} (or none to keep every time); "
            f"got {value!r}."
        ) from None
    return parsed.replace(tzinfo=None) if parsed.tzinfo is None else _to_naive_utc(parsed)


def _to_naive_utc(value: datetime) -> datetime:
    from datetime import UTC

    return value.astimezone(UTC).replace(tzinfo=None)


def get_settings() -> Settings:
    """Read the settings from the environment now (not cached, so tests can change them)."""
    env = os.environ
    return Settings(
        db=Path(env.get("RETENTION_DB", "retention.duckdb")),
        progress=env.get("RETENTION_PROGRESS", "1").strip().lower()
        not in {"0", "false", "no", "off"},
        encoder=env.get("RETENTION_ENCODER", "all-MiniLM-L6-v2"),
        cache_dir=Path(env.get("RETENTION_CACHE_DIR", Path.home() / ".cache" / "retention")),
        seed=int(env.get("RETENTION_SEED", "0")),
        min_ts=parse_min_ts(env.get("RETENTION_MIN_TS", DEFAULT_MIN_TS)),
        min_customers=parse_count(env.get("RETENTION_MIN_CUSTOMERS"), "RETENTION_MIN_CUSTOMERS"),
        min_retained=parse_count(env.get("RETENTION_MIN_RETAINED"), "RETENTION_MIN_RETAINED"),
        min_history_days=parse_count(
            env.get("RETENTION_MIN_HISTORY_DAYS"), "RETENTION_MIN_HISTORY_DAYS"
        ),
    )
