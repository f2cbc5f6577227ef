"""Runtime settings read from ``RETENTION_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "get_settings"]


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
    """

    db: Path
    progress: bool
    encoder: str
    cache_dir: Path
    seed: int


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
    )
