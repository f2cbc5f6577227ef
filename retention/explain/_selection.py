"""Feature selection by backtest: drop the weakest family (or feature) while the ROC-AUC holds.

The loop never sees the test cutoff: :func:`select_features` takes the training frames and the
validation frame only. Each candidate set is fitted on the training cutoffs (early stopping on the
latest of them) and scored on the validation cutoff, whose label no fit in the loop sees. Starting
from every feature, it ranks the families (or features) of the current set by their exact SHAP
importance on the validation cutoff, tries to drop the weakest, and keeps the change when the
ROC-AUC stays within ``tolerance`` of the full set's; a rejected family is kept and the next
weakest is tried. The result records every step: the curve of the number of features against the
ROC-AUC goes into the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from retention._progress import progress_bar
from retention.exceptions import ConfigError, ModelError
from retention.explain._importance import shap_contributions
from retention.features import CutoffFrame, feature_family
from retention.models import GBDTModel

__all__ = ["SelectionResult", "select_features", "subset_frame"]


@dataclass
class SelectionResult:
    """What :func:`select_features` chose and every step it took.

    Attributes
    ----------
    selected : list of str
        The chosen feature columns (of ``frame.features``).
    dropped : list of str
        Families (or features) removed, in order.
    full_auc, selected_auc : float
        ROC-AUC on the validation cutoff of the full and the chosen set.
    tolerance : float
        The largest fall in ROC-AUC from the full set that was accepted.
    curve : pd.DataFrame
        One row per fit: ``step``, ``candidate`` (what was dropped; ``"(none)"`` for the full
        set), ``n_features``, ``roc_auc``, ``accepted``.
    level : str
        ``"family"`` or ``"feature"``.
    valid_cutoff : pd.Timestamp
        The cutoff the ROC-AUC was measured on.
    """

    selected: list[str]
    dropped: list[str]
    full_auc: float
    selected_auc: float
    tolerance: float
    curve: pd.DataFrame
    level: str
    valid_cutoff: pd.Timestamp
    model_params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "level": self.level,
            "tolerance": self.tolerance,
            "valid_cutoff": f"{self.valid_cutoff:%Y-%m-%d}",
            "full_auc": self.full_auc,
            "selected_auc": self.selected_auc,
            "n_full": int(self.curve["n_features"].iloc[0]) if len(self.curve) else 0,
            "n_selected": len(self.selected),
            "selected": list(self.selected),
            "dropped": list(self.dropped),
            "curve": self.curve.to_dict("records"),
        }


def subset_frame(frame: CutoffFrame, columns: Sequence[str]) -> CutoffFrame:
    """A copy of ``frame`` whose features are only ``columns`` (same population and order)."""
    return replace(frame, features=frame.features[list(columns)])


def _units(columns: Sequence[str], level: str) -> dict[str, list[str]]:
    if level == "feature":
        return {c: [c] for c in columns}
    out: dict[str, list[str]] = {}
    for c in columns:
        out.setdefault(feature_family(c), []).append(c)
    return out


def _unit_importance(contrib: pd.DataFrame, units: dict[str, list[str]]) -> dict[str, float]:
    """Mean absolute summed SHAP contribution of each unit (0 when the model did not use it)."""
    out = {}
    for name, cols in units.items():
        present = [c for c in cols if c in contrib.columns]
        out[name] = float(contrib[present].sum(axis=1).abs().mean()) if present else 0.0
    return out


def select_features(
    train: Sequence[CutoffFrame],
    valid: CutoffFrame,
    *,
    level: str = "family",
    tolerance: float = 0.002,
    max_steps: int | None = None,
    model_params: dict[str, Any] | None = None,
    keep: Sequence[str] = ("recency",),
) -> SelectionResult:
    """Backward selection of feature families (or features) on the validation cutoff.

    The signature takes no test frame: selection cannot see it.

    Parameters
    ----------
    train : sequence of CutoffFrame
        Training cutoffs, oldest first; with two or more, the last one is used for early
        stopping and calibration of each candidate fit.
    valid : CutoffFrame
        The labelled validation cutoff where each candidate's ROC-AUC is measured.
    level : {"family", "feature"}
        Drop whole families (fewer fits) or single features.
    tolerance : float
        A drop is kept while the ROC-AUC stays at least ``full_auc - tolerance``.
    max_steps : int, optional
        Most candidate fits after the full set (default: one per family or feature).
    model_params : dict, optional
        Keyword arguments of :class:`~retention.models.GBDTModel` (``feature_set`` is ignored:
        the loop chooses the columns). BTYD features are off unless ``btyd_features`` is given
        (True, or None for the model's default); the ``btyd_*`` columns the model derives itself
        are never candidates for dropping.
    keep : sequence of str
        Families (or features) never dropped.

    Returns
    -------
    SelectionResult
    """
    if level not in {"family", "feature"}:
        raise ConfigError(f"level must be 'family' or 'feature'; got {level!r}.")
    if not (isinstance(tolerance, int | float) and 0 <= tolerance < 1):
        raise ConfigError(f"tolerance is a fall in ROC-AUC in [0, 1); got {tolerance!r}.")
    if isinstance(train, CutoffFrame):
        train = [train]
    frames = list(train)
    if not frames or not isinstance(valid, CutoffFrame) or valid.label is None:
        raise ConfigError(
            "select_features needs at least one training frame and a labelled validation frame. "
            "Pass the train and valid frames of training_frames(...)."
        )
    y = np.asarray(valid.label, dtype=int)
    if len(np.unique(y)) < 2:
        raise ModelError(
            f"The validation cutoff {valid.cutoff:%Y-%m-%d} holds one outcome only; ROC-AUC is "
            "undefined there. Use a longer history or another cutoff."
        )
    params = {"btyd_features": False, **(model_params or {})}
    params.pop("feature_set", None)
    fit_train, fit_valid = (frames[:-1], frames[-1]) if len(frames) >= 2 else (frames, None)
    columns = [str(c) for c in valid.features.columns]
    units = _units(columns, level)
    protected = set(keep)

    def evaluate(cols: list[str]) -> tuple[float, pd.DataFrame]:
        model = GBDTModel(**params).fit(
            [subset_frame(f, cols) for f in fit_train],
            subset_frame(fit_valid, cols) if fit_valid is not None else None,
        )
        v = subset_frame(valid, cols)
        auc = float(roc_auc_score(y, model.predict_proba(v)))
        return auc, shap_contributions(model, v).values

    current = list(columns)
    steps_left = len(units) if max_steps is None else int(max_steps)
    curve: list[dict[str, Any]] = []
    with progress_bar() as bar:
        task = bar.add_task("feature selection", total=steps_left + 1)
        full_auc, contrib = evaluate(current)
        bar.advance(task)
        curve.append(
            {
                "step": 0,
                "candidate": "(none)",
                "n_features": len(current),
                "roc_auc": full_auc,
                "accepted": True,
            }
        )
        best_auc = full_auc
        tried: set[str] = set()
        dropped: list[str] = []
        step = 0
        while steps_left > 0:
            live = {k: v for k, v in _units(current, level).items() if k not in protected}
            live = {k: v for k, v in live.items() if k not in tried}
            if not live or len(_units(current, level)) <= 1:
                break
            imp = _unit_importance(contrib, live)
            weakest = min(sorted(imp), key=lambda k: imp[k])
            tried.add(weakest)
            candidate = [c for c in current if c not in set(live[weakest])]
            if not candidate:
                break
            step += 1
            steps_left -= 1
            auc, cand_contrib = evaluate(candidate)
            bar.advance(task)
            accepted = auc >= full_auc - tolerance
            curve.append(
                {
                    "step": step,
                    "candidate": weakest,
                    "n_features": len(candidate),
                    "roc_auc": auc,
                    "accepted": accepted,
                }
            )
            if accepted:
                current, contrib, best_auc = candidate, cand_contrib, auc
                dropped.append(weakest)
    return SelectionResult(
        selected=current,
        dropped=dropped,
        full_auc=full_auc,
        selected_auc=best_auc,
        tolerance=float(tolerance),
        curve=pd.DataFrame(
            curve, columns=["step", "candidate", "n_features", "roc_auc", "accepted"]
        ),
        level=level,
        valid_cutoff=valid.cutoff,
        model_params=params,
    )
