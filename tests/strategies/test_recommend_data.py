"""Item sequences: building them, the leave-last-out split, and reading a sequences file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention.exceptions import DataError, ReadError, SchemaError
from retention.strategies import ItemSequences, leave_last_out, read_sequences


def test_from_events_orders_each_customer_in_time_and_keeps_the_chosen_events() -> None:
    events = pd.DataFrame(
        {
            "user_id": ["b", "a", "a", "a", "b"],
            "ts": pd.to_datetime(
                ["2011-01-03", "2011-01-02", "2011-01-01", "2011-01-05", "2011-01-01"]
            ),
            "event_type": ["purchase", "purchase", "purchase", "view", "purchase"],
            "item_id": ["x", "y", "z", "w", None],
        }
    )
    seqs = ItemSequences.from_events(events)
    assert seqs.users.tolist() == ["a", "b"]
    assert [seqs.items[h].tolist() for h in seqs.histories()] == [["z", "y"], ["x"]]
    assert seqs.last_time() == pd.Timestamp("2011-01-03")
    with pytest.raises(SchemaError, match="item_id"):
        ItemSequences.from_events(events.drop(columns="item_id"))


def test_leave_last_out_holds_the_last_two_items_out_of_training() -> None:
    seqs = ItemSequences.from_lists(
        {"u": ["a", "b", "c", "d"], "v": ["a", "b"], "w": ["c", "d", "e"]}
    )
    split = leave_last_out(seqs)
    code = {i: n for n, i in enumerate(seqs.items)}
    assert split.test_targets.tolist() == [code["d"], -1, code["e"]]
    assert split.valid_targets.tolist() == [code["c"], -1, code["d"]]
    assert [seqs.items[h].tolist() for h in split.refit.histories()] == [
        ["a", "b", "c"],
        ["a", "b"],
        ["c", "d"],
    ]
    assert [seqs.items[h].tolist() for h in split.search.histories()] == [
        ["a", "b"],
        ["a", "b"],
        ["c"],
    ]
    assert split.evaluated.tolist() == [0, 2]


def test_read_sequences(tmp_path: Path) -> None:
    path = tmp_path / "seq.txt"
    path.write_text("1 10 11 12\n\n2 11\t13\n", encoding="utf-8")
    seqs = read_sequences(path)
    assert seqs.users.tolist() == ["1", "2"]
    assert seqs.items.tolist() == ["10", "11", "12", "13"]
    assert seqs.lengths.tolist() == [3, 2]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1 10 11\n2\n", r"Line 2 of .* has a user \('2'\) but no item"),
        ("1 10\n2 11\n1 12\n", r"Line 3 of .* repeats user '1' \(first on line 1\)"),
        ("", "holds no sequence"),
    ],
)
def test_a_malformed_sequences_file_is_one_error_naming_the_line(
    tmp_path: Path, text: str, match: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=match) as info:
        read_sequences(path)
    assert "\n" not in str(info.value)


def test_unreadable_sequences_files(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="No sequences file"):
        read_sequences(tmp_path / "missing.txt")
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"1 caf\xe9 10\n")
    with pytest.raises(ReadError, match="not UTF-8"):
        read_sequences(path)


def test_take_and_drop_last_keep_the_vocabulary() -> None:
    seqs = ItemSequences.from_lists({"u": ["a", "b"], "v": ["c"], "w": ["a", "c", "b"]})
    sub = seqs.take([2, 0])
    assert sub.users.tolist() == ["w", "u"] and sub.items.equals(seqs.items)
    assert [sub.items[h].tolist() for h in sub.histories()] == [["a", "c", "b"], ["a", "b"]]
    shorter, last = seqs.drop_last(1)
    assert shorter.lengths.tolist() == [1, 0, 2]
    assert seqs.items[last[last >= 0]].tolist() == ["b", "b"]
    assert np.array_equal(last >= 0, [True, False, True])
