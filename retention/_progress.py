"""Progress bars shared by every stage (Rich), switched off by ``RETENTION_PROGRESS=0``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from retention._settings import get_settings

__all__ = ["progress_bar", "status", "track"]

T = TypeVar("T")

_console = Console(stderr=True)


class _InfoColumn(ProgressColumn):
    """Shows ``task.fields["info"]`` (for example the current loss) when a task sets it."""

    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("info", "")))


def _enabled() -> bool:
    return get_settings().progress


@contextmanager
def progress_bar(transient: bool = False) -> Iterator[Progress]:
    """A Rich ``Progress`` on stderr; disabled (still usable) when progress is off.

    Examples
    --------
    >>> with progress_bar() as bar:
    ...     task = bar.add_task("fitting", total=3)
    ...     for epoch in range(3):
    ...         bar.update(task, advance=1, info=f"loss {0.5 / (epoch + 1):.3f}")
    """
    columns = (
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        _InfoColumn(),
    )
    with Progress(*columns, console=_console, transient=transient, disable=not _enabled()) as bar:
        yield bar


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar."""
    with progress_bar() as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner with ``message`` while a step of unknown length runs."""
    if not _enabled():
        yield
        return
    with _console.status(message):
        yield
