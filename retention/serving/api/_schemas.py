"""Pydantic schemas of the API's requests and answers (the OpenAPI spec is made from them).

Requests are strict: unknown fields are refused (``extra="forbid"``), strings have length
limits, numbers must be JSON numbers; a request that does not fit gets 422 naming the field.
No request field is a file or model path.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "BacktestJobIn",
    "CustomerOut",
    "DashboardPartOut",
    "ErrorOut",
    "EventBatchIn",
    "EventIn",
    "HealthOut",
    "IngestOut",
    "JobOut",
    "KeyCreateIn",
    "KeyOut",
    "ModelVersionOut",
    "ModelsOut",
    "NewKeyOut",
    "PlanPageOut",
    "PromoteIn",
    "ReadyOut",
    "RecommendationsOut",
    "RollbackIn",
    "RollbackOut",
    "ScoreBatchIn",
    "ScoreBatchOut",
    "ScoreJobIn",
    "TrainJobIn",
    "WhoAmIOut",
]

Id = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
Short = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _date_string(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    raise ValueError("must be a date string, YYYY-MM-DD")


def _date_range(value: dt.date) -> dt.date:
    if not dt.date(1900, 1, 1) <= value <= dt.date(2199, 12, 31):
        raise ValueError("must be a date from 1900-01-01 to 2199-12-31")
    return value


#: a date given as ``YYYY-MM-DD`` (strict models take no other type for it), in a sane range
Date = Annotated[
    dt.date, BeforeValidator(_date_string), AfterValidator(_date_range), Field(strict=False)
]


class _In(BaseModel):
    # strict: a JSON type that is not the field's (0 for a bool, "90" for a number) is refused
    model_config = ConfigDict(extra="forbid", strict=True)


# --------------------------------------------------------------------------------------- events
class EventIn(_In):
    """One event, in the contract's columns."""

    user_id: Id = Field(description="The customer.")
    ts: Annotated[str, Field(min_length=1, max_length=40)] = Field(
        description="When, ISO 8601 in UTC (`2011-09-10T14:03:00`); an unreadable time is "
        "quarantined."
    )
    event_type: Short | None = Field(
        default=None, description="`purchase` (the default), `view`, `cart`, `return`, `review`."
    )
    item_id: Id | None = None
    order_id: Id | None = None
    quantity: Number | None = None
    amount: Number | None = Field(default=None, description="Money of the line, >= 0.")
    rating: Number | None = None
    text: Annotated[str, Field(max_length=10_000)] | None = None
    event_id: Id | None = Field(
        default=None,
        description="Your id of the event; default a stable hash of the other fields, so a "
        "retried batch adds nothing.",
    )


class EventBatchIn(_In):
    """A batch of events."""

    events: list[EventIn] = Field(min_length=1, max_length=10_000)
    strict: bool = Field(
        default=False, description="Load nothing when any event would be quarantined."
    )


class IngestOut(BaseModel):
    """The accounting of one batch: ``read == loaded + duplicates + quarantined``."""

    ingest_id: int
    read: int
    loaded: int
    duplicates: int
    quarantined: int
    reasons: dict[str, int]
    seconds: float


# ------------------------------------------------------------------------------------ customers
class ScoresOut(BaseModel):
    """A customer's latest stored scores."""

    p_retained: float | None = None
    p_alive: float | None = None
    expected_purchases: float | None = None
    clv: float | None = None
    risk_band: str | None = None
    cutoff: str | None = None
    horizon_days: int | None = None
    model_version: str | None = None
    model_stage: str | None = Field(
        default=None, description="The registry stage of that model: production, candidate..."
    )
    scored_at: str | None = None


class ReasonOut(BaseModel):
    """One reason: a feature pushing P(retained) down (churn) or up (retention)."""

    feature: str | None = None
    family: str | None = None
    contribution: float | None = None
    value: float | None = None
    typical: float | None = None
    text: str | None = None


class ReasonsOut(BaseModel):
    churn: list[ReasonOut] = Field(default_factory=list)
    retention: list[ReasonOut] = Field(default_factory=list)


class ActivityOut(BaseModel):
    events: int = 0
    purchases: int = 0
    orders: int = 0
    revenue: float = 0.0
    first_event: str | None = None
    last_event: str | None = None
    last_purchase: str | None = None


class CustomerOut(BaseModel):
    """One customer: scores, reasons, activity, and the later stages (empty with a note in
    ``notes`` until they have run)."""

    user_id: str
    scores: ScoresOut | None
    reasons: ReasonsOut
    activity: ActivityOut
    tier: str | None = None
    points: float | None = None
    recommendations: list[dict[str, Any]] = Field(default_factory=list)
    planned_action: dict[str, Any] | None = None
    notes: dict[str, str] = Field(default_factory=dict)


class ScoreBatchIn(_In):
    """Customers whose stored scores to return."""

    user_ids: list[Id] = Field(min_length=1, max_length=1000)
    model_version: Id | None = Field(
        default=None, description="Default: the model that scored last at the newest cutoff."
    )


class ScoreRowOut(ScoresOut):
    user_id: str


class ScoreBatchOut(BaseModel):
    scores: list[ScoreRowOut]
    missing: list[str]
    model_version: str | None


class RecommendationsOut(BaseModel):
    user_id: str
    k: int
    items: list[dict[str, Any]]
    note: str = ""


class PlanPageOut(BaseModel):
    rows: list[dict[str, Any]]
    page: int
    per_page: int
    total: int
    pages: int
    note: str = ""


# ----------------------------------------------------------------------------------------- jobs
class TrainJobIn(_In):
    """Train a model on the latest complete cutoffs (the artifact goes to the service's models
    folder and into the store's registry)."""

    model: Short = Field(default="ensemble", description="`ensemble`, `gbdt`, `bgnbd`, ...")
    horizon_days: int = Field(default=90, ge=1, le=3650)
    cutoff: Date | None = Field(default=None, description="Default: the last purchase date.")
    n_train: int = Field(default=3, ge=1, le=12)


class BacktestJobIn(_In):
    """Fit models on cutoffs before ``cutoff`` and measure them on it."""

    cutoff: Date
    horizon_days: int = Field(default=90, ge=1, le=3650)
    models: list[Short] | None = Field(default=None, min_length=1, max_length=10)
    n_train: int = Field(default=3, ge=1, le=12)


class ScoreJobIn(_In):
    """Score every customer with a registered model into the store's ``scores`` table."""

    model_id: Id | None = Field(
        default=None,
        description="Default: the production model (the newest candidate before a promotion).",
    )
    cutoff: Date | None = Field(default=None, description="Default: the last purchase date.")


class JobOut(BaseModel):
    job_id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed"]
    params: dict[str, Any]
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    result: dict[str, Any] | None
    error: str | None


# ----------------------------------------------------------------------------------------- keys
class KeyCreateIn(_In):
    scope: Literal["read", "write", "admin"]
    name: (
        Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")] | None
    ) = None


class KeyOut(BaseModel):
    key_id: str
    name: str | None
    scope: str
    active: bool
    created_at: str | None
    revoked_at: str | None
    last_used_at: str | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key: shown this once, never stored.")


class WhoAmIOut(BaseModel):
    key_id: str
    scope: str
    name: str | None


# ---------------------------------------------------------------------------------------- other
class DashboardPartOut(BaseModel):
    name: str
    data: dict[str, Any]
    note: str = ""


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str


class ReadyOut(BaseModel):
    ready: bool
    schema_version: int
    scored: bool
    models: int


class FieldErrorOut(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error: one line, the fields of an invalid request, the request id."""

    detail: str
    fields: list[FieldErrorOut] | None = None
    request_id: str | None = None


# ---------------------------------------------------------------------------------- experiments
class ExperimentIn(_In):
    """A new experiment (then assign customers to it, then read its results)."""

    experiment_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    variants: list[Short] = Field(default=["control", "treatment"], min_length=2, max_length=10)
    weights: list[Annotated[float, Field(gt=0, le=1)]] | None = Field(default=None, max_length=10)
    control: Short | None = Field(default=None, description="Default: the first variant.")
    name: Annotated[str, Field(max_length=200)] | None = None
    hypothesis: Annotated[str, Field(max_length=2000)] | None = None
    holdout: float = Field(default=0.0, ge=0, lt=1)
    stratify_by: Literal["risk_band"] | None = None
    metrics: list[Short] = Field(default=["retention_30"], min_length=1, max_length=10)
    guardrails: list[Short] = Field(default_factory=list, max_length=10)
    window_days: int = Field(default=30, ge=1, le=3650)
    start: Date | None = Field(default=None, description="Default: the store's last event.")


class AssignIn(_In):
    """Whom to assign: these customers, or everyone with a purchase before the start (of one
    risk band)."""

    users: list[Id] | None = Field(default=None, min_length=1, max_length=100_000)
    risk_band: Literal["high", "medium", "low"] | None = None


# ------------------------------------------------------------------------------------- registry
Reason = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$")]


class ModelVersionOut(BaseModel):
    """One model of the store's registry (its artifact's path stays on the server)."""

    model_id: str
    name: str | None = Field(default=None, description="`gbdt`, `ensemble`, `bgnbd`, ...")
    stage: Literal["candidate", "production", "archived"]
    cutoff: str | None = None
    horizon_days: int | None = None
    created_at: str | None = None
    retained_by: str
    params: dict[str, Any] = Field(default_factory=dict, description="Its hyper-parameters.")
    artifact: Literal["ok", "missing", "changed"] = Field(
        description="Whether its artifact is there with the registered SHA-256 (it can serve)."
    )
    backtest: dict[str, Any] | None = Field(
        default=None, description="The latest backtest figures a promotion recorded for it."
    )


class StageChangeOut(BaseModel):
    """One change of a model's stage, in order (`model_stages`)."""

    seq: int
    model_id: str
    stage: str
    previous_stage: str | None = None
    action: str
    forced: bool
    reason: str | None = None
    changed_at: str | None = None


class ModelsOut(BaseModel):
    """The registry: every model, newest first, the production one, the stage history."""

    production: str | None
    models: list[ModelVersionOut]
    history: list[StageChangeOut]


class PromoteIn(_In):
    """How strict a promotion is (it refits both models on the latest backtest: a job)."""

    margin: float = Field(
        default=0.005,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="The ROC-AUC the candidate must gain over production on the latest backtest.",
    )
    force: bool = Field(default=False, description="Promote whatever the comparison says.")
    n_bootstrap: int = Field(
        default=1000, ge=100, le=10_000, description="Resamples of the paired bootstrap."
    )
    reason: Reason | None = Field(default=None, description="Why, recorded beside the decision.")


class RollbackIn(_In):
    """Where production goes back to."""

    to: Id | None = Field(
        default=None, description="A former production model; default the previous one."
    )
    reason: Reason | None = Field(default=None, description="Why, recorded.")


class RollbackOut(BaseModel):
    rolled_back: str
    production: str
    message: str
