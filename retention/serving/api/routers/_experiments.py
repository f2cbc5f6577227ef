"""``/experiments``: create an experiment, assign customers to it, read its results (the
experiment workflows of ``retention experiment``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Depends, Path, Query

from retention import workflows
from retention.serving.api._deps import ReadKey, WriteKey, get_state
from retention.serving.api._schemas import AssignIn, ExperimentIn
from retention.serving.api._state import ServiceState
from retention.serving.api.routers._common import AUTH_ERRORS, errors

router = APIRouter(prefix="/experiments", tags=["experiments"])

StateDep = Annotated[ServiceState, Depends(get_state)]
ExperimentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


@router.get("", responses=AUTH_ERRORS, summary="Experiments (scope read)")
def list_experiments(_key: ReadKey, state: StateDep) -> list[dict[str, Any]]:
    """Every experiment of the store with its arm sizes (ingested ones too)."""
    return [r.to_dict() for r in workflows.list_experiments(state.handle.read())]


@router.post("", status_code=201, responses=AUTH_ERRORS, summary="Create one (scope write)")
def create_experiment(body: ExperimentIn, _key: WriteKey, state: StateDep) -> dict[str, Any]:
    """Declare an experiment: variants, shares, metrics, guardrails, the window."""
    request = workflows.CreateExperimentRequest(
        experiment_id=body.experiment_id,
        variants=tuple(body.variants),
        weights=None if body.weights is None else tuple(body.weights),
        control=body.control,
        name=body.name,
        hypothesis=body.hypothesis,
        holdout=body.holdout,
        stratify_by=body.stratify_by,
        metrics=tuple(body.metrics),
        guardrails=tuple(body.guardrails),
        window_days=body.window_days,
        start=None if body.start is None else pd.Timestamp(body.start),
    )
    with state.handle.write() as store:
        record = workflows.create_experiment(store, request)
    state.changed(scores=False)
    return record.to_dict()


@router.get(
    "/{experiment_id}", responses={**AUTH_ERRORS, **errors(404)}, summary="One (scope read)"
)
def get_experiment(experiment_id: ExperimentId, _key: ReadKey, state: StateDep) -> dict[str, Any]:
    """The experiment's design and arm sizes."""
    return workflows.get_experiment(state.handle.read(), experiment_id).to_dict()


@router.post(
    "/{experiment_id}/assign",
    responses={**AUTH_ERRORS, **errors(404)},
    summary="Assign customers (scope write)",
)
def assign(
    experiment_id: ExperimentId, body: AssignIn, _key: WriteKey, state: StateDep
) -> dict[str, Any]:
    """Assign customers to the variants by salted hashing (a customer keeps the variant of a
    first assignment); with `stratify_by=risk_band`, each band in the planned shares."""
    request = workflows.AssignRequest(
        experiment_id=experiment_id,
        users=None if body.users is None else tuple(body.users),
        risk_band=body.risk_band,
    )
    with state.handle.write() as store:
        report = workflows.assign_users(store, request)
    state.changed(scores=False)
    return report.to_dict()


@router.get(
    "/{experiment_id}/results",
    responses={**AUTH_ERRORS, **errors(404)},
    summary="Results with intervals (scope read)",
)
def results(
    experiment_id: ExperimentId,
    _key: ReadKey,
    state: StateDep,
    population: Annotated[Literal["assigned", "exposed"], Query()] = "assigned",
    alpha: Annotated[float, Query(ge=0.001, le=0.5)] = 0.05,
    sequential: bool = False,
) -> dict[str, Any]:
    """Each metric's difference (treatment minus control) with its interval and p-value, the
    guardrails and the sample-ratio check; computed now, not stored (`retention experiment
    analyze` stores them)."""
    request = workflows.AnalyzeExperimentRequest(
        experiment_id=experiment_id,
        population=population,
        alpha=alpha,
        sequential=sequential,
        write=False,
    )
    result: dict[str, Any] = workflows.analyze_experiment(state.handle.read(), request).to_dict()
    return result
