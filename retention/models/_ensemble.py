"""Stacking: a logistic regression on the log-odds of several models, learned out of fold.

The members (by default BG/NBD, Pareto/NBD, MBG/NBD and gradient boosting) learn from the learning
cutoffs; the stacker learns how much to trust each from their out-of-fold predictions on those
same cutoffs, grouped by customer (:mod:`retention.models._oof`): no member's prediction for a
customer comes from a fit that saw that customer's labels, so a member that memorises customers
earns no trust it would not earn on the test cutoff. By default every member is fitted anew (model
objects are cloned first, so the objects passed in are left untouched); with ``prefit=True``
members are passed already fitted and only the stacker learns (the backtest fits each model once
and hands them over).

Three choices are made on those out-of-fold predictions, never on the scored cutoff:

- the weights: a logistic regression with one intercept per learning cutoff, so they reward
  ranking customers within a cutoff rather than following the base rate between cutoffs;
- stack or single member: the stack of every member and each member alone compete on their
  cross-fitted ROC-AUC within each learning cutoff and fold of customers (the stack's weights
  learned on the other folds); the stack is used only where it ranks better than every member,
  so the ensemble is never below its best member on the out-of-fold predictions;
- the level (the mean probability): the stack's own intercept, or the mean prediction of a
  member that learns no label (BTYD, refitted on the scored cutoff's history), whichever had the
  lower log loss over the learning cutoffs (the own intercept judged on each cutoff from the
  others). The base rate moves between cutoffs with the seasons; on Online Retail BG/NBD's
  mean stays near 0.48 at every cutoff, below the learning cutoffs' base rates, and anchoring to
  it put the stack's level 0.11 under the test cutoff's base rate (Brier 0.2144 against 0.2061
  for gradient boosting alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from retention._progress import track
from retention.exceptions import ConfigError, ModelError
from retention.features import CutoffFrame
from retention.models._base import RetentionModel, check_is_fitted
from retention.models._calibration import logit
from retention.models._gbdt import check_frames
from retention.models._oof import (
    N_FOLDS,
    check_n_folds,
    customer_folds,
    learns_labels,
    out_of_fold_proba,
)

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


#: name of the candidate that stacks every member (the others are single members' names)
STACK = "stack"


def _per_cutoff_auc(y: np.ndarray, score: np.ndarray, cell: np.ndarray) -> float:
    """Mean ROC-AUC within each cell of ``cell`` (a learning cutoff, or a cutoff x fold of
    customers), cells with one outcome or without a score left out: how well ``score`` ranks
    customers at one cutoff, not how well it tracks the level from one cutoff to the next.
    Cross-fitted scores of one cell come from one fit, so a member alone, recalibrated, scores
    exactly its own ranking."""
    aucs = []
    for c in np.unique(cell):
        mask = (cell == c) & np.isfinite(score)
        n_pos = int(y[mask].sum())
        n_neg = int(mask.sum()) - n_pos
        if n_pos and n_neg:  # Mann-Whitney: the ROC-AUC from the ranks (ties count half)
            ranks = rankdata(score[mask])
            aucs.append(
                float((ranks[y[mask] == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
            )
    return float(np.mean(aucs)) if aucs else float("nan")


def _stack_weights(Z: np.ndarray, y: np.ndarray, cut: np.ndarray, C: float) -> np.ndarray:
    """Weights of the member log-odds ``Z``: a logistic regression with one intercept per
    learning cutoff, so the weights reward ranking customers within a cutoff, not following the
    base rate between cutoffs (that is the level's job, see :meth:`EnsembleModel.fit`)."""
    _, codes = np.unique(cut, return_inverse=True)
    dummies = np.eye(codes.max() + 1)[codes]
    lr = LogisticRegression(C=float(C), max_iter=200, fit_intercept=False, solver="newton-cholesky")
    lr.fit(np.column_stack([Z, dummies]), y)
    weights: np.ndarray = lr.coef_[0][: Z.shape[1]]
    return weights


def _cross_fitted(
    Z: np.ndarray, y: np.ndarray, cut: np.ndarray, fold: np.ndarray, C: float
) -> np.ndarray:
    """Stacked log-odds of every learning row from weights learned on the other folds of
    customers (NaN where a fold leaves one outcome to learn from)."""
    out = np.full(len(y), np.nan)
    for k in np.unique(fold):
        learn = fold != k
        if len(np.unique(y[learn])) < 2:
            continue
        out[~learn] = Z[~learn] @ _stack_weights(Z[learn], y[learn], cut[learn], C)
    return out


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    q = np.clip(p, 1e-9, 1 - 1e-9)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def _level_losses(
    z: np.ndarray, y: np.ndarray, cut: np.ndarray, Z: np.ndarray, anchors: dict[str, int]
) -> dict[str, float]:
    """Log loss on the learning cutoffs of each way of setting the level of stacked log-odds
    ``z``: ``"own"``, one intercept learned on the other cutoffs (left out one cutoff at a time:
    the level a stack learned on past cutoffs brings to a new one), and, for each anchor member,
    the shift that gives every cutoff that member's mean prediction there (a model that learns
    no label forecasts each cutoff's level from its own history, out of fold already)."""
    out: dict[str, float] = {}
    cuts = np.unique(cut)
    if len(cuts) > 1:
        p = np.empty(len(y))
        for c in cuts:
            here = cut == c
            p[here] = expit(z[here] + _level_shift(z[~here], float(y[~here].mean())))
        out["own"] = _log_loss(y, p)
    for name, j in anchors.items():
        p = np.empty(len(y))
        for c in cuts:
            here = cut == c
            p[here] = expit(z[here] + _level_shift(z[here], float(np.mean(expit(Z[here, j])))))
        out[name] = _log_loss(y, p)
    return out


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
        How the level (the mean probability on the scored cutoff) is set. The ranking, hence
        ROC-AUC, never depends on it. ``"auto"`` (default): the stack's own intercept, or the
        shift that gives the stacked log-odds the mean prediction of a member that learns no
        label (BTYD, which refits on the scored cutoff's own history), whichever had the lower
        log loss over the learning cutoffs (``level_losses_``; the own intercept is judged on
        each learning cutoff from the others). A member's name: always that member's mean.
        None: always the stack's own intercept.
    prefit : bool
        The members are model objects already fitted (on cutoffs whose label windows end before
        the test cutoff): :meth:`fit` uses them as they are and learns only the stacker. False
        (default): every member is fitted in :meth:`fit`, so a refit on new data refits them.
    cv_folds : int
        Folds of customers for the out-of-fold predictions of a member that keeps none of its
        own (see :meth:`fit`).
    select : bool
        True (default): the stack competes with each member alone (recalibrated) on the
        cross-fitted out-of-fold ROC-AUC, and the best is used (``chosen_``), so the ensemble is
        never below its best member there. False: always the stack.

    Attributes
    ----------
    members_ : list of RetentionModel
        The fitted members (clones of the objects given unless ``prefit``).
    member_names_ : list of str
    stacker_ : LogisticRegression
    weights_ : dict of str to float
        Coefficient of each member's log-odds (how much the stack trusts it; 0 for every member
        but the one chosen when a single member won).
    chosen_ : str
        ``"stack"`` or the name of the member used alone.
    selection_ : dict of str to float
        Cross-fitted out-of-fold ROC-AUC of each candidate (``"stack"`` and each member alone):
        the mean over learning cutoffs x folds of customers of the ROC-AUC within each.
    level_losses_ : dict of str to float
        Log loss over the learning cutoffs of each way of setting the level (``"own"`` and each
        anchor candidate).
    dropped_ : dict of str to str
        Members left out because they collapsed to the same NBD as the member named (BG/NBD,
        MBG/NBD and Pareto/NBD on a log where nobody seems to drop out).
    anchor_ : int or None
        Index in ``members_`` of the member that sets the level (None: the stack's own).

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
        select: bool = True,
    ) -> None:
        self.members = members
        self.C = C
        self.anchor = anchor
        self.prefit = prefit
        self.cv_folds = cv_folds
        self.select = select

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
        kept (``dropped_``). Then the weights, the choice between the stack and each member
        alone, and the level are learned on those predictions (see the module docstring).
        """
        if not (isinstance(self.C, int | float) and self.C > 0):
            raise ConfigError(f"C must be a positive number; got {self.C!r}.")
        if not isinstance(self.prefit, bool | np.bool_):
            raise ConfigError(f"prefit must be True or False; got {self.prefit!r}.")
        if not isinstance(self.select, bool | np.bool_):
            raise ConfigError(f"select must be True or False; got {self.select!r}.")
        if not (self.anchor is None or isinstance(self.anchor, str)):
            raise ConfigError(
                f"anchor must be a member's name, 'auto' or None; got {self.anchor!r}."
            )
        n_folds = check_n_folds(self.cv_folds)
        frames = check_frames(train, valid, model="EnsembleModel")
        learning = [*frames, *([valid] if valid is not None else [])]
        resolved = self._resolve()
        if not self.prefit:
            for _, model in track(resolved, "fitting ensemble members", total=len(resolved)):
                model.fit(frames, valid)
        resolved, dropped = _drop_nbd_twins(resolved, learning[-1])
        anchors = self._anchor_candidates(resolved, dropped)
        y = np.concatenate([np.asarray(f.label, dtype=int) for f in learning])
        if len(np.unique(y)) < 2:
            raise ModelError(
                f"The learning cutoffs up to {learning[-1].cutoff:%Y-%m-%d} hold only one "
                "outcome, so the ensemble cannot learn weights. Use a longer history or another "
                "cutoff."
            )
        names = [n for n, _ in resolved]
        Z = np.column_stack(
            [logit(np.concatenate(_member_oof(m, learning, n_folds, n))) for n, m in resolved]
        )
        cut = np.concatenate([np.full(len(f), i) for i, f in enumerate(learning)])
        fold = np.concatenate([customer_folds(f.users, n_folds) for f in learning])
        C = float(self.C)
        # candidates: the stack of every member, and each member alone (recalibrated), scored
        # by their cross-fitted ranking within the learning cutoffs; the stack must earn its place
        # (members first: on a tie the simpler candidate wins)
        candidates: dict[str, np.ndarray] = {}
        if self.select or len(names) == 1:
            candidates.update({n: np.array([j]) for j, n in enumerate(names)})
        if len(names) > 1:
            candidates[STACK] = np.arange(len(names))
        cell = cut * n_folds + fold  # one cutoff, one fold of customers: one fit of weights
        scores = {
            c: _per_cutoff_auc(y, _cross_fitted(Z[:, cols], y, cut, fold, C), cell)
            for c, cols in candidates.items()
        }
        finite = {c: v for c, v in scores.items() if np.isfinite(v)}
        chosen = max(finite, key=finite.__getitem__) if finite else next(iter(candidates))
        weights = np.zeros(len(names))
        weights[candidates[chosen]] = _stack_weights(Z[:, candidates[chosen]], y, cut, C)
        z = Z @ weights
        stacker = LogisticRegression(C=C)
        stacker.coef_ = weights.reshape(1, -1)
        stacker.intercept_ = np.array([_level_shift(z, float(y.mean()))])
        stacker.classes_ = np.array([0, 1])
        stacker.n_features_in_ = len(names)
        stacker.n_iter_ = np.array([0], dtype=np.int32)
        self.level_losses_ = _level_losses(z, y, cut, Z, anchors)
        if self.anchor != "auto":  # a member named, or None
            self.anchor_ = next(iter(anchors.values()), None)
        elif "own" not in self.level_losses_:  # one learning cutoff: no record to compare
            self.anchor_ = None
        else:
            best = min(self.level_losses_, key=self.level_losses_.__getitem__)
            self.anchor_ = anchors.get(best)
        self.members_ = [m for _, m in resolved]
        self.member_names_ = names
        self.dropped_ = dropped
        self.stacker_ = stacker
        self.weights_ = {n: float(w) for n, w in zip(names, weights, strict=True)}
        self.selection_ = scores
        self.chosen_ = chosen
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
            "chosen_": self.chosen_,
            "selection_": {
                str(k): float(v) if np.isfinite(v) else None for k, v in self.selection_.items()
            },
            "level_losses_": {str(k): float(v) for k, v in self.level_losses_.items()},
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
        self.chosen_ = str(state.get("chosen_", STACK))
        self.selection_ = {
            str(k): float("nan") if v is None else float(v)
            for k, v in (state.get("selection_") or {}).items()
        }
        self.level_losses_ = {
            str(k): float(v) for k, v in (state.get("level_losses_") or {}).items()
        }

    def choice(self) -> dict[str, Any]:
        """What :meth:`fit` chose on the out-of-fold predictions, as JSON-ready data: the
        candidate used (``chosen``: ``"stack"`` or a member), each candidate's cross-fitted
        ROC-AUC (``out_of_fold_roc_auc``), the level's source (``level``: ``"own"`` or a member)
        and each level's log loss over the learning cutoffs (``level_log_loss``)."""
        check_is_fitted(self, "stacker_")
        anchor = getattr(self, "anchor_", None)
        return {
            "chosen": self.chosen_,
            "out_of_fold_roc_auc": {
                k: round(v, 6) if np.isfinite(v) else None for k, v in self.selection_.items()
            },
            "level": "own" if anchor is None else self.member_names_[anchor],
            "level_log_loss": {k: round(v, 6) for k, v in self.level_losses_.items()},
        }

    def _anchor_candidates(
        self, resolved: list[tuple[str, RetentionModel]], dropped: dict[str, str]
    ) -> dict[str, int]:
        """``{name: index}`` of the members that may set the level: with ``anchor="auto"`` every
        member that learns no label (BTYD), else the one named (or the NBD twin kept in its
        place; none for None)."""
        names = [n for n, _ in resolved]
        if self.anchor is None:
            return {}
        if self.anchor == "auto":
            return {n: j for j, (n, m) in enumerate(resolved) if not learns_labels(m)}
        if self.anchor in dropped:
            return {dropped[self.anchor]: names.index(dropped[self.anchor])}
        if self.anchor not in names:
            raise ConfigError(
                f"anchor {self.anchor!r} is not a member (members: {', '.join(names)}). "
                "Name a member, 'auto' or None."
            )
        return {str(self.anchor): names.index(str(self.anchor))}

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
