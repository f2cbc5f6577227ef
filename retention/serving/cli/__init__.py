"""Command-line interface: ``retention COMMAND``.

Each module registers its commands on the shared :data:`app`; commands call
:mod:`retention.workflows` only. Whatever goes wrong, the user sees one line on stderr and a
non-zero exit status, never a traceback:

* a :class:`~retention.exceptions.RetentionError` (bad input, a store or model that cannot be
  used): ``error: MESSAGE``, exit status 2;
* a wrong flag, a missing argument or a value of the wrong type: ``error: MESSAGE (see
  `retention COMMAND --help`)``, exit status 2;
* anything else is a bug of retention: ``error: internal error ...``, exit status 70
  (``RETENTION_TRACEBACK=1`` shows the traceback instead).

A :class:`~retention.exceptions.RetentionWarning` is one line ``warning: MESSAGE`` on stderr,
the first of each kind once per command (the same text with other numbers, such as the same
degenerate fit at another cutoff, is counted in one last line instead). Everything is printed
as written: ids, file names and messages are never read as Rich markup.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any

import typer
from rich.text import Text

from retention.exceptions import RetentionError, RetentionWarning
from retention.serving.cli._app import app, err_console

# Importing the command modules registers their commands on ``app``.
from retention.serving.cli import _version  # noqa: F401  isort: skip
from retention.serving.cli import _data  # noqa: F401  isort: skip
from retention.serving.cli import _predict  # noqa: F401  isort: skip
from retention.serving.cli import _datasets  # noqa: F401  isort: skip
from retention.serving.cli import _explain  # noqa: F401  isort: skip
from retention.serving.cli import _experiment  # noqa: F401  isort: skip
from retention.serving.cli import _serve  # noqa: F401  isort: skip
from retention.serving.cli import _recommend  # noqa: F401  isort: skip
from retention.serving.cli import _uplift  # noqa: F401  isort: skip
from retention.serving.cli import _loyalty  # noqa: F401  isort: skip
from retention.serving.cli import _plan  # noqa: F401  isort: skip
from retention.serving.cli import _features  # noqa: F401  isort: skip
from retention.serving.cli import _tune  # noqa: F401  isort: skip
from retention.serving.cli import _monitor  # noqa: F401  isort: skip
from retention.serving.cli import _registry  # noqa: F401  isort: skip
from retention.serving.cli import _runs  # noqa: F401  isort: skip

try:  # recent Typer carries its own copy of Click
    from typer._click import exceptions as _click_exceptions
except ImportError:  # pragma: no cover - older Typer on Click
    from click import exceptions as _click_exceptions  # type: ignore[no-redef]

#: what Click and Typer raise on Ctrl-C or end of input
_ABORTS: tuple[type[BaseException], ...] = tuple(
    {typer.Abort, getattr(_click_exceptions, "Abort", typer.Abort), KeyboardInterrupt}
)

__all__ = ["app", "main"]

#: exit status of an unexpected error (a bug): EX_SOFTWARE of sysexits.h
INTERNAL_ERROR = 70


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _print_line(label: str, style: str, message: str) -> None:
    """``label message`` as one line on stderr, the message exactly as written."""
    err_console.print(
        Text.assemble((label, style), " ", _one_line(message)), highlight=False, soft_wrap=True
    )


#: numbers in a warning (``3``, ``-0.5``, ``1.2e-07``, ``2011-09-10``): two warnings that differ
#: only in them are one kind (the same degenerate fit at another cutoff)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


class _WarningLines:
    """``warnings.showwarning`` for a command: a RetentionWarning is one line ``warning: ...`` on
    stderr, the first of its kind only (the same text with other numbers counts as the same
    kind); :meth:`summary` then says how many were not repeated. Other warnings go to ``show``.
    """

    def __init__(self, show: Callable[..., None]) -> None:
        self._show = show
        self._kinds: set[str] = set()
        self._texts: set[str] = set()
        self.not_shown = 0

    def __call__(
        self, message: Warning | str, category: type[Warning], *args: Any, **kw: Any
    ) -> None:
        if not issubclass(category, RetentionWarning):
            self._show(message, category, *args, **kw)
            return
        text = _one_line(str(message))
        kind = _NUMBER.sub("#", text)
        if kind in self._kinds:
            if text not in self._texts:
                self._texts.add(text)
                self.not_shown += 1
            return
        self._kinds.add(kind)
        self._texts.add(text)
        _print_line("warning:", "bold yellow", text)

    def summary(self) -> None:
        if self.not_shown:
            n = self.not_shown
            _print_line(
                "warning:",
                "bold yellow",
                f"{n} more warning{'s' if n > 1 else ''} like the above (the same with other "
                f"numbers: another fit or cutoff) {'were' if n > 1 else 'was'} not repeated.",
            )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``retention`` console script; returns the exit status.

    A :class:`~retention.exceptions.RetentionWarning` is shown as one line ``warning: ...`` on
    stderr (the first of each kind, once per command) and never changes the exit status.
    """
    with warnings.catch_warnings():
        # every RetentionWarning reaches showwarning, which shows each kind once: the default
        # filter would repeat a message raised from several places (or after a library reset
        # the filters) and hide one a previous command in this process already showed
        warnings.simplefilter("always", RetentionWarning)
        lines = _WarningLines(warnings.showwarning)
        warnings.showwarning = lines
        try:
            return _run(argv)
        finally:
            lines.summary()


def _run(argv: list[str] | None) -> int:
    try:
        code = app(args=argv, prog_name="retention", standalone_mode=False)
    except RetentionError as exc:
        _print_line("error:", "bold red", str(exc))
        return 2
    except _click_exceptions.UsageError as exc:
        return _usage_error(exc, sys.argv[1:] if argv is None else argv)
    except _click_exceptions.ClickException as exc:
        _print_line("error:", "bold red", exc.format_message())
        return int(exc.exit_code) or 1
    except _ABORTS:
        _print_line("error:", "bold red", "interrupted: nothing more was done.")
        return 130
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:  # a bug: the user still gets one line, never a traceback
        if os.environ.get("RETENTION_TRACEBACK", "").strip() not in {"", "0"}:
            raise
        first = next(iter(str(exc).strip().splitlines()), "")
        _print_line(
            "error:",
            "bold red",
            f"internal error: {type(exc).__name__}{': ' + first if first else ''}. This is a bug "
            "of retention: please report it with the command you ran (RETENTION_TRACEBACK=1 "
            "shows the traceback).",
        )
        return INTERNAL_ERROR
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def _usage_error(exc: Any, argv: list[str]) -> int:
    """A wrong flag, a missing argument, a value of the wrong type: one line naming the help."""
    ctx = getattr(exc, "ctx", None)
    where = f"`{ctx.command_path if ctx is not None else _command_path(argv)} --help`"
    if type(exc).__name__ == "NoArgsIsHelpError":
        # a group run without a command: its help (Typer's Rich help is printed when the error
        # is made; plain Click returns it as the message), then one line saying so
        text = exc.format_message()
        if text.strip():
            print(text)
        names = sorted(getattr(ctx.command, "commands", {}) if ctx is not None else ())
        message = "no command given: pass one of " + ", ".join(names) if names else "no command"
        _print_line("error:", "bold red", f"{message} (see {where}).")
        return 2
    message = _one_line(exc.format_message()).rstrip(". ")
    option = getattr(exc, "option_name", None)
    if type(exc).__name__ == "NoSuchOption" and where == "`retention --help`" and option in argv:
        # `retention --db x info`: the options of a command come after its name
        later = argv[argv.index(option) + 1 :]
        command = next(
            (p for i in range(len(later)) if (p := _command_path(later[i:])) != "retention"), None
        )
        if command is not None:
            message += f"; options go after the command: `{command} {option} ...`"
    _print_line("error:", "bold red", f"{message} (see {where}).")
    return int(getattr(exc, "exit_code", 2)) or 2


def _command_path(argv: list[str]) -> str:
    """``retention datasets load`` for ``argv`` (Click gives no context when an option's value
    is missing): the leading words that name commands."""
    import typer.main

    words = ["retention"]
    group: Any = typer.main.get_command(app)
    for word in argv:
        sub = getattr(group, "commands", {}).get(word)
        if sub is None:
            break
        words.append(word)
        group = sub
    return " ".join(words)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
