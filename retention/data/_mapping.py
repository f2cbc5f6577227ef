"""Bring-your-own data: a column map, an event-type value map and reader options.

A :class:`Mapping` says where each canonical column of the contract comes from. A source is either
a column of the file (``user_id = "CustomerID"``) or, when it is not exactly a column name, one
SQL expression over the file's columns (``amount = "abs(Quantity) * UnitPrice"``). A mapping is
data, never code: when the file is staged, each expression is parsed as one expression and may
hold only the file's columns, literals, operators, CASE, CAST/TRY_CAST and the scalar functions
of :data:`~retention.data.MAP_FUNCTIONS` (see :mod:`retention.data._expr`); statements, ``;``,
subqueries, table functions and anything that reads files or the environment are refused with a
:class:`~retention.exceptions.ConfigError`, and only the SQL rebuilt from the parsed tree runs.
It is written on the command line (``--map user_id=CustomerID --event-type C=return``) or in a
small TOML file::

    [columns]
    user_id = "CustomerID"
    ts = "InvoiceDate"
    amount = "abs(Quantity) * UnitPrice"
    event_type = "CASE WHEN starts_with(InvoiceNo, 'C') THEN 'return' ELSE 'purchase' END"

    [event_types]          # source value -> event type
    sale = "purchase"

    [reader]
    format = "csv"         # csv | parquet | jsonl (default: from the file name)
    delimiter = ";"        # default: sniffed
    encoding = "latin-1"   # utf-8 | latin-1 | utf-16 | utf-16-le | utf-16-be (default: sniffed)
    header = true          # default: sniffed
    ts_format = "%d/%m/%Y %H:%M"   # or epoch_s, epoch_ms, epoch_us, epoch_ns (default: sniffed)
    min_ts = "1990-01-01"  # earlier times are quarantined (default: RETENTION_MIN_TS)
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from retention.exceptions import ConfigError

__all__ = ["EPOCH_UNITS", "FORMATS", "Mapping"]

#: file formats the readers know
FORMATS: tuple[str, ...] = ("csv", "parquet", "jsonl")
#: ``ts_format`` values that read numbers as times since 1970-01-01 UTC -> microseconds per unit
EPOCH_UNITS: dict[str, float] = {
    "epoch_s": 1e6,
    "epoch_ms": 1e3,
    "epoch_us": 1.0,
    "epoch_ns": 1e-3,
}
_ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
    "cp1252": "latin-1",
    "utf-16": "utf-16",
    "utf16": "utf-16",
    "utf-16le": "utf-16-le",
    "utf-16-le": "utf-16-le",
    "utf-16be": "utf-16-be",
    "utf-16-be": "utf-16-be",
}
_READER_KEYS = ("format", "delimiter", "encoding", "header", "ts_format", "min_ts")


def _pairs(values: Iterable[str], flag: str, example: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ConfigError(
                f"Cannot read {flag} {raw!r}: write it as NAME=VALUE, for example {flag} {example}."
            )
        out[key] = value
    return out


@dataclass(frozen=True)
class Mapping:
    """Where the canonical columns come from, and how to read the file.

    Parameters
    ----------
    columns : dict of str to str
        Canonical name -> source column name, or one SQL expression over source columns when
        the source is not exactly a column name (checked against the file's columns and an
        allowlist when the file is read; see the module docstring). A canonical column that is
        not mapped but is present in the file under its own name is used as is.
    event_types : dict of str to str
        Source value -> event type. Canonical types (view, cart, purchase, return, review) pass
        as they are; with a value map, other values are quarantined as "unmapped event type".
    format, delimiter, encoding, header, ts_format
        Reader options; ``None`` means detect (format from the file name, the rest sniffed).
        ``ts_format`` is a strptime format, or one of :data:`EPOCH_UNITS` (``epoch_s``,
        ``epoch_ms``, ``epoch_us``, ``epoch_ns``) for numbers counted from 1970-01-01 UTC
        (without it, a column of such numbers is recognised by their magnitude).
    min_ts : str, optional
        Times before this date (``YYYY-MM-DD`` or an ISO time) are quarantined as not real
        (``0001-01-01``, ``1970-01-01``); ``"none"`` keeps every time. Default: the
        ``RETENTION_MIN_TS`` setting (``1990-01-01``).

    Examples
    --------
    >>> m = Mapping.from_cli(["user_id=CustomerID", "ts=InvoiceDate"], ["C=return"])
    >>> m.columns["user_id"], m.event_types
    ('CustomerID', {'C': 'return'})
    """

    columns: dict[str, str] = field(default_factory=dict)
    event_types: dict[str, str] = field(default_factory=dict)
    format: str | None = None
    delimiter: str | None = None
    encoding: str | None = None
    header: bool | None = None
    ts_format: str | None = None
    min_ts: str | None = None

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(
                f"Unknown file format {self.format!r}: use one of {', '.join(FORMATS)}."
            )
        if self.encoding is not None:
            enc = _ENCODINGS.get(self.encoding.strip().lower())
            if enc is None:
                raise ConfigError(
                    f"Unsupported encoding {self.encoding!r}: use utf-8 or latin-1 (or utf-16, "
                    "utf-16-le, utf-16-be); convert other encodings to UTF-8 first, e.g. with "
                    "iconv."
                )
            object.__setattr__(self, "encoding", enc)
        if self.delimiter is not None:
            delim = {"\\t": "\t", "tab": "\t"}.get(self.delimiter, self.delimiter)
            if len(delim) != 1:
                raise ConfigError(
                    f"The delimiter must be one character, got {self.delimiter!r}: "
                    'for example delimiter = ";" or "\\t".'
                )
            object.__setattr__(self, "delimiter", delim)
        if self.ts_format is not None and self.ts_format.strip().lower() in EPOCH_UNITS:
            object.__setattr__(self, "ts_format", self.ts_format.strip().lower())
        if self.min_ts is not None:
            from retention._settings import parse_min_ts

            parse_min_ts(self.min_ts, "min_ts")  # refuse a bad value now, not at ingest
        for name, source in {**self.columns, **self.event_types}.items():
            if not isinstance(name, str) or not isinstance(source, str) or not source.strip():
                raise ConfigError(
                    f"Mapping entry {name!r} = {source!r} is not a pair of non-empty strings: "
                    'write it as name = "source".'
                )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_cli(
        cls, maps: Iterable[str] = (), event_types: Iterable[str] = (), **reader: Any
    ) -> Mapping:
        """From ``--map canonical=source`` and ``--event-type SOURCE=TYPE`` options.

        Parameters
        ----------
        maps : iterable of str
            ``canonical=source`` pairs (the source may itself contain ``=``).
        event_types : iterable of str
            ``source_value=event_type`` pairs.
        **reader
            Reader options (``format``, ``delimiter``, ``encoding``, ``header``, ``ts_format``,
            ``min_ts``); ``None`` values are ignored.
        """
        cols = _pairs(maps, "--map", "user_id=CustomerID")
        types = _pairs(event_types, "--event-type", "C=return")
        opts = {k: v for k, v in reader.items() if v is not None}
        unknown = set(opts) - set(_READER_KEYS)
        if unknown:
            raise ConfigError(
                f"Unknown reader option(s) {', '.join(sorted(unknown))}: "
                f"the options are {', '.join(_READER_KEYS)}."
            )
        return cls(columns=cols, event_types=types, **opts)

    @classmethod
    def from_toml(cls, path: str | Path) -> Mapping:
        """From a TOML file with sections ``[columns]``, ``[event_types]`` and ``[reader]``."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"Mapping file {path} does not exist: check the path given to --mapping."
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"Cannot read mapping file {path} ({exc}): pass a UTF-8 TOML file."
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"Mapping file {path} is not valid TOML ({exc}): fix the syntax, "
                'for example user_id = "CustomerID" under [columns].'
            ) from None
        unknown = set(data) - {"columns", "event_types", "reader"}
        if unknown:
            raise ConfigError(
                f"Mapping file {path} has unknown section(s) {', '.join(sorted(unknown))}: "
                "use [columns], [event_types] and [reader]."
            )
        sections: dict[str, dict[str, Any]] = {}
        for name in ("columns", "event_types", "reader"):
            section = data.get(name, {})
            if not isinstance(section, dict):
                raise ConfigError(
                    f"In mapping file {path}, {name} must be a table ([{name}]), "
                    f"got {type(section).__name__}."
                )
            sections[name] = section
        for name in ("columns", "event_types"):
            for key, value in sections[name].items():
                if not isinstance(value, str):
                    raise ConfigError(
                        f"In mapping file {path}, [{name}] {key} must be a string, got "
                        f'{value!r}: quote it, e.g. {key} = "{value}".'
                    )
        reader = sections["reader"]
        unknown = set(reader) - set(_READER_KEYS)
        if unknown:
            raise ConfigError(
                f"Mapping file {path} has unknown [reader] key(s) "
                f"{', '.join(sorted(unknown))}: the keys are {', '.join(_READER_KEYS)}."
            )
        if "header" in reader and not isinstance(reader["header"], bool):
            raise ConfigError(
                f"In mapping file {path}, [reader] header must be true or false, "
                f"got {reader['header']!r}."
            )
        for key in ("format", "delimiter", "encoding", "ts_format", "min_ts"):
            if key in reader and not isinstance(reader[key], str):
                raise ConfigError(
                    f"In mapping file {path}, [reader] {key} must be a string, got {reader[key]!r}."
                )
        return cls(
            columns=dict(sections["columns"]),
            event_types=dict(sections["event_types"]),
            **reader,
        )

    def merge(self, other: Mapping | None) -> Mapping:
        """This mapping with ``other``'s entries and set options on top (CLI over TOML)."""
        if other is None:
            return self
        opts = {k: getattr(other, k) for k in _READER_KEYS if getattr(other, k) is not None}
        return replace(
            self,
            columns={**self.columns, **other.columns},
            event_types={**self.event_types, **other.event_types},
            **opts,
        )

    def check(self, allowed: Iterable[str], table: str, allow_extra: bool = False) -> None:
        """Refuse canonical names that ``table`` does not have.

        Raises
        ------
        ConfigError
            Naming the unknown names and the valid ones.
        """
        allowed = tuple(allowed)
        unknown = [name for name in self.columns if name not in allowed]
        if allow_extra:
            unknown = [name for name in unknown if not name.isidentifier()]
        if unknown:
            raise ConfigError(
                f"Unknown column name(s) {', '.join(map(repr, unknown))} in the mapping for "
                f"table {table}: the canonical names are {', '.join(allowed)}."
            )
        if self.event_types and table != "events":
            raise ConfigError(
                f"Event-type value maps apply to the events table, not {table}: "
                "drop --event-type or ingest into --table events."
            )
