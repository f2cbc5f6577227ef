"""Stacking: a logistic regression on the log-odds of several models, learned out of fold.

The members (by default BG/NBD, Pareto/NBD, MBG/NBD and gradient boosting) learn from the learning
cutoffs; the stacker learns how much to trust each from their out-of-fold predictions on those
same cutoffs, grouped by customer (:mod:`retention.models._oof`): no member's prediction for a
customer comes from a fit that saw that customer's labels, so a member that memorises customers
earns no trust it would not earn on the test cutoff. By default every member is fitted anew (model
objects are cloned first, so the objects passed in are left untouched); with ``prefit=True``
members are passed already fitted and only the stacker learns (the backtest fits each model once
and hands them over).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from retention._progress import track
from retention.exceptions import ConfigError, ModelError
from retention.features import CutoffFrame
from retention.models._base import RetentionModel, check_is_fitted
from retention.models._calibration import logit
from retention.models._gbdt import check_frames
from retention.models._oof import N_FOLDS, check_n_folds, learns_labels, out_of_fold_proba

__all__ = ["DEFAULT_MEMBERS", "EnsembleModel", "is_fitted"]

#: members of ``EnsembleModel()`` and of ``retention backtest --models ensemble``
DEFAULT_MEMBERS: tuple[str, ...] = ("bgnbd", "paretonbd", "mbgnbd", "gbdt")

#: per-customer outputs taken from the first member that gives them
_DETAIL_COLUMNS: tuple[str, ...] = ("p_alive", "expected_purchases", "monetary", "clv")


def _level_shift(z: np.ndarray, target: float) -> float:
    """The constant ``d`` with ``mean(sigmoid(z + d)) == target`` (bisection; monotone in d)."""
    target = min(max(target, 1e-6), 1 - 1e-6)
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if float(np.mean(expit(z + mid))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _drop_nbd_twins(
    resolved: list[tuple[str, RetentionModel]], frame: CutoffFrame
) -> tuple[list[tuple[str, RetentionModel]], dict[str, str]]:
    """Keep one of the BTYD members whose fit on ``frame`` collapsed to the NBD (they are the
    same model under different names); the others map to the one kept."""
    kept: list[tuple[str, RetentionModel]] = []
    dropped: dict[str, str] = {}
    nbd: str | None = None
    for name, model in resolved:
        report = getattr(model, "fit_report", None)
        if not learns_labels(model) and callable(report) and report(frame).get("nbd"):
            if nbd is not None:
                dropped[name] = nbd
                continue
            nbd = name
        kept.append((name, model))
    return kept, dropped


def _member_oof(
    model: RetentionModel, frames: Sequence[CutoffFrame], n_folds: int, name: str
) -> list[np.ndarray]:
    """Out-of-fold P(retained) of ``model`` on every frame (see :meth:`EnsembleModel.fit`)."""
    if not learns_labels(model):
        return [np.asarray(model.predict_proba(f), dtype=float) for f in frames]
    own = getattr(model, "oof_", None)
    if isinstance(own, pd.DataFrame):
        lookup = own.set_index(["cutoff", "user_id"])["p"]
        out = []
        for f in frames:
            key = pd.MultiIndex.from_arrays(
                [np.repeat(np.datetime64(f.cutoff, "ns"), len(f)), f.users.astype(str)],
                names=["cutoff", "user_id"],
            )
            values = lookup.reindex(key).to_numpy(dtype=float)
            if np.isnan(values).any():
                break  # fitted on other frames: refit on folds instead
            out.append(values)
        else:
            return out
    return out_of_fold_proba(model, frames, n_folds, description=f"out-of-fold {name}")


def is_fitted(model: object) -> bool:
    """True when ``model`` has learned state (a public attribute ending in ``_`` that is set)."""
    return any(
        k.endswith("_") and not k.startswith("_") and v is not None for k, v in vars(model).items()
    )


class EnsembleModel(RetentionModel):
    """Stacks member models with a logistic regression on their log-odds.

    Parameters
    ----------
    members : sequence of str, RetentionModel or (str, RetentionModel)
        Registry names, model objects or ``(name, model)`` pairs. Unless ``prefit``, each member
        is fitted in :meth:`fit` on the same cutoffs: a new model for a name, a clone (same
        hyper-parameters, nothing learned) for an object, which itself is never changed.
    C : float
        Inverse L2 strength of the stacking regression.
    anchor : str or None
        Name of the member whose mean prediction on the scored cutoff sets the overall level of
        the ensemble: the stacked log-odds are shifted by one constant per scored frame so that
        their mean probability equals that member's (the ranking, hence ROC-AUC, is unchanged).
        The base rate of retention drifts between cutoffs (seasons, cohorts), and a BTYD model
        refitted on the scored cutoff's own history forecasts it better than the base rate of the
        validation cutoff the stack learned from (mean absolute error of the level over the
        cutoffs up to the validation cutoffs of the benchmark: Online Retail 0.037 vs 0.059,
        CDNOW 0.010 vs 0.028). ``"auto"`` (default): ``bgnbd`` when it is a member, else
        ``paretonbd``, else no anchor. None: keep the level learned on the validation cutoff.
    prefit : bool
        The members are model objects already fitted (on cutoffs whose label windows end before
        the test cutoff): :meth:`fit` uses them as they are and learns only the stacker. False
        (default): every member is fitted in :meth:`fit`, so a refit on new data refits them.
    cv_folds : int
        Folds of customers for the out-of-fold predictions of a member that keeps none of its
        own (see :meth:`fit`).

    Attributes
    ----------
    members_ : list of RetentionModel
        The fitted members (clones of the objects given unless ``prefit``).
    member_names_ : list of str
    stacker_ : LogisticRegression
    weights_ : dict of str to float
        Coefficient of each member's log-odds (how much the stack trusts it).
    dropped_ : dict of str to str
        Members left out because they collapsed to the same NBD as the member named (BG/NBD,
        MBG/NBD and Pareto/NBD on a log where nobody seems to drop out).
    anchor_ : int or None
        Index in ``members_`` of the member that sets the level.

    Examples
    --------
    >>> ens = EnsembleModel(members=("bgnbd", "gbdt"))  # doctest: +SKIP
    >>> ens.fit(train_frames, valid_frame).weights_  # doctest: +SKIP
    {'bgnbd': 0.31, 'gbdt': 0.84}
    """

    name: ClassVar[str] = "ensemble"

    def __init__(
        self,
        members: Sequence[str | RetentionModel | tuple[str, RetentionModel]] = DEFAULT_MEMBERS,
        C: float = 1.0,
        anchor: str | None = "auto",
        prefit: bool = False,
        cv_folds: int = N_FOLDS,
    ) -> None:
        self.members = members
        self.C = C
        self.anchor = anchor
        self.prefit = prefit
        self.cv_folds = cv_folds

    def _resolve(self) -> list[tuple[str, RetentionModel]]:
        """``(name, model)`` of each member: new or cloned models, or the given ones if prefit."""
        from retention.models._registry import get_model

        if isinstance(self.members, str | RetentionModel) or len(self.members) == 0:
            raise ConfigError(
                f"members must be a non-empty list of model names or models; got {self.members!r}. "
                "For example members=('bgnbd', 'gbdt')."
            )
        out: list[tuple[str, RetentionModel]] = []
        for m in self.members:
            if isinstance(m, str):
                if m == "ensemble":
                    raise ConfigError(
                        "An ensemble cannot be a member of itself; remove 'ensemble'."
                    )
                if self.prefit:
                    raise ConfigError(
                        f"prefit=True uses the members as they are, but {m!r} is a model name, "
                        "not a fitted model. Pass fitted model objects, or prefit=False to fit "
                        "the members here."
                    )
                out.append((m, get_model(m)))
            elif isinstance(m, RetentionModel):
                out.append((type(m).name or type(m).__name__, m))
            elif (
                isinstance(m, tuple)
                and len(m) == 2
                and isinstance(m[0], str)
                and isinstance(m[1], RetentionModel)
            ):
                out.append((m[0], m[1]))
            else:
                raise ConfigError(
                    "Ensemble members are model names, RetentionModel objects or (name, model) "
                    f"pairs; got {m!r}."
                )
        names = [n for n, _ in out]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(
                f"Ensemble member names must be unique; {dupes} appear twice. "
                "Pass (name, model) pairs with distinct names."
            )
        if not self.prefit:
            return [(n, clone(m)) for n, m in out]  # the objects given stay untouched
        unfitted = [n for n, m in out if not is_fitted(m)]
        if unfitted:
            raise ConfigError(
                f"prefit=True uses the members as they are, but {', '.join(unfitted)} "
                "is not fitted. Fit it first, or pass prefit=False to fit the members here."
            )
        return out

    def _member_matrix(self, frame: CutoffFrame, members: Sequence[RetentionModel]) -> np.ndarray:
        cols = [logit(m.predict_proba(frame)) for m in members]
        return np.column_stack(cols)

    def fit(self, train: Sequence[CutoffFrame], valid: CutoffFrame | None = None) -> EnsembleModel:
        """Fit the members on ``train``/``valid`` (unless ``prefit``); stack them out of fold.

        The stacker learns from every learning cutoff (``train`` and ``valid``), on each
        member's out-of-fold predictions (see :mod:`retention.models._oof`): a prediction for a
        customer comes from a member that never learned that customer's labels. Members that
        learn no labels (BTYD) are taken as they are; a member that kept its own out-of-fold
        predictions for these frames (``GBDTModel.oof_``) gives those; any other member is
        refitted on ``cv_folds`` folds of customers. BTYD members that collapse to the same NBD
        on the latest learning cutoff are the same model under two names: only the first is
        kept (``dropped_``).
        """
        if not (isinstance(self.C, int | float) and self.C > 0):
            raise ConfigError(f"C must be a positive number; got {self.C!r}.")
        if not isinstance(self.prefit, bool | np.bool_):
            raise ConfigError(f"prefit must be True or False; got {self.prefit!r}.")
        n_folds = check_n_folds(self.cv_folds)
        frames = check_frames(train, valid, model="EnsembleModel")
        learning = [*frames, *([valid] if valid is not None else [])]
        resolved = self._resolve()
        if not self.prefit:
            for _, model in track(resolved, "fitting ensemble members", total=len(resolved)):
                model.fit(frames, valid)
        resolved, dropped = _drop_nbd_twins(resolved, learning[-1])
        y = np.concatenate([np.asarray(f.label, dtype=int) for f in learning])
        if len(np.unique(y)) < 2:
            raise ModelError(
                f"The learning cutoffs up to {learning[-1].cutoff:%Y-%m-%d} hold only one "
                "outcome, so the ensemble cannot learn weights. Use a longer history or another "
                "cutoff."
            )
        columns = []
        for name, model in resolved:
            oof = _member_oof(model, learning, n_folds, name)
            columns.append(logit(np.concatenate(oof)))
        Z = np.column_stack(columns)
        stacker = LogisticRegression(C=float(self.C), max_iter=1000)
        stacker.fit(Z, y)
        self.members_ = [m for _, m in resolved]
        self.member_names_ = [n for n, _ in resolved]
        self.dropped_ = dropped
        self.stacker_ = stacker
        self.weights_ = {
            n: float(w) for n, w in zip(self.member_names_, stacker.coef_[0], strict=True)
        }
        self.anchor_ = self._resolve_anchor(self.member_names_)
        self.valid_cutoff_ = learning[-1].cutoff
        self.horizon_days_ = learning[-1].horizon_days
        return self

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What :meth:`fit` learned, as data (see ``retention.models.save_model``): each fitted
        member is saved as a nested model (``member0``, ``member1``...) and the stacker's
        coefficients as arrays."""
        check_is_fitted(self, "stacker_")
        state = {
            "member_names_": list(self.member_names_),
            "weights_": dict(self.weights_),
            "anchor_": self.anchor_,
            "dropped_": dict(getattr(self, "dropped_", {})),
            "valid_cutoff_": self.valid_cutoff_,
            "horizon_days_": int(self.horizon_days_),
        }
        parts: dict[str, Any] = {"stacker": self.stacker_}
        for i, member in enumerate(self.members_):
            parts[f"member{i}"] = member
        return state, parts

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned (``load_model``)."""
        names = [str(n) for n in state["member_names_"]]
        members = [parts[f"member{i}"] for i in range(len(names))]
        stacker = parts["stacker"]
        if not all(isinstance(m, RetentionModel) for m in members) or not isinstance(
            stacker, LogisticRegression
        ):
            raise ModelError("A saved ensemble's members or stacker are not models.")
        if stacker.coef_.shape != (1, len(members)):
            raise ModelError(
                f"The saved stacker weighs {stacker.coef_.shape[-1]} members; the ensemble has "
                f"{len(members)}."
            )
        anchor = state["anchor_"]
        if anchor is not None and not (isinstance(anchor, int) and 0 <= anchor < len(members)):
            raise ModelError(f"The saved anchor {anchor!r} is not a member index.")
        self.members_ = members
        self.member_names_ = names
        self.stacker_ = stacker
        self.weights_ = {str(k): float(v) for k, v in state["weights_"].items()}
        self.anchor_ = anchor
        self.dropped_ = {str(k): str(v) for k, v in (state.get("dropped_") or {}).items()}
        self.valid_cutoff_ = state["valid_cutoff_"]
        self.horizon_days_ = int(state["horizon_days_"])

    def _resolve_anchor(self, names: list[str]) -> int | None:
        """Index of the anchor member, or None."""
        if self.anchor is None:
            return None
        if self.anchor == "auto":
            for candidate in ("bgnbd", "paretonbd"):
                if candidate in names:
                    return names.index(candidate)
            return None
        if self.anchor not in names:
            raise ConfigError(
                f"anchor {self.anchor!r} is not a member (members: {', '.join(names)}). "
                "Name a member, 'auto' or None."
            )
        return names.index(self.anchor)

    def anchor_shift(self, Z: np.ndarray) -> float:
        """The constant added to the stacked log-odds of member log-odds ``Z``: the ``d`` with
        ``mean(sigmoid(z + d)) == mean(sigmoid(Z[:, anchor]))`` (0 without an anchor). It is
        the same for every customer of the frame."""
        if len(Z) == 0:
            return 0.0
        return self._shift(Z, np.asarray(self.stacker_.decision_function(Z), dtype=float))

    def _shift(self, Z: np.ndarray, z: np.ndarray) -> float:
        anchor = getattr(self, "anchor_", None)
        if anchor is None or len(z) == 0:
            return 0.0
        return _level_shift(z, float(np.mean(expit(Z[:, anchor]))))

    def _stack(self, Z: np.ndarray) -> np.ndarray:
        """Stacked probabilities of member log-odds ``Z``, shifted to the anchor's level."""
        z = np.asarray(self.stacker_.decision_function(Z), dtype=float)
        out: np.ndarray = expit(z + self._shift(Z, z))
        return out

    def predict_proba(self, frame: CutoffFrame) -> np.ndarray:
        """Stacked P(retained) for every customer of ``frame``, in ``frame.users`` order."""
        check_is_fitted(self, "stacker_")
        return self._stack(self._member_matrix(frame, self.members_))

    def predict_details(self, frame: CutoffFrame) -> pd.DataFrame:
        """``p_retained`` of the stack, ``p_<member>`` of each member, and ``p_alive``,
        ``expected_purchases``, ``monetary``, ``clv``.

        Those four come from the first member whose P(alive) is known for this frame (a BTYD
        member whose fit is not degenerate); when every member's is unknown, ``p_alive`` is NaN
        and the others come from the first member that gives them. ``out.attrs["p_alive_source"]``
        names the member (None when P(alive) is unknown).
        """
        check_is_fitted(self, "stacker_")
        details = [m.predict_details(frame).reindex(frame.users) for m in self.members_]
        Z = np.column_stack([logit(d["p_retained"].to_numpy(dtype=float)) for d in details])
        out = pd.DataFrame({"p_retained": self._stack(Z)}, index=frame.users)
        for name, d in zip(self.member_names_, details, strict=True):
            out[f"p_{name}"] = d["p_retained"].to_numpy(dtype=float)
        known = [
            i
            for i, d in enumerate(details)
            if "p_alive" in d.columns and d["p_alive"].notna().any()
        ]
        # MBG/NBD first: BG/NBD gives every one-time buyer P(alive) = 1 by construction
        ranks = [getattr(type(self.members_[i]), "p_alive_rank", 99) for i in known]
        source = known[int(np.argmin(ranks))] if known else None
        for col in _DETAIL_COLUMNS:
            order = ([details[source]] if source is not None else []) + details
            for d in order:
                if col in d.columns:
                    out[col] = d[col].to_numpy(dtype=float)
                    break
        if source is None and "p_alive" in out.columns:
            out["p_alive"] = np.nan
        out.attrs["p_alive_source"] = None if source is None else self.member_names_[source]
        return out
