"""Command-line interface: ``retention COMMAND``.

Each module registers its commands on the shared :data:`app`; commands call
:mod:`retention.workflows` only. A :class:`~retention.exceptions.RetentionError` becomes one line
on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

from rich.markup import escape

from retention.exceptions import RetentionError, RetentionWarning
from retention.serving.cli._app import app, err_console

# Importing the command modules registers their commands on ``app``.
from retention.serving.cli import _version  # noqa: F401  isort: skip
from retention.serving.cli import _data  # noqa: F401  isort: skip
from retention.serving.cli import _predict  # noqa: F401  isort: skip
from retention.serving.cli import _datasets  # noqa: F401  isort: skip
from retention.serving.cli import _explain  # noqa: F401  isort: skip

__all__ = ["app", "main"]


def _one_line_warnings(show: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints a RetentionWarning as one line ``warning: ...`` on
    stderr and hands any other warning to ``show``."""

    def showwarning(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
        if issubclass(category, RetentionWarning):
            text = escape(" ".join(str(message).split()))
            err_console.print(f"[bold yellow]warning:[/] {text}", highlight=False, soft_wrap=True)
        else:
            show(message, category, *args, **kw)

    return showwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``retention`` console script; returns the exit status.

    A :class:`~retention.exceptions.RetentionWarning` is shown as one line ``warning: ...`` on
    stderr (each distinct message once) and never changes the exit status.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("default", RetentionWarning)
        warnings.showwarning = _one_line_warnings(warnings.showwarning)
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    try:
        app(args=argv, prog_name="retention")
    except RetentionError as exc:
        message = escape(str(exc))
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        return 2
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
