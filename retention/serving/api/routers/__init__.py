"""One router per resource of the API (FastAPI "bigger applications"); each handler calls
:mod:`retention.workflows` with the store and the caches it is given by ``Depends``."""

from retention.serving.api.routers import (
    _customers,
    _dashboard,
    _events,
    _experiments,
    _health,
    _jobs,
    _keys,
    _models,
    _plan,
    _recommendations,
    _scores,
    _stats,
)

#: every router, in the order the app includes them
ROUTERS = [
    _health.router,
    _events.router,
    _customers.router,
    _scores.router,
    _recommendations.router,
    _plan.router,
    _experiments.router,
    _jobs.router,
    _models.router,
    _keys.router,
    _stats.router,
    _dashboard.router,
]

__all__ = ["ROUTERS"]
