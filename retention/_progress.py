"""Progress: the callback protocol of workflows, and the Rich bars shared by every stage.

Workflows report through a :class:`Progress` object passed by their caller: the CLI passes a
:class:`RichProgress` (bars on stderr), a service passes none and gets :class:`NullProgress`.
The lower stages draw their own bars with :func:`progress_bar`, :func:`track` and :func:`status`.
Every Rich bar is switched off by ``RETENTION_PROGRESS=0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar, runtime_checkable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as _Bar
from rich.text import Text

from retention._settings import get_settings

__all__ = [
    "NullProgress",
    "Progress",
    "ProgressTask",
    "RichProgress",
    "as_progress",
    "progress_bar",
    "status",
    "track",
]

T = TypeVar("T")

_console = Console(stderr=True)


class _InfoColumn(ProgressColumn):
    """Shows ``task.fields["info"]`` (for example the current loss) when a task sets it."""

    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("info", "")))


def _enabled() -> bool:
    return get_settings().progress


@contextmanager
def progress_bar(transient: bool = False) -> Iterator[_Bar]:
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
        # descriptions hold file names and ids: shown as written, never read as markup
        TextColumn("{task.description}", style="progress.description", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        _InfoColumn(),
    )
    with _Bar(*columns, console=_console, transient=transient, disable=not _enabled()) as bar:
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
    with _console.status(Text(message)):
        yield


# ------------------------------------------------------------------------ the callback protocol
@runtime_checkable
class ProgressTask(Protocol):
    """A task of known (or unknown) length, advanced as its steps finish."""

    def advance(self, steps: int = 1) -> None:
        """Mark ``steps`` more steps as done."""


@runtime_checkable
class Progress(Protocol):
    """What a workflow tells its caller while it runs.

    ``stage(message)`` wraps a step of unknown length ("building features"); ``task(description,
    total)`` wraps a loop of ``total`` steps and yields a :class:`ProgressTask` to advance.

    Examples
    --------
    >>> progress = NullProgress()
    >>> with progress.stage("building features"):
    ...     pass
    >>> with progress.task("fitting", total=2) as task:
    ...     for _ in range(2):
    ...         task.advance()
    """

    def stage(self, message: str) -> AbstractContextManager[None]:
        """A context manager around one step of unknown length."""
        ...

    def task(
        self, description: str, total: int | None = None
    ) -> AbstractContextManager[ProgressTask]:
        """A context manager around ``total`` steps; yields the task to advance."""
        ...


class _NullTask:
    def advance(self, steps: int = 1) -> None:
        return None


class NullProgress:
    """A :class:`Progress` that shows nothing (the default of workflows; what a service uses)."""

    @contextmanager
    def stage(self, message: str) -> Iterator[None]:
        yield

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[ProgressTask]:
        yield _NullTask()


class _RichTask:
    def __init__(self, bar: _Bar, task_id: TaskID) -> None:
        self._bar = bar
        self._id = task_id

    def advance(self, steps: int = 1) -> None:
        self._bar.advance(self._id, steps)


class RichProgress:
    """A :class:`Progress` drawing Rich spinners and bars on stderr (what the CLI passes).

    Off when ``RETENTION_PROGRESS=0``, like every bar of the lower stages.
    """

    def stage(self, message: str) -> AbstractContextManager[None]:
        return status(message)

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[ProgressTask]:
        with progress_bar() as bar:
            yield _RichTask(bar, bar.add_task(description, total=total))


def as_progress(progress: Progress | None) -> Progress:
    """``progress``, or a :class:`NullProgress` when it is None."""
    return NullProgress() if progress is None else progress
