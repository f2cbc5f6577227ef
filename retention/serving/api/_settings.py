"""Service settings: a pydantic ``BaseSettings`` read from ``RETENTION_*`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ApiSettings"]


class ApiSettings(BaseSettings):
    """How ``retention serve`` runs: the store, limits, CORS, jobs.

    Every field is read from an environment variable ``RETENTION_API_<FIELD>`` (the store from
    ``RETENTION_DB``, as for every command), or passed to :func:`create_app`.

    Attributes
    ----------
    db : Path
        The store (``RETENTION_DB``; ``--db`` of ``retention serve``).
    max_body_bytes : int
        Largest request body; a larger one is refused with 413 before it is read.
    max_batch_events : int
        Most events one ``POST /events`` may carry.
    rate_limit_per_minute : int
        Requests per minute per API key (a token bucket; 429 with ``Retry-After`` beyond it).
    rate_limit_burst : int
        Requests a key may make at once before the per-minute rate applies.
    cors_origins : list of str
        Origins allowed to call the API from a browser; empty (the default) sends no CORS
        header at all, so no other site's page can read the API.
    models_dir : Path or None
        Where ``POST /jobs/train`` writes artifacts (default: ``<db>.models/`` beside the store).
        Never taken from a request.
    index_refresh_s : float
        After a batch of events, the in-memory customer index is rebuilt (in the background)
        at most this often; lookups read the customer's activity from the store meanwhile.
    stats_refresh_s : float
        After a write, the dashboard's figures are computed again at most this often (until
        then the previous ones are shown, with the time they were computed).
    max_jobs_kept : int
        Finished jobs kept in memory for ``GET /jobs``.
    """

    model_config = SettingsConfigDict(env_prefix="RETENTION_API_", extra="ignore")

    db: Path = Field(
        default=Path("retention.duckdb"), validation_alias=AliasChoices("db", "RETENTION_DB")
    )
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_batch_events: int = Field(default=10_000, ge=1, le=10_000)
    rate_limit_per_minute: int = Field(default=600, ge=1)
    rate_limit_burst: int = Field(default=60, ge=1)
    cors_origins: list[str] = Field(default_factory=list)
    models_dir: Path | None = None
    index_refresh_s: float = Field(default=1.0, ge=0.0)
    stats_refresh_s: float = Field(default=30.0, ge=0.0)
    max_jobs_kept: int = Field(default=100, ge=1)

    def artifacts_dir(self) -> Path:
        """Where trained artifacts go."""
        if self.models_dir is not None:
            return self.models_dir
        return self.db.with_name(self.db.name + ".models")
