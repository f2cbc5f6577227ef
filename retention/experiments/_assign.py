"""Deterministic assignment of units to variants by salted hashing.

A unit's bucket is the first 8 bytes of ``sha256(f"{salt}:{unit_id}")`` read as a big-endian
integer over 2^64: a number in [0, 1) that depends on nothing but the salt and the id, so the
same user gets the same variant in every run, process and machine, and a new salt (a new
experiment) reshuffles everyone independently. Buckets below the cumulative weights give the
variant. A holdout is drawn first with its own salt (``f"{salt}:holdout"``), so changing the
variants never moves a user in or out of the holdout.

With ``strata`` (e.g. the risk band of each user), units are ranked by their bucket inside each
stratum and the ranks are cut by the weights: every stratum is split in the planned shares to
within one unit. That split is deterministic for a given population (not per user: a user's
variant can change if the population does), which is why a store keeps assignments once made.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from retention.exceptions import ConfigError

__all__ = ["HOLDOUT", "assign_variants", "bucket", "buckets", "check_weights"]

#: the variant name of units held out of the experiment
HOLDOUT = "holdout"


def bucket(salt: str, unit_id: str) -> float:
    """The unit's position in [0, 1) under ``salt`` (first 64 bits of SHA-256).

    Examples
    --------
    >>> round(bucket("exp-1", "12346"), 6)
    0.082713
    """
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def buckets(salt: str, unit_ids: Sequence[Any] | pd.Index) -> np.ndarray:
    """:func:`bucket` of every id (ids are turned into strings)."""
    prefix = f"{salt}:".encode()
    sha = hashlib.sha256
    out = np.fromiter(
        (int.from_bytes(sha(prefix + str(u).encode()).digest()[:8], "big") for u in unit_ids),
        dtype=np.uint64,
        count=len(unit_ids),
    )
    return out.astype(np.float64) / 2.0**64


def check_weights(
    variants: Sequence[str], weights: Sequence[float] | None
) -> tuple[list[str], list[float]]:
    """Variants (distinct, non-empty strings, at least two) and their weights normalised to 1."""
    names = [str(v).strip() for v in variants]
    if len(names) < 2 or any(not v for v in names) or len(set(names)) != len(names):
        raise ConfigError(
            f"An experiment needs at least two distinct, non-empty variant names; got {names!r}."
        )
    if HOLDOUT in names:
        raise ConfigError(
            f"{HOLDOUT!r} is reserved for the units held out; name the variants otherwise."
        )
    if weights is None:
        w = [1.0] * len(names)
    else:
        w = [float(x) for x in weights]
        if len(w) != len(names) or any(not math.isfinite(x) or x <= 0 for x in w):
            raise ConfigError(
                f"Give one positive weight per variant ({len(names)}: {', '.join(names)}); got "
                f"{list(weights)!r}."
            )
    total = sum(w)
    return names, [x / total for x in w]


def assign_variants(
    unit_ids: Sequence[Any],
    variants: Sequence[str],
    *,
    salt: str,
    weights: Sequence[float] | None = None,
    holdout: float = 0.0,
    strata: Sequence[Any] | np.ndarray | None = None,
) -> pd.Series:
    """The variant of each unit (``"holdout"`` for those held out).

    Parameters
    ----------
    unit_ids : sequence
        Unit ids (turned into strings); duplicates are refused.
    variants : sequence of str
        Variant names, the control first by convention.
    salt : str
        The experiment's salt (its id by default): a different salt, a different split.
    weights : sequence of float, optional
        Relative share of each variant; equal by default.
    holdout : float
        Share of units held out of every variant, in [0, 1).
    strata : sequence, optional
        A stratum per unit (aligned with ``unit_ids``), split in the planned shares each.

    Returns
    -------
    pd.Series
        Indexed by unit id (str), values the variant names.

    Examples
    --------
    >>> s = assign_variants(["u1", "u2", "u3", "u4"], ["control", "treatment"], salt="exp-1")
    >>> sorted(set(s)) <= ["control", "treatment"]
    True
    """
    if not isinstance(salt, str) or not salt:
        raise ConfigError(f"salt must be a non-empty string; got {salt!r}.")
    names, w = check_weights(variants, weights)
    if isinstance(holdout, bool) or not isinstance(holdout, int | float) or not 0 <= holdout < 1:
        raise ConfigError(f"holdout must be a share in [0, 1); got {holdout!r}.")
    ids = pd.Index([str(u) for u in unit_ids], name="user_id")
    if ids.has_duplicates:
        dup = ids[ids.duplicated()][0]
        raise ConfigError(f"Unit ids must be unique; {dup!r} appears more than once.")
    out = np.empty(len(ids), dtype=object)
    held = buckets(f"{salt}:holdout", ids) < holdout if holdout else np.zeros(len(ids), bool)
    out[held] = HOLDOUT
    u = buckets(salt, ids)
    edges = np.cumsum(w)
    edges[-1] = 1.0
    names_arr = np.array(names, dtype=object)
    live = ~held
    if strata is None:
        out[live] = names_arr[np.searchsorted(edges, u[live], side="right")]
    else:
        if len(strata) != len(ids):
            raise ConfigError(
                f"strata must give one stratum per unit: {len(strata)} strata for {len(ids)} units."
            )
        groups = pd.Series(np.asarray(strata, dtype=object)).fillna("(none)").astype(str)
        frame = pd.DataFrame(
            {"g": groups.to_numpy()[live], "u": u[live], "i": np.flatnonzero(live)}
        )
        frame = frame.sort_values(["g", "u", "i"], kind="mergesort")
        rank = frame.groupby("g", sort=False).cumcount().to_numpy()
        size = frame.groupby("g", sort=False)["u"].transform("size").to_numpy()
        position = (rank + 0.5) / size
        out[frame["i"].to_numpy()] = names_arr[np.searchsorted(edges, position, side="right")]
    return pd.Series(out, index=ids, name="variant")
