"""Does the scored data resemble the training data? Feature deciles and event types compared.

A model trained on one store scores another store's customers without complaint: the features
exist, the numbers are finite, and every customer may land in one risk band. At fit time a model
keeps a *profile* of its training data (:func:`feature_profile`: each feature's deciles and
missing share, the event types and their shares); :func:`data_drift` compares a frame to it with
the population stability index (PSI) of each feature over the training deciles, and with the event
types. A later cutoff of the same store shifts a few features (tenure grows), another store shifts
most of them: the warning fires when at least :data:`SHIFTED_SHARE` of the features have a PSI above
:data:`PSI_SHIFT` (the usual "significant shift" threshold of credit scoring), or when the event
types differ.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from retention.exceptions import RetentionWarning
from retention.features import CutoffFrame

__all__ = [
    "PSI_SHIFT",
    "SHIFTED_SHARE",
    "DriftReport",
    "data_drift",
    "feature_profile",
    "warn_if_drifted",
]

#: a feature whose population stability index over the training deciles exceeds this has shifted
PSI_SHIFT = 0.25
#: the data is flagged when at least this share of the features has shifted
SHIFTED_SHARE = 0.5
#: an event type with at least this share of the events on one side and none on the other differs
TYPE_SHARE = 0.01
#: fewer scored customers than this and the deciles are compared no further (a PSI over ten bins
#: from a handful of customers is noise); the event types still are
MIN_ROWS = 100
_EPS = 1e-4


def _event_shares(frames: Sequence[CutoffFrame]) -> dict[str, float]:
    counts: pd.Series | None = None
    for frame in frames:
        events = frame.events
        if events is None or "event_type" not in events or not len(events):
            continue
        c = events["event_type"].astype(str).value_counts()
        counts = c if counts is None else counts.add(c, fill_value=0)
    if counts is None or counts.sum() == 0:
        return {}
    return {str(k): float(v) for k, v in (counts / counts.sum()).items()}


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of ``values`` in the bins cut at ``edges`` and a last bin for NaN."""
    nan = np.isnan(values)
    bins = np.searchsorted(edges, values[~nan], side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1).astype(float)
    out = np.append(counts, float(nan.sum()))
    total = out.sum()
    return out / total if total else out


def feature_profile(X: pd.DataFrame, frames: Sequence[CutoffFrame]) -> dict[str, Any]:
    """The profile of training matrix ``X`` (rows of ``frames``): JSON-ready.

    ``{"n_rows", "features": {name: {"edges", "shares"}}, "event_types": {type: share}}``:
    ``edges`` are the feature's distinct training deciles, ``shares`` the training share of each
    bin they cut (the last bin holds the missing values).
    """
    features: dict[str, dict[str, list[float]]] = {}
    for name in X.columns:
        values = X[name].to_numpy(dtype=float)
        finite = values[~np.isnan(values)]
        edges = (
            np.unique(np.quantile(finite, np.linspace(0.1, 0.9, 9)))
            if len(finite)
            else np.array([])
        )
        features[str(name)] = {
            "edges": [float(e) for e in edges],
            "shares": [float(s) for s in _shares(values, edges)],
        }
    return {"n_rows": len(X), "features": features, "event_types": _event_shares(frames)}


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected, _EPS, None)
    a = np.clip(actual, _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftReport:
    """How a scored frame compares with a model's training data.

    Attributes
    ----------
    psi : dict of str to float
        Population stability index of each feature (0: same distribution).
    shifted : list of str
        Features with ``psi > PSI_SHIFT``, most shifted first.
    missing_features : list of str
        Features the model was trained on that the frame lacks.
    new_event_types, lost_event_types : list of str
        Event types (at least ``TYPE_SHARE`` of the events on one side) seen only when scoring,
        or only in training.
    """

    psi: dict[str, float] = field(default_factory=dict)
    shifted: list[str] = field(default_factory=list)
    missing_features: list[str] = field(default_factory=list)
    new_event_types: list[str] = field(default_factory=list)
    lost_event_types: list[str] = field(default_factory=list)

    @property
    def shifted_share(self) -> float:
        """Share of the features that shifted."""
        return len(self.shifted) / len(self.psi) if self.psi else 0.0

    @property
    def drifted(self) -> bool:
        """True when the data does not resemble the training data."""
        return (
            self.shifted_share >= SHIFTED_SHARE
            or bool(self.new_event_types)
            or bool(self.lost_event_types)
        )

    def message(self) -> str:
        """One sentence: what differs, and what to do."""
        parts = []
        if self.shifted_share >= SHIFTED_SHARE:
            worst = ", ".join(f"{n} (PSI {self.psi[n]:.1f})" for n in self.shifted[:3])
            parts.append(
                f"{len(self.shifted)} of {len(self.psi)} features are distributed unlike the "
                f"training data (population stability index above {PSI_SHIFT}; most: {worst})"
            )
        if self.new_event_types:
            parts.append(f"event types never seen in training: {', '.join(self.new_event_types)}")
        if self.lost_event_types:
            parts.append(
                f"event types of the training data missing here: {', '.join(self.lost_event_types)}"
            )
        return (
            "The scored data does not resemble the data the model was trained on: "
            + "; ".join(parts)
            + ". Its scores may not mean what they did (a model trained on another store?): "
            "train a model on this data (`retention train --db STORE`)."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "drifted": self.drifted,
            "shifted_share": round(self.shifted_share, 4),
            "shifted": self.shifted,
            "psi": {k: round(v, 4) for k, v in self.psi.items()},
            "missing_features": self.missing_features,
            "new_event_types": self.new_event_types,
            "lost_event_types": self.lost_event_types,
        }


def _holder(model: Any) -> Any | None:
    """The model (or ensemble member) that keeps a training profile."""
    if getattr(model, "profile_", None):
        return model
    for member in getattr(model, "members_", None) or []:
        found = _holder(member)
        if found is not None:
            return found
    return None


def data_drift(model: Any, frame: CutoffFrame) -> DriftReport | None:
    """Compare ``frame`` with the training data of ``model`` (or of its first member that kept
    a profile). None when no model part keeps one (BTYD models learn no features). With fewer
    than :data:`MIN_ROWS` customers only the event types are compared."""
    holder = _holder(model)
    if holder is None:
        return None
    profile = holder.profile_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RetentionWarning)  # missing features are listed below
        X = holder.transform_features(frame)
    missing = [c for c in profile["features"] if c not in frame.features.columns and c in X]
    missing = [c for c in missing if not c.startswith(("btyd_", "text_"))]
    psi: dict[str, float] = {}
    for name, spec in profile["features"].items():
        if name not in X.columns or name in missing or len(X) < MIN_ROWS:
            continue
        edges = np.asarray(spec["edges"], dtype=float)
        actual = _shares(X[name].to_numpy(dtype=float), edges)
        psi[name] = _psi(np.asarray(spec["shares"], dtype=float), actual)
    shifted = sorted((n for n, v in psi.items() if v > PSI_SHIFT), key=lambda n: -psi[n])
    trained = profile.get("event_types") or {}
    scored = _event_shares([frame])
    new = sorted(t for t, s in scored.items() if s >= TYPE_SHARE and t not in trained)
    lost = sorted(t for t, s in trained.items() if s >= TYPE_SHARE and t not in scored)
    return DriftReport(
        psi=psi,
        shifted=shifted,
        missing_features=sorted(missing),
        new_event_types=new,
        lost_event_types=lost,
    )


def warn_if_drifted(model: Any, frame: CutoffFrame) -> DriftReport | None:
    """:func:`data_drift`, with a :class:`RetentionWarning` when the data drifted."""
    report = data_drift(model, frame)
    if report is not None and report.drifted:
        warnings.warn(report.message(), RetentionWarning, stacklevel=2)
    return report
