"""``/stats/*``: what the dashboard draws, computed from the store once per change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from retention import workflows
from retention.serving.api._deps import ReadKey, get_state
from retention.serving.api._schemas import DashboardPartOut
from retention.serving.api._state import ServiceState
from retention.serving.api.routers._common import AUTH_ERRORS

router = APIRouter(prefix="/stats", tags=["dashboard"])

StateDep = Annotated[ServiceState, Depends(get_state)]


def _part(name: str, build: Callable[[Any], Any], summary: str) -> None:
    def handler(_key: ReadKey, state: StateDep) -> dict[str, Any]:
        result: dict[str, Any] = state.part(name, build).to_dict()
        return result

    handler.__name__ = f"stats_{name}"
    handler.__doc__ = summary
    router.add_api_route(
        f"/{name}",
        handler,
        methods=["GET"],
        response_model=DashboardPartOut,
        responses=AUTH_ERRORS,
        summary=f"{summary.split(':')[0]} (scope read)",
    )


_part("overview", workflows.dashboard_overview, "Overview: customers, revenue, retention, trend")
_part("cohorts", workflows.dashboard_cohorts, "Cohorts: monthly cohort retention matrix")
_part("risk", workflows.dashboard_risk, "Risk: distribution of P(retained) and the bands")
_part("drivers", workflows.dashboard_drivers, "Drivers: the features behind the scores")
_part("models", workflows.dashboard_models, "Models: the registry and validation metrics")
_part("plan", workflows.dashboard_plan, "Plan: totals of the plan table")
_part("experiments", workflows.dashboard_experiments, "Experiments: arms of the assignments")
_part("monitor", workflows.dashboard_monitor, "Monitor: drift and decay of the latest monitor run")
