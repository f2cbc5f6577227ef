"""The Typer application every command module registers on."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from retention._progress import RichProgress
from retention._settings import get_settings
from retention.exceptions import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from retention.workflows import Store

__all__ = [
    "DbOption",
    "HorizonOption",
    "NTrainOption",
    "RetainedByOption",
    "app",
    "console",
    "err_console",
    "open_store",
    "parse_cutoff_option",
    "parse_params_option",
    "progress",
    "resolve_db",
]


def _escape_help(command: Any) -> None:
    """Escape the help texts of ``command`` and its subcommands for Typer's Rich help.

    Typer renders help as Rich markup, which eats ``[columns]`` ("TOML mapping file (, , )") and
    fails on ``[/x]``: every help text is shown as written instead.
    """
    for attr in ("help", "short_help", "epilog"):
        text = getattr(command, attr, None)
        if isinstance(text, str):
            setattr(command, attr, escape(text))
    for param in getattr(command, "params", ()):
        text = getattr(param, "help", None)
        if isinstance(text, str):
            param.help = escape(text)
    for sub in getattr(command, "commands", {}).values():
        _escape_help(sub)


class _Group(typer.core.TyperGroup):
    """The root command group: help texts are shown as written, never read as Rich markup."""

    _escaped = False

    def main(self, args: Sequence[str] | None = None, *a: Any, **kw: Any) -> Any:
        if not self._escaped:
            _escape_help(self)
            self._escaped = True
        return super().main(args, *a, **kw)


app = typer.Typer(
    name="retention",
    help="Customer retention for e-commerce: who comes back, what they are worth, why, what to do.",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: stdout and stderr of every command. Markup and emoji codes are off: what is printed (ids,
#: file names, messages) is shown as written; style with ``style=`` or ``rich.text.Text``.
console = Console(markup=False, emoji=False)
err_console = Console(stderr=True, markup=False, emoji=False)

#: ``--db PATH``, shared by every command that reads or writes the store
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="DuckDB store (default: $RETENTION_DB or ./retention.duckdb).",
        show_default=False,
    ),
]


#: ``--horizon DAYS``: the label window a model learns (backtest, train, tune)
HorizonOption = Annotated[
    int,
    typer.Option("--horizon", min=1, help="Label window in days: a purchase in [cutoff, +DAYS)."),
]
#: ``--n-train N``: how many learning cutoffs (backtest, train, tune)
NTrainOption = Annotated[int, typer.Option("--n-train", min=1, help="Number of training cutoffs.")]
#: ``--retained-by``: the activity that counts as coming back (label, population, BTYD)
RetainedByOption = Annotated[
    str,
    typer.Option(
        "--retained-by",
        help="What counts as coming back: purchase, any, or event types (review,view).",
    ),
]


@app.callback()
def _root() -> None:
    """Customer retention for e-commerce: who comes back, what they are worth, why, what to do."""


def resolve_db(db: Path | None) -> Path:
    """``--db`` when given, else ``RETENTION_DB``, else ``./retention.duckdb``."""
    return db if db is not None else get_settings().db


@contextmanager
def open_store(db: Path | None, *, read_only: bool, create: bool = False) -> Iterator[Store]:
    """The one store a command works on: ``--db`` (see :func:`resolve_db`), opened once.

    Commands that only read open it read-only, so that they can run beside a writer (a store of
    an older schema is migrated first); only the commands that load data (``ingest``,
    ``datasets load``) create a missing file.
    """
    from retention import workflows

    with workflows.Store.open(resolve_db(db), read_only=read_only, create=create) as store:
        yield store


def progress() -> RichProgress:
    """What the CLI passes to workflows: Rich spinners and bars on stderr (off with
    ``RETENTION_PROGRESS=0``)."""
    return RichProgress()


def parse_cutoff_option(value: str | None) -> pd.Timestamp | None:
    """``--cutoff YYYY-MM-DD`` as a timestamp (None when not given), by the one cutoff rule."""
    from retention import workflows

    return None if value is None else workflows.to_cutoff(value)


def parse_params_option(value: str | None, model: str) -> dict[str, Any]:
    """``--params`` (train, tune): a JSON object (``'{"num_leaves": 8}'``) or a JSON file (a
    plain object, or what ``retention tune --json`` wrote)."""
    from retention import workflows

    if value is None:
        return {}
    if value.lstrip().startswith("{"):
        try:
            payload = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"--params is not a valid JSON object ({exc}). Pass e.g. "
                "--params '{\"num_leaves\": 8}' or a JSON file."
            ) from exc
        return workflows.model_params_from(payload, model)
    return workflows.read_model_params(Path(value), model)
