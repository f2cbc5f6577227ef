"""The REST API and the dashboard (FastAPI): an app factory, one router per resource, pydantic
schemas, and dependencies that inject the store, the model cache and the key of a scope.

>>> from retention.serving.api import ApiSettings, create_app  # doctest: +SKIP
>>> app = create_app(ApiSettings(db="retention.duckdb"))  # doctest: +SKIP

``retention serve --db DB`` runs it with uvicorn. Handlers call :mod:`retention.workflows` only.
"""

from retention.serving.api._app import create_app, openapi_spec, write_openapi
from retention.serving.api._settings import ApiSettings

__all__ = ["ApiSettings", "create_app", "openapi_spec", "write_openapi"]
