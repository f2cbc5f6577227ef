"""``retention version``."""

from __future__ import annotations

import retention
from retention.serving.cli._app import app, console


@app.command()
def version() -> None:
    """Print the version of retention."""
    console.print(retention.__version__)
