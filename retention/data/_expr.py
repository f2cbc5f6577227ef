"""Mapped expressions: one SQL expression over a file's columns, checked before it runs.

A column map value that is not exactly a column of the file is an expression
(``amount = "abs(Quantity) * UnitPrice"``). It comes from the command line or from a shared TOML
file, so it is untrusted: :func:`parse_map_expression` parses it with sqlglot (DuckDB dialect)
as exactly one expression and accepts only

- references to columns of the file (unqualified, matched like DuckDB does, ignoring case);
- literals (strings, numbers, booleans, NULL, ``INTERVAL``, ``DATE '...'``/``TIMESTAMP '...'``);
- arithmetic, string concatenation (``||``), comparison, ``LIKE``/``ILIKE``, ``IN (list)``,
  ``BETWEEN``, ``IS [NOT] NULL``, ``AND``/``OR``/``NOT`` and bitwise operators;
- ``CASE``, ``CAST``/``TRY_CAST`` (and ``::``);
- the scalar functions of :data:`MAP_FUNCTIONS`, and the window functions of
  :data:`MAP_WINDOW_FUNCTIONS` with ``OVER (PARTITION BY ... ORDER BY ...)`` over columns
  (the bundled CDNOW mappings number identical rows with ``row_number()``).

Anything else is refused with a :class:`~retention.exceptions.ConfigError` that names the
expression and what is allowed: statements (``DROP``, ``DELETE``, ``COPY``, ``ATTACH``,
``PRAGMA``, ``SET``, ``INSTALL``/``LOAD``...), ``;`` chains, subqueries, table functions, ``*``,
parameters, lambdas, functions that read files or the environment (``read_csv``,
``read_text``, ``getenv``, ``current_setting``...) and any other function.

The SQL that runs is generated from the checked tree (identifiers quoted, comments dropped),
never the text as written. Two more checks guard against the two parsers disagreeing: the
generated SQL is parsed and checked again (and must generate itself), and DuckDB's own parser
reads it (``json_serialize_sql``, which parses and never executes, on a private in-memory
DuckDB with external access disabled and its configuration locked): every node DuckDB sees must
be a column of the file, a constant, an allowed operator or an allowed function.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, SqlglotError

from retention.exceptions import ConfigError, SchemaError

__all__ = [
    "MAP_FUNCTIONS",
    "MAP_WINDOW_FUNCTIONS",
    "MapExpression",
    "parse_map_expression",
]

#: scalar functions a mapped expression may call (DuckDB names)
MAP_FUNCTIONS: frozenset[str] = frozenset(
    {
        # text
        "ascii",
        "chr",
        "concat",
        "concat_ws",
        "contains",
        "ends_with",
        "format",
        "instr",
        "lcase",
        "left",
        "length",
        "lower",
        "lpad",
        "ltrim",
        "md5",
        "nullif",
        "position",
        "prefix",
        "printf",
        "regexp_extract",
        "regexp_matches",
        "regexp_replace",
        "repeat",
        "replace",
        "reverse",
        "right",
        "rpad",
        "rtrim",
        "sha256",
        "split_part",
        "starts_with",
        "strlen",
        "strpos",
        "substr",
        "substring",
        "suffix",
        "translate",
        "trim",
        "ucase",
        "upper",
        # choice
        "coalesce",
        "greatest",
        "if",
        "ifnull",
        "least",
        # numbers
        "abs",
        "cbrt",
        "ceil",
        "ceiling",
        "exp",
        "floor",
        "isfinite",
        "isinf",
        "isnan",
        "ln",
        "log",
        "log10",
        "log2",
        "mod",
        "pow",
        "power",
        "round",
        "sign",
        "sqrt",
        "trunc",
        # dates and times
        "date_add",
        "date_diff",
        "date_part",
        "date_sub",
        "date_trunc",
        "datediff",
        "datepart",
        "day",
        "dayofweek",
        "dayofyear",
        "epoch",
        "epoch_ms",
        "epoch_ns",
        "epoch_us",
        "extract",
        "hour",
        "isodow",
        "last_day",
        "make_date",
        "make_time",
        "make_timestamp",
        "minute",
        "month",
        "quarter",
        "second",
        "strftime",
        "strptime",
        "timezone",
        "to_timestamp",
        "try_strptime",
        "week",
        "year",
    }
)
#: window functions a mapped expression may call, with ``OVER (...)`` only
MAP_WINDOW_FUNCTIONS: frozenset[str] = frozenset({"dense_rank", "rank", "row_number"})

#: longest expression accepted (characters)
MAX_LENGTH = 10_000

# what DuckDB's parser turns allowed syntax into: operators, and INTERVAL '1' DAY, which reads
# as to_days(CAST(trunc(CAST('1' AS DOUBLE)) AS INTEGER))
_DUCKDB_OPERATORS = frozenset(
    {"+", "-", "*", "/", "//", "%", "**", "^", "||", "~~", "!~~", "~~*", "!~~*", "&", "|"}
    | {"<<", ">>", "~", "xor"}
)
_DUCKDB_INTERVALS = frozenset(
    f"to_{unit}"
    for unit in (
        "centuries",
        "decades",
        "years",
        "quarters",
        "months",
        "weeks",
        "days",
        "hours",
        "minutes",
        "seconds",
        "milliseconds",
        "microseconds",
    )
)
_DUCKDB_CLASSES = frozenset(
    {"CONSTANT", "CASE", "CAST", "COMPARISON", "CONJUNCTION", "BETWEEN", "TYPE"}
)
_DUCKDB_OPERATOR_TYPES = frozenset(
    {
        "OPERATOR_NOT",
        "OPERATOR_IS_NULL",
        "OPERATOR_IS_NOT_NULL",
        "OPERATOR_COALESCE",
        "OPERATOR_NULLIF",
        "COMPARE_IN",
        "COMPARE_NOT_IN",
    }
)

#: functions worth naming in the error: they read files, the environment or the catalog
_READERS = frozenset(
    {
        "getenv",
        "current_setting",
        "glob",
        "query",
        "query_table",
        "read_blob",
        "read_csv",
        "read_csv_auto",
        "read_json",
        "read_json_auto",
        "read_json_objects",
        "read_ndjson",
        "read_parquet",
        "read_text",
        "parquet_scan",
        "parquet_metadata",
        "parquet_schema",
        "sniff_csv",
        "duckdb_settings",
        "duckdb_tables",
        "duckdb_secrets",
    }
)
_STATEMENTS = frozenset(
    {
        "ALTER",
        "ANALYZE",
        "ATTACH",
        "BEGIN",
        "CALL",
        "CHECKPOINT",
        "COMMENT",
        "COMMIT",
        "COPY",
        "CREATE",
        "DEALLOCATE",
        "DELETE",
        "DESCRIBE",
        "DETACH",
        "DROP",
        "EXECUTE",
        "EXPLAIN",
        "EXPORT",
        "FORCE",
        "FROM",
        "GRANT",
        "IMPORT",
        "INSERT",
        "INSTALL",
        "LOAD",
        "MERGE",
        "PIVOT",
        "PRAGMA",
        "PREPARE",
        "RESET",
        "ROLLBACK",
        "SELECT",
        "SET",
        "SHOW",
        "SUMMARIZE",
        "TABLE",
        "TRUNCATE",
        "UNPIVOT",
        "UPDATE",
        "USE",
        "VACUUM",
        "VALUES",
        "WITH",
    }
)
_OPERATOR_NODES: tuple[type[exp.Expr], ...] = (
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.IntDiv,
    exp.Mod,
    exp.Pow,
    exp.DPipe,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
    exp.And,
    exp.Or,
    exp.Xor,
    exp.Not,
    exp.Neg,
    exp.Is,
    exp.Like,
    exp.ILike,
    exp.Between,
    exp.In,
    exp.BitwiseAnd,
    exp.BitwiseOr,
    exp.BitwiseXor,
    exp.BitwiseNot,
    exp.BitwiseLeftShift,
    exp.BitwiseRightShift,
)
_VALUE_NODES: tuple[type[exp.Expr], ...] = (
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Paren,
    exp.Identifier,
    exp.Var,
    exp.Interval,
    exp.Case,
    exp.If,
    exp.Cast,
    exp.TryCast,
    exp.DataType,
    exp.DataTypeParam,
    exp.Window,
    exp.WindowSpec,
    exp.Order,
    exp.Ordered,
)
_DIALECT = Dialect.get_or_raise("duckdb")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")

_HINT = (
    "Map a column of the file, or one expression over its columns with literals, operators, "
    "CASE, CAST/TRY_CAST and the scalar functions of retention.data.MAP_FUNCTIONS (abs, round, "
    "lower, upper, trim, concat, coalesce, nullif, strptime, to_timestamp, make_timestamp, "
    "epoch_ms, date_trunc, regexp_replace, substr, ...)"
)


@dataclass(frozen=True)
class MapExpression:
    """A checked mapped expression.

    Attributes
    ----------
    text : str
        The expression as written (for reports and messages).
    sql : str
        The SQL generated from the checked tree: what runs.
    columns : tuple of str
        The file's columns it reads (each once), spelt as in the file.
    """

    text: str
    sql: str
    columns: tuple[str, ...]


class _Refused(Exception):
    """Why an expression is refused (turned into a ConfigError by the caller)."""


def _found(columns: Sequence[str]) -> str:
    shown = ", ".join(columns[:25]) + (
        f", ... ({len(columns)} in all)" if len(columns) > 25 else ""
    )
    return shown or "none"


def _show(text: str) -> str:
    """``text`` quoted for a message, cut to 200 characters."""
    return repr(text if len(text) <= 200 else text[:200] + "...")


def _resolve(name: str, columns: Sequence[str]) -> str | None:
    """The file column ``name`` refers to: exact, else the only one equal ignoring case."""
    if name in columns:
        return name
    matches = [c for c in columns if c.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _function_name(node: exp.Func) -> str | None:
    """The name of the function ``node`` calls, as DuckDB spells it where it can."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    match = _CALL.match(_generate(node, identify=False))
    if match:
        return match.group(1).lower()
    # written as syntax in DuckDB (date_add(a, b) is a + b): checked by its own name here, and
    # the syntax it becomes is checked when the generated SQL is read back
    names = type(node).sql_names()
    return names[0].lower() if names else None


def _snippet(node: exp.Expr) -> str:
    """The start of ``node``'s SQL, for a message."""
    try:
        text = node.sql(dialect="duckdb", comments=False, unsupported_level=ErrorLevel.IGNORE)
    except SqlglotError:
        text = node.key
    return text[:60]


def _check_tree(tree: exp.Expr, columns: Sequence[str], label: str) -> list[str]:
    """Walk ``tree``; quote and resolve its columns in place; return the columns read."""
    used: dict[str, None] = {}
    for node in list(tree.walk()):
        if isinstance(node, exp.Column):
            if isinstance(node.this, exp.Star):
                raise _Refused("* (star) is not allowed")
            if node.table or node.args.get("db") or node.args.get("catalog"):
                raise _Refused(
                    f"{_snippet(node)} is a qualified name: name a column of the file alone"
                )
            found = _resolve(node.name, columns)
            if found is None:
                raise _Refused(
                    f"{node.name!r} is not a column of {label} (found: {_found(columns)})"
                )
            used.setdefault(found, None)
            node.set("this", exp.to_identifier(found, quoted=True))
            continue
        if isinstance(node, exp.In) and any(
            node.args.get(k) is not None for k in ("query", "unnest", "field")
        ):
            raise _Refused("IN takes a list of values here, not a subquery")
        if isinstance(node, _OPERATOR_NODES):
            continue
        if isinstance(node, exp.Window):
            fn = node.this
            name = _function_name(fn) if isinstance(fn, exp.Func) else None
            if name not in MAP_WINDOW_FUNCTIONS:
                raise _Refused(
                    f"only {', '.join(sorted(MAP_WINDOW_FUNCTIONS))} may take OVER (...)"
                )
            continue
        if isinstance(node, _VALUE_NODES):
            continue
        if isinstance(node, exp.Query | exp.Subquery | exp.Exists | exp.Any | exp.All):
            raise _Refused("subqueries are not allowed")
        if isinstance(node, exp.Star):
            raise _Refused("* (star) is not allowed")
        if isinstance(node, exp.Placeholder | exp.Parameter):
            raise _Refused("parameters are not allowed")
        if isinstance(node, exp.Lambda):
            raise _Refused("lambdas are not allowed")
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if name is None:
                raise _Refused(f"{_snippet(node)!r} is not allowed")
            if name in MAP_WINDOW_FUNCTIONS:
                parent = node.parent
                if isinstance(parent, exp.Window) and node.arg_key == "this":
                    continue
                raise _Refused(f"{name}() needs OVER (PARTITION BY ...)")
            if name in _READERS:
                raise _Refused(f"{name}() reads files, the environment or the catalog")
            if name not in MAP_FUNCTIONS:
                raise _Refused(f"function {name}() is not allowed")
            continue
        raise _Refused(f"{_snippet(node)!r} ({node.key}) is not allowed")
    return list(used)


def _parse(text: str) -> exp.Expr:
    """Exactly one expression (never a statement, never a ``;`` chain)."""
    try:
        tokens = _DIALECT.tokenize(text)
    except SqlglotError as exc:
        raise _Refused(f"it cannot be read as SQL ({_first_line(exc)})") from None
    if not tokens:
        raise _Refused("it is empty")
    if any(t.token_type == sqlglot.TokenType.SEMICOLON for t in tokens):
        raise _Refused("';' chains statements")
    first = tokens[0].text.upper()
    if first in _STATEMENTS:
        raise _Refused(f"it is a SQL statement ({first} ...), not an expression")
    try:
        trees = _DIALECT.parser().parse_into(exp.Condition, tokens, text)
    except SqlglotError:
        raise _Refused("it is not one SQL expression") from None
    if len(trees) != 1 or trees[0] is None:
        raise _Refused("it is not one SQL expression")
    return trees[0]


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:120] if lines else type(exc).__name__


def _generate(tree: exp.Expr, identify: bool = True) -> str:
    """DuckDB SQL of ``tree``: no comments, identifiers quoted; what DuckDB cannot express
    raises (sqlglot would otherwise log a warning and write something else)."""
    return tree.sql(
        dialect="duckdb", comments=False, identify=identify, unsupported_level=ErrorLevel.RAISE
    )


# -- DuckDB's own reading of the generated SQL -----------------------------------------------

_PARSER_LOCK = threading.Lock()
_PARSER: list[duckdb.DuckDBPyConnection] = []


def _duckdb_parser() -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB that can read nothing outside itself (used only to parse)."""
    if not _PARSER:
        _PARSER.append(
            duckdb.connect(
                ":memory:",
                config={
                    "enable_external_access": False,
                    "autoload_known_extensions": False,
                    "autoinstall_known_extensions": False,
                    "lock_configuration": True,
                    "threads": 1,
                },
            )
        )
    return _PARSER[0]


def _nodes(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        if "class" in obj:
            yield obj
        for value in obj.values():
            yield from _nodes(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _nodes(value)


def _duckdb_check(sql: str, columns: Sequence[str]) -> None:
    """Refuse ``sql`` unless DuckDB parses ``SELECT <sql>`` into allowed nodes only."""
    with _PARSER_LOCK:
        row = _duckdb_parser().execute("SELECT json_serialize_sql(?)", ["SELECT " + sql]).fetchone()
    parsed: dict[str, Any] = json.loads(row[0]) if row and row[0] else {"error": True}
    if parsed.get("error"):
        raise _Refused("DuckDB does not read it as one expression")
    statements: list[dict[str, Any]] = parsed.get("statements") or []
    node: dict[str, Any] = statements[0].get("node", {}) if len(statements) == 1 else {}
    plain = (
        node.get("type") == "SELECT_NODE"
        and len(node.get("select_list") or []) == 1
        and (node.get("from_table") or {}).get("type") == "EMPTY"
        and not node.get("modifiers")
        and not (node.get("cte_map") or {}).get("map")
        and all(not node.get(k) for k in ("where_clause", "group_expressions", "having", "qualify"))
    )
    if not plain:
        raise _Refused("DuckDB does not read it as one expression")
    lowered = {c.lower() for c in columns}
    for item in _nodes(node["select_list"]):
        cls, kind = item.get("class"), item.get("type")
        if cls == "COLUMN_REF":
            names = item.get("column_names") or []
            if len(names) != 1 or str(names[0]).lower() not in lowered:
                raise _Refused(f"DuckDB reads {'.'.join(map(str, names))!r} as a column")
        elif cls == "FUNCTION":
            name = str(item.get("function_name", "")).lower()
            if item.get("schema") or item.get("catalog"):
                raise _Refused(f"function {name}() is qualified by a schema")
            if name not in MAP_FUNCTIONS | _DUCKDB_OPERATORS | _DUCKDB_INTERVALS:
                raise _Refused(f"DuckDB reads a call of {name}(), which is not allowed")
        elif cls == "WINDOW":
            if str(item.get("function_name", "")).lower() not in MAP_WINDOW_FUNCTIONS:
                raise _Refused(f"DuckDB reads a window of {item.get('function_name')}()")
        elif cls == "OPERATOR":
            if kind not in _DUCKDB_OPERATOR_TYPES:
                raise _Refused(f"DuckDB reads an operator {kind} that is not allowed")
        elif cls not in _DUCKDB_CLASSES:
            raise _Refused(f"DuckDB reads a {str(cls).lower()}, which is not allowed")


def parse_map_expression(
    text: str, columns: Sequence[str], *, target: str, label: str
) -> MapExpression:
    """Check the mapped value ``text`` and return the SQL to run for it.

    Parameters
    ----------
    text : str
        The value as written in ``--map`` or the TOML mapping.
    columns : sequence of str
        The file's columns, the only names the expression may read.
    target : str
        The canonical column it is mapped to (for messages).
    label : str
        The file (for messages).

    Returns
    -------
    MapExpression

    Raises
    ------
    SchemaError
        ``text`` is a bare name that is not a column of the file (a missing column).
    ConfigError
        Anything else that is not an allowed expression; the message names the expression,
        the part refused and what is allowed.

    Examples
    --------
    >>> parse_map_expression("abs(Qty) * price", ["Qty", "Price"], target="amount", label="f").sql
    'ABS("Qty") * "Price"'
    """
    try:
        if len(text) > MAX_LENGTH:
            raise _Refused(f"it is longer than {MAX_LENGTH:,} characters")
        tree = _parse(text)
        bare = isinstance(tree, exp.Column) and not tree.table
        if bare and not isinstance(tree.this, exp.Star) and _resolve(tree.name, columns) is None:
            # a plain name: the file lacks the column (a schema problem, like a missing one)
            raise SchemaError(
                f"Cannot use {_show(text)} for {target}: it is not a column of {label} "
                f"(found: {_found(columns)}). Name one of its columns, "
                f"e.g. --map {target}=COLUMN."
            )
        used = _check_tree(tree, columns, label)
        sql = _generate(tree)
        # what runs is parsed again, and must check and generate the same SQL
        again = _parse(sql)
        _check_tree(again, columns, label)
        if _generate(again) != sql:
            raise _Refused("it does not read back the same after normalising")
        _duckdb_check(sql, columns)
    except SqlglotError as exc:
        why = f"it cannot be written as DuckDB SQL ({_first_line(exc)})"
        raise ConfigError(f"Cannot use {_show(text)} for {target}: {why}. {_HINT}.") from None
    except _Refused as why:
        raise ConfigError(f"Cannot use {_show(text)} for {target}: {why}. {_HINT}.") from None
    return MapExpression(text=text, sql=sql, columns=tuple(used))
