"""Deterministic salted-hash assignment: pinned values, shares, holdout, strata, stability."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from retention.exceptions import ConfigError
from retention.experiments import HOLDOUT, assign_variants, bucket, buckets

# Known assignments: these must never change (a user's variant would move between releases).
PINNED = {
    "12346": "control",
    "12347": "treatment",
    "12348": "control",
    "12349": "treatment",
    "u-1": "control",
}


def test_bucket_is_the_first_64_bits_of_sha256() -> None:
    digest = hashlib.sha256(b"exp-1:12346").digest()
    assert bucket("exp-1", "12346") == int.from_bytes(digest[:8], "big") / 2**64
    ids = ["12346", "12347", "a"]
    assert list(buckets("exp-1", ids)) == [bucket("exp-1", u) for u in ids]


def test_pinned_assignments_are_stable() -> None:
    got = assign_variants(list(PINNED), ["control", "treatment"], salt="exp-1")
    assert got.to_dict() == PINNED


@pytest.mark.slow
def test_assignment_is_the_same_in_another_process_and_in_any_order() -> None:
    ids = [str(i) for i in range(500)]
    here = assign_variants(ids, ["a", "b", "c"], salt="s", weights=[2, 1, 1])
    code = (
        "from retention.experiments import assign_variants;"
        "print(','.join(assign_variants([str(i) for i in range(500)], ['a','b','c'], salt='s', "
        "weights=[2,1,1]).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().split(",") == here.tolist()
    shuffled = list(reversed(ids))[:300]
    again = assign_variants(shuffled, ["a", "b", "c"], salt="s", weights=[2, 1, 1])
    assert (again == here.loc[again.index]).all()
    other = assign_variants(ids, ["a", "b", "c"], salt="t", weights=[2, 1, 1])
    assert (other != here).mean() > 0.4  # a new salt reshuffles


def test_weights_and_holdout_shares() -> None:
    ids = [f"u{i}" for i in range(60_000)]
    got = assign_variants(ids, ["c", "t"], salt="x", weights=[1, 3], holdout=0.1)
    share = got.value_counts(normalize=True)
    assert share[HOLDOUT] == pytest.approx(0.1, abs=0.006)
    assert share["t"] / (share["t"] + share["c"]) == pytest.approx(0.75, abs=0.008)
    # changing the variants does not move anyone in or out of the holdout
    three = assign_variants(ids, ["c", "t", "u"], salt="x", holdout=0.1)
    assert ((three == HOLDOUT) == (got == HOLDOUT)).all()


def test_strata_are_split_in_the_planned_shares_each() -> None:
    rng = np.random.default_rng(0)
    ids = [f"u{i}" for i in range(1001)]
    bands = rng.choice(["high", "medium", "low"], size=len(ids), p=[0.2, 0.3, 0.5])
    got = assign_variants(ids, ["c", "t"], salt="x", strata=bands)
    for band in ("high", "medium", "low"):
        counts = got[bands == band].value_counts()
        assert abs(counts["c"] - counts["t"]) <= 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least two distinct"):
        assign_variants(["a"], ["only"], salt="x")
    with pytest.raises(ConfigError, match="one positive weight per variant"):
        assign_variants(["a"], ["c", "t"], salt="x", weights=[1, 0])
    with pytest.raises(ConfigError, match="holdout"):
        assign_variants(["a"], ["c", "t"], salt="x", holdout=1.0)
    with pytest.raises(ConfigError, match="unique"):
        assign_variants(["a", "a"], ["c", "t"], salt="x")
    with pytest.raises(ConfigError, match="reserved"):
        assign_variants(["a"], ["c", HOLDOUT], salt="x")
