"""Mapping: the column map from the command line and from TOML."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention.data import TABLES, Mapping
from retention.exceptions import ConfigError


def test_from_cli_splits_on_the_first_equals_sign() -> None:
    m = Mapping.from_cli(
        ["user_id=CustomerID", "amount = Quantity * UnitPrice", "event_type=CASE WHEN a='x' END"],
        ["C=return", "sale=purchase"],
    )
    assert m.columns == {
        "user_id": "CustomerID",
        "amount": "Quantity * UnitPrice",
        "event_type": "CASE WHEN a='x' END",
    }
    assert m.event_types == {"C": "return", "sale": "purchase"}


@pytest.mark.parametrize("bad", ["user_id", "=CustomerID", "user_id=", "  =  "])
def test_from_cli_refuses_a_pair_without_both_sides(bad: str) -> None:
    with pytest.raises(ConfigError, match="--map") as info:
        Mapping.from_cli([bad])
    assert "user_id=CustomerID" in str(info.value)


def test_from_cli_reader_options_are_validated() -> None:
    m = Mapping.from_cli([], [], delimiter="\\t", encoding="LATIN1", format=None)
    assert m.delimiter == "\t"
    assert m.encoding == "latin-1"
    with pytest.raises(ConfigError, match="utf-8 or latin-1"):
        Mapping.from_cli([], [], encoding="shift-jis")
    assert Mapping.from_cli([], [], encoding="UTF-16LE").encoding == "utf-16-le"
    with pytest.raises(ConfigError, match="one character"):
        Mapping.from_cli([], [], delimiter=";;")
    with pytest.raises(ConfigError, match="csv, parquet, jsonl"):
        Mapping(format="xlsx")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "map.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_from_toml_reads_the_three_sections(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[columns]
user_id = "CustomerID"
amount = "abs(Quantity) * UnitPrice"
[event_types]
sale = "purchase"
[reader]
delimiter = ";"
encoding = "latin-1"
header = true
ts_format = "%d/%m/%Y"
""",
    )
    m = Mapping.from_toml(path)
    assert m.columns["amount"] == "abs(Quantity) * UnitPrice"
    assert m.event_types == {"sale": "purchase"}
    assert (m.delimiter, m.encoding, m.header, m.ts_format) == (";", "latin-1", True, "%d/%m/%Y")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[columns\nuser_id = 1", "not valid TOML"),
        ("[colums]\nuser_id = 'a'", "unknown section"),
        ("[columns]\nuser_id = 3", "must be a string"),
        ("[reader]\nsep = ';'", "unknown [reader] key"),
        ("[reader]\nheader = 'yes'", "true or false"),
        ("columns = 3", "must be a table"),
    ],
)
def test_from_toml_errors_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        Mapping.from_toml(_write(tmp_path, text))
    assert needle in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_from_toml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Mapping.from_toml(tmp_path / "nope.toml")


def test_cli_entries_override_toml_entries(tmp_path: Path) -> None:
    base = Mapping.from_toml(
        _write(tmp_path, '[columns]\nuser_id = "A"\nts = "T"\n[reader]\ndelimiter = ";"\n')
    )
    merged = base.merge(Mapping.from_cli(["user_id=B"], ["x=view"], delimiter="|"))
    assert merged.columns == {"user_id": "B", "ts": "T"}
    assert merged.event_types == {"x": "view"}
    assert merged.delimiter == "|"
    # an unset CLI option keeps the TOML one
    assert base.merge(Mapping.from_cli(["user_id=B"])).delimiter == ";"


def test_unknown_canonical_names_are_refused_with_the_valid_ones() -> None:
    m = Mapping.from_cli(["userid=CustomerID"])
    with pytest.raises(ConfigError) as info:
        m.check(TABLES["events"].names, "events")
    message = str(info.value)
    assert "'userid'" in message
    for name in ("user_id", "ts", "event_type", "amount"):
        assert name in message
    # users accept extra attribute columns by name
    Mapping.from_cli(["segment=Seg"]).check(TABLES["users"].names, "users", allow_extra=True)


def test_event_type_maps_only_apply_to_events() -> None:
    with pytest.raises(ConfigError, match="events table"):
        Mapping.from_cli([], ["a=view"]).check(TABLES["items"].names, "items")
