"""Out-of-fold predictions grouped by customer: validation that does not leak customers.

The learning cutoffs of a backtest hold the same customers, and their label windows overlap (a
training cutoff 30 days before the validation cutoff shares 60 of its 90 label days). A model
scored on a later learning cutoff has therefore already seen most of each customer's outcome,
and a model that can recognise customers (text of their orders, their sequence) looks better
there than it will on the test cutoff. Early stopping, calibration and stacking must learn from
predictions made for customers the model never learned from.

Every learning row (customer x cutoff) is given to one of ``n_folds`` folds by a stable hash of
its ``user_id`` (:func:`customer_folds`), so all cutoffs of a customer fall in the same fold and
every model uses the same folds. A fold's predictions come from a model fitted on the other
folds' customers (:func:`out_of_fold_proba`); models that learn no label (BTYD) are scored as they
are. The test cutoff is never touched: every learning label window ends by it.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from retention._progress import track
from retention.exceptions import ConfigError, ModelError
from retention.features import CutoffFrame

__all__ = ["N_FOLDS", "customer_folds", "learns_labels", "out_of_fold_proba", "subset_frame"]

#: folds of every customer-grouped cross-validation (GBDT early stopping and calibration, the
#: ensemble's stacker)
N_FOLDS = 5


def customer_folds(
    users: Sequence[Any] | pd.Index | np.ndarray, n_folds: int = N_FOLDS
) -> np.ndarray:
    """The fold (0 .. n_folds - 1) of each customer: CRC-32 of the ``user_id`` text, mod n_folds.

    Stable across cutoffs, models, processes and machines, so a customer is in one fold
    whatever frame the row comes from.

    Examples
    --------
    >>> customer_folds(["12346", "12347", "12346"]).tolist()
    [3, 4, 3]
    """
    check_n_folds(n_folds)
    return np.fromiter(
        (zlib.crc32(str(u).encode("utf-8")) % n_folds for u in users),
        dtype=np.int64,
        count=len(users),
    )


def check_n_folds(n_folds: Any, name: str = "cv_folds") -> int:
    """``n_folds`` as an int >= 2, or a :class:`ConfigError` naming ``name``."""
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise ConfigError(
            f"{name} must be a whole number >= 2 (folds of customers); got {n_folds!r}. "
            f"The default is {N_FOLDS}."
        )
    return int(n_folds)


def subset_frame(frame: CutoffFrame, users: pd.Index | Sequence[str]) -> CutoffFrame:
    """``frame`` restricted to ``users`` (features, label and events; in ``frame`` order)."""
    keep = frame.features.index.isin(pd.Index(users).astype(str))
    features = frame.features.loc[keep]
    label = frame.label.loc[keep] if frame.label is not None else None
    events = frame.events
    if events is not None and len(events):
        events = events[events["user_id"].astype(str).isin(features.index)].reset_index(drop=True)
    return dataclasses.replace(
        frame, features=features, label=label, events=events, extra=dict(frame.extra)
    )


def learns_labels(model: Any) -> bool:
    """False for a model whose predictions never depend on labels (BTYD): its plain predictions
    are out-of-fold already."""
    return bool(getattr(type(model), "learns_labels", True))


def out_of_fold_proba(
    model: Any,
    frames: Sequence[CutoffFrame],
    n_folds: int = N_FOLDS,
    *,
    description: str = "out-of-fold predictions",
) -> list[np.ndarray]:
    """P(retained) of every customer of every learning frame, from models that never saw them.

    For each fold of customers, a clone of ``model`` (same hyper-parameters) is fitted on the
    other folds' customers of every frame (the last frame as ``valid``, the others as
    ``train``) and predicts the fold's customers. A model that learns no label is scored on each
    frame as it is.

    Parameters
    ----------
    model : RetentionModel
        Fitted or not; it is never changed (clones are fitted).
    frames : sequence of CutoffFrame
        The learning frames (labelled), oldest first.
    n_folds : int
        Folds of customers (:func:`customer_folds`).

    Returns
    -------
    list of np.ndarray
        One array per frame, in ``frame.users`` order.

    Raises
    ------
    ModelError
        When a fold leaves no customer to learn from.
    """
    frames = list(frames)
    if not frames:
        raise ConfigError("out_of_fold_proba needs at least one learning frame; got none.")
    if not learns_labels(model):
        return [np.asarray(model.predict_proba(f), dtype=float) for f in frames]
    n_folds = check_n_folds(n_folds, "n_folds")
    folds = [customer_folds(f.users, n_folds) for f in frames]
    out = [np.full(len(f), np.nan) for f in frames]
    for k in track(range(n_folds), description, total=n_folds):
        learn = [subset_frame(f, f.users[fold != k]) for f, fold in zip(frames, folds, strict=True)]
        if any(len(f) == 0 for f in learn):
            raise ModelError(
                f"Fold {k} of {n_folds} holds every customer of a learning cutoff, so nothing is "
                "left to learn from. Use more customers or fewer folds."
            )
        fitted = clone(model).fit(learn[:-1] or learn, learn[-1] if len(learn) > 1 else None)
        for i, (f, fold) in enumerate(zip(frames, folds, strict=True)):
            mask = fold == k
            if mask.any():
                out[i][mask] = fitted.predict_proba(subset_frame(f, f.users[mask]))
    return out
