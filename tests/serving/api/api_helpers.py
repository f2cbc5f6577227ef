"""Helpers of the API tests (the fixtures are in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi.testclient import TestClient

from retention.serving.api import ApiSettings, create_app

#: the model id of the base store's scores, and their cutoff
MODEL = "0123456789ab"
CUTOFF = pd.Timestamp("1998-01-01")


@dataclass
class Keys:
    """The base store's keys, one per scope, and a revoked one."""

    read: str
    write: str
    admin: str
    revoked: str

    def header(self, scope: str = "read") -> dict[str, str]:
        return {"X-API-Key": getattr(self, scope)}


def make_client(db: Path, **settings: Any) -> TestClient:
    """A test client of an app over ``db`` (enter it with ``with`` to start the app)."""
    app = create_app(ApiSettings(db=db, models_dir=db.parent / "models", **settings))
    return TestClient(app, raise_server_exceptions=False)


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 (a free port) in a thread, for tests that need real
    concurrent HTTP: ``with LiveServer(db) as url: ...``."""

    def __init__(self, db: Path, **settings: Any) -> None:
        import uvicorn

        app = create_app(ApiSettings(db=db, models_dir=db.parent / "models", **settings))
        self.app = app
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread: Any = None

    def __enter__(self) -> str:
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
