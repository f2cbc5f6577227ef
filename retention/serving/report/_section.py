"""One block of an HTML report: a title, plots, a table or an HTML fragment, and a caption."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from retention.exceptions import ConfigError

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["ReportSection"]


@dataclass(frozen=True)
class ReportSection:
    """A section of a report, placed in order after the built-in ones.

    Any stage adds a section with one call, for example the explain stage::

        ReportSection(
            "Feature importance",
            figures=[importance_bar_figure],
            notes="Longer bars matter more to the model's ranking.",
        )

    Parameters
    ----------
    title : str
        Heading of the section (plain text, escaped).
    figures : sequence of plotly Figure
        Plots shown one after the other; each becomes one plot ``<div>``.
    table : pd.DataFrame or None
        A table shown as HTML (values escaped; floats with 4 significant digits).
    html : str or None
        A trusted HTML fragment inserted as is (build it from your own code, never from user
        input; text from users belongs in ``notes`` or ``table``, which are escaped).
    notes : str
        A short caption in plain words under the section saying how to read it (escaped).
    wide : bool
        Span the whole width of the page; narrow sections sit two per row on wide screens.
    anchor : str or None
        The id used in links to the section; derived from ``title`` when None.
    """

    title: str
    figures: Sequence[go.Figure] = ()
    table: pd.DataFrame | None = None
    html: str | None = None
    notes: str = ""
    wide: bool = True
    anchor: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            raise ConfigError(
                f"A report section needs a non-empty title; got {self.title!r}. "
                "Pass ReportSection(title='...', ...)."
            )
        if isinstance(self.figures, str) or not isinstance(self.figures, Sequence):
            raise ConfigError(
                f"ReportSection.figures must be a list of plotly figures; got "
                f"{type(self.figures).__name__}. Wrap a single figure in a list: figures=[fig]."
            )
        for fig in self.figures:
            if not hasattr(fig, "to_plotly_json"):
                raise ConfigError(
                    f"ReportSection {self.title!r}: figures must be plotly figures; got "
                    f"{type(fig).__name__}. Build them with plotly.graph_objects or plotly.express."
                )
        if self.table is not None and not isinstance(self.table, pd.DataFrame):
            raise ConfigError(
                f"ReportSection {self.title!r}: table must be a pandas DataFrame; got "
                f"{type(self.table).__name__}. Convert it with pd.DataFrame(...)."
            )
        if self.html is not None and not isinstance(self.html, str):
            raise ConfigError(
                f"ReportSection {self.title!r}: html must be a string; got "
                f"{type(self.html).__name__}."
            )

    @property
    def slug(self) -> str:
        """The anchor of the section in the page."""
        if self.anchor:
            return self.anchor
        slug = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")
        return slug or "section"
