"""``/models``: the model registry (what ``retention models``, ``promote`` and ``rollback`` do).

* ``GET /models`` and ``GET /models/{model_id}`` (scope read): the versions with their stage,
  cutoff, horizon, whether the artifact can serve, the latest backtest figures a promotion
  recorded, and the stage history; an artifact's path stays on the server;
* ``POST /models/{model_id}/promote`` (scope admin, 202): a background job, since it refits
  both models on the latest backtest (``GET /jobs/{job_id}`` for the decision: a refusal is a
  job that succeeded with ``promoted: false``, recorded in the registry like the CLI's);
* ``POST /models/rollback`` (scope admin): production goes back to the previous production
  model (or ``to``) at once, nothing is refit.

Promotion and rollback change what every client is served by default, so they need an admin
key, as key management does; training a candidate (``POST /jobs/train``) needs write.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from retention import workflows
from retention.exceptions import ConfigError, ModelError, NotFoundError
from retention.serving.api._deps import AdminKey, ReadKey, get_state
from retention.serving.api._schemas import (
    JobOut,
    ModelsOut,
    ModelVersionOut,
    PromoteIn,
    RollbackIn,
    RollbackOut,
)
from retention.serving.api._state import ServiceState
from retention.serving.api.routers._common import AUTH_ERRORS, errors

router = APIRouter(prefix="/models", tags=["models"])

StateDep = Annotated[ServiceState, Depends(get_state)]
ModelId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


def _version(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = model.to_dict()
    out.pop("path", None)  # the server's file system is not the client's business
    return out


def _listing(store: Any) -> dict[str, Any]:
    listing = workflows.list_models(store)
    out: dict[str, Any] = listing.to_dict()
    out["models"] = [_version(m) for m in listing.models]
    return out


def _find(store: Any, model_id: str) -> Any:
    for model in workflows.list_models(store).models:
        if model.model_id == model_id:
            return model
    raise NotFoundError(
        "No model of that id in the store's registry: the models endpoint lists them "
        "(or post a train job to make one)."
    )


@router.get("", response_model=ModelsOut, responses=AUTH_ERRORS, summary="Models (scope read)")
def list_models(_key: ReadKey, state: StateDep) -> dict[str, Any]:
    """Every registered model, newest first, with its stage (`candidate`, `production`,
    `archived`), the production model's id, and every stage change in order."""
    return _listing(state.handle.read())


@router.get(
    "/{model_id}",
    response_model=ModelVersionOut,
    responses={**AUTH_ERRORS, **errors(404)},
    summary="One model (scope read)",
)
def get_model(model_id: ModelId, _key: ReadKey, state: StateDep) -> dict[str, Any]:
    """The model's stage, cutoff, horizon, hyper-parameters, artifact state and latest
    backtest figures."""
    return _version(_find(state.handle.read(), model_id))


@router.post(
    "/{model_id}/promote",
    status_code=202,
    response_model=JobOut,
    responses={**AUTH_ERRORS, **errors(404, 409)},
    summary="Promote a candidate on the latest backtest, in the background (scope admin)",
)
def promote(model_id: ModelId, body: PromoteIn, _key: AdminKey, state: StateDep) -> dict[str, Any]:
    """Refit the candidate's and the production model's configurations at the latest cutoff
    whose label window has passed, score both on the same customers, and make the candidate
    production when its ROC-AUC beats production's by `margin` (or with `force`); the job's
    result holds the decision, the difference and its paired-bootstrap interval. The store's
    first promotion needs no comparison."""
    request = workflows.PromoteRequest(
        model_id=model_id,
        margin=body.margin,
        force=body.force,
        n_bootstrap=body.n_bootstrap,
        reason=body.reason,
    )
    # what can be told at once is told at once (the job checks again when it runs)
    model = _find(state.handle.read(), model_id)
    if model.stage == "production":
        raise ConfigError(f"Model {model_id} is already the production model; nothing to do.")
    if model.artifact != "ok":
        why = "no file is there any more" if model.artifact == "missing" else "it changed since"
        raise ModelError(
            f"Model {model_id}'s artifact cannot serve ({why}): post a train job for a new one."
        )

    def run(store: Any) -> dict[str, Any]:
        result: dict[str, Any] = workflows.promote(store, request).to_dict()
        return result

    params = {"model_id": model_id, **body.model_dump(mode="json")}
    return state.jobs.submit("promote", params, run).to_dict()


@router.post(
    "/rollback",
    response_model=RollbackOut,
    responses={**AUTH_ERRORS, **errors(409, 503)},
    summary="Roll production back to the previous production model (scope admin)",
)
def rollback(body: RollbackIn, _key: AdminKey, state: StateDep) -> dict[str, Any]:
    """The production model is archived (a later rollback does not offer it again) and the
    previous production model, or `to`, serves again; 422 when there is none to go back to."""
    request = workflows.RollbackRequest(to=body.to, reason=body.reason)
    with state.handle.write() as store:
        report = workflows.rollback(store, request)
    state.changed()
    return report.to_dict()
