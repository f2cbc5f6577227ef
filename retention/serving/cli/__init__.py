"""Command-line interface: ``retention COMMAND``.

Each module registers its commands on the shared :data:`app`; commands call
:mod:`retention.workflows` only. A :class:`~retention.exceptions.RetentionError` becomes one line
on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys

from retention.exceptions import RetentionError
from retention.serving.cli._app import app, err_console

# Importing the command modules registers their commands on ``app``.
from retention.serving.cli import _version  # noqa: F401  isort: skip
from retention.serving.cli import _data  # noqa: F401  isort: skip
from retention.serving.cli import _predict  # noqa: F401  isort: skip
from retention.serving.cli import _datasets  # noqa: F401  isort: skip
from retention.serving.cli import _explain  # noqa: F401  isort: skip

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``retention`` console script; returns the exit status."""
    try:
        app(args=argv, prog_name="retention")
    except RetentionError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
