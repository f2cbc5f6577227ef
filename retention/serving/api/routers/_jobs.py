"""Background jobs: ``POST /jobs/train``, ``/jobs/backtest``, ``/jobs/score`` start one (202),
``GET /jobs`` and ``GET /jobs/{job_id}`` report status and result.

A job's request is checked when it is posted (422 naming the field); it then runs on the job
thread, one at a time. No request names a file: a trained artifact goes to the service's models
folder (``RETENTION_API_MODELS_DIR``) and into the store's registry, and a score job takes a
model of that registry by id.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Path

from retention import workflows
from retention.exceptions import NotFoundError
from retention.serving.api._deps import ReadKey, WriteKey, get_cache, get_state, get_store
from retention.serving.api._schemas import BacktestJobIn, JobOut, ScoreJobIn, TrainJobIn
from retention.serving.api._state import ServiceState, StoreHandle
from retention.serving.api.routers._common import AUTH_ERRORS, errors

router = APIRouter(prefix="/jobs", tags=["jobs"])

StateDep = Annotated[ServiceState, Depends(get_state)]


def _cutoff(value: Any) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value)


@router.post(
    "/train",
    status_code=202,
    response_model=JobOut,
    responses=AUTH_ERRORS,
    summary="Train a model in the background (scope write)",
)
def post_train(body: TrainJobIn, _key: WriteKey, state: StateDep) -> dict[str, Any]:
    """Fit a model on the latest complete cutoffs, save it in the service's models folder and
    register it in the store (then `POST /jobs/score` with its `model_id`)."""
    folder = state.settings.artifacts_dir()
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S")
    request = workflows.TrainRequest(
        out=folder / f"{body.model}-{stamp}-{secrets.token_hex(3)}.retention",
        model=body.model,
        cutoff=_cutoff(body.cutoff),
        horizon_days=body.horizon_days,
        n_train=body.n_train,
    )

    def run(store: Any) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        rep = workflows.train(store, request)
        meta = rep.metadata
        return {
            "model_id": rep.model_id,
            "sha256": rep.sha256,
            "registry_name": meta.get("registry_name"),
            "cutoff": str(meta.get("cutoff"))[:10],
            "horizon_days": meta.get("horizon_days"),
            "metrics": (meta.get("metrics") or {}).get("valid"),
        }

    return state.jobs.submit("train", body.model_dump(mode="json"), run).to_dict()


@router.post(
    "/backtest",
    status_code=202,
    response_model=JobOut,
    responses=AUTH_ERRORS,
    summary="Backtest models in the background (scope write)",
)
def post_backtest(body: BacktestJobIn, _key: WriteKey, state: StateDep) -> dict[str, Any]:
    """Fit the models on cutoffs before `cutoff`, measure them on it; the result is the JSON
    of `retention backtest --json`."""
    request = workflows.BacktestRequest(
        cutoff=pd.Timestamp(body.cutoff),
        horizon_days=body.horizon_days,
        n_train=body.n_train,
        models=tuple(body.models) if body.models else workflows.DEFAULT_BACKTEST_MODELS,
    )

    def run(store: Any) -> dict[str, Any]:
        result: dict[str, Any] = workflows.backtest(store, request).to_dict()
        return result

    return state.jobs.submit("backtest", body.model_dump(mode="json"), run).to_dict()


@router.post(
    "/score",
    status_code=202,
    response_model=JobOut,
    responses={**AUTH_ERRORS, **errors(404)},
    summary="Score every customer in the background (scope write)",
)
def post_score_job(
    body: ScoreJobIn,
    _key: WriteKey,
    state: StateDep,
    handle: Annotated[StoreHandle, Depends(get_store)],
    cache: Annotated[workflows.ModelCache, Depends(get_cache)],
) -> dict[str, Any]:
    """Write every customer's scores and reasons with a model of the registry (default: the
    production model, else the newest candidate) to the `scores` table; lookups answer from
    them once the job has finished."""
    if body.model_id is not None:  # checked by the job: an unknown id fails there
        model_id, stage = body.model_id, None
    else:  # the production model, else the newest candidate
        store = handle.read()
        if store.count_rows("models") == 0:
            raise NotFoundError("No model in the store's registry yet: post a train job first.")
        choice = workflows.choose_model(store, warn=False)
        model_id, stage = choice.model_id, choice.stage
    request = workflows.ScoreRequest(model_id=model_id, cutoff=_cutoff(body.cutoff))

    def run(job_store: Any) -> dict[str, Any]:
        return workflows.score(job_store, request, cache=cache).to_dict()

    params = {**body.model_dump(mode="json"), "model_id": model_id, "model_stage": stage}
    return state.jobs.submit("score", params, run).to_dict()


@router.get("", response_model=list[JobOut], responses=AUTH_ERRORS, summary="Jobs (scope read)")
def list_jobs(_key: ReadKey, state: StateDep) -> list[dict[str, Any]]:
    """The jobs kept in memory, newest first."""
    return [j.to_dict() for j in state.jobs.list()]


@router.get(
    "/{job_id}",
    response_model=JobOut,
    responses={**AUTH_ERRORS, **errors(404)},
    summary="One job (scope read)",
)
def get_job(
    job_id: Annotated[str, Path(min_length=1, max_length=64)], _key: ReadKey, state: StateDep
) -> dict[str, Any]:
    """Status (`queued`, `running`, `succeeded`, `failed`), result, one-line error."""
    return state.jobs.get(job_id).to_dict()
