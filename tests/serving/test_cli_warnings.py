"""The CLI shows a RetentionWarning as one line ``warning: ...`` on stderr, never a traceback."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import retention.serving.cli as cli
from retention.exceptions import ConfigError, RetentionWarning


def test_a_retention_warning_is_one_line_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def command(args: Any, prog_name: str, **kw: Any) -> None:
        for _ in range(2):  # the same warning twice: shown once
            warnings.warn(
                "The BG/NBD fit is degenerate: a=2e-07 ran off towards\n the optimiser's lower "
                "bound 1e-08 [a -> 0]",
                RetentionWarning,
                stacklevel=1,
            )
        warnings.warn("thin data: 3 of 5 customers", RetentionWarning, stacklevel=1)

    monkeypatch.setattr(cli, "app", command)
    assert cli.main([]) == 0  # a warning never changes the exit status
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "warning: The BG/NBD fit is degenerate: a=2e-07 ran off towards the optimiser's lower "
        "bound 1e-08 [a -> 0]",
        "warning: thin data: 3 of 5 customers",
    ]


def test_an_error_with_brackets_is_printed_as_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def command(args: Any, prog_name: str, **kw: Any) -> None:
        raise ConfigError("add an [event_types] table to the --mapping file.")

    monkeypatch.setattr(cli, "app", command)
    assert cli.main([]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: add an [event_types] table to the --mapping file."
    )
