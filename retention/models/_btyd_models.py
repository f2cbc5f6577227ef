"""BG/NBD and Pareto/NBD as :class:`RetentionModel`: P(at least one purchase in the horizon).

BTYD models learn no labels: they describe each customer's purchase history up to the cutoff.
``fit`` fits the transaction model (and a Gamma-Gamma model of spend) on the purchase history of
the most recent frame it is given; ``predict_proba`` refits on the scored frame's own events (all
strictly before its cutoff, so nothing leaks) unless ``refit_on_predict=False``, and returns
``P(at least one purchase in [cutoff, cutoff + horizon))``.

Two outputs are built to be read as they are:

* ``p_alive`` is NaN (NULL in the ``scores`` table) when the fit used for the frame is degenerate
  (:meth:`~retention.models.BetaGeo.degenerate_reason`): on Online Retail every BTYD fit
  collapses to the NBD, whose P(alive) is 1 for everyone and says nothing. :meth:`fit_report`
  says which fit was degenerate and why; the backtest JSON and report show it.
* ``clv`` is the expected spend over the horizon (``horizon_days`` after the cutoff), net of
  returns: expected purchases times a Gamma-Gamma expected value per purchase, fitted on every
  purchase day's spend net of the customer's returns (the first purchase included, so a
  one-time buyer is not floored at the population mean, and a customer who returned everything
  has an expected value near 0).
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from retention.exceptions import ConfigError, DataError, ModelError, RetentionWarning
from retention.features import CutoffFrame
from retention.models._base import RetentionModel, check_is_fitted
from retention.models._btyd import (
    BetaGeo,
    GammaGamma,
    ModifiedBetaGeo,
    ParetoNBD,
    discounted_expected_purchases,
    rfm_summary,
)

__all__ = ["BGNBDModel", "MBGNBDModel", "ParetoNBDModel", "net_value_per_purchase"]

_RFM = ["frequency", "recency", "T", "monetary_value"]

_Transaction = BetaGeo | ModifiedBetaGeo | ParetoNBD
#: fits of the summaries seen last, shared by every BTYD model of the process (predicting refits
#: on the scored frame; a backtest scores the same frames several times): key -> (transaction
#: model, Gamma-Gamma model, fallback value, the RetentionWarnings the fit raised). Held outside
#: the models so that predicting never changes a model; the warnings are raised again on a hit.
_FIT_CACHE: OrderedDict[str, tuple[Any, GammaGamma | None, float, list[str]]] = OrderedDict()
_FIT_CACHE_SIZE = 16
_FIT_LOCK = threading.Lock()


def net_value_per_purchase(events: pd.DataFrame, cutoff: Any, summary: pd.DataFrame) -> pd.Series:
    """Each customer's mean spend per purchase before ``cutoff``, net of returns.

    ``(purchase amounts - return amounts) / (frequency + 1)`` for the customers of ``summary``
    (an :func:`~retention.models.rfm_summary`, whose ``frequency + 1`` purchase days are the
    transactions), floored at 0: a customer who returned everything has a net value of 0. Events
    of type ``return`` count against the customer whatever they returned; a log without amounts
    gives 0 for everyone.
    """
    cut = pd.Timestamp(cutoff)
    n_tx = summary["frequency"].astype("float64") + 1.0
    if "amount" not in events.columns or "event_type" not in events.columns or events.empty:
        return pd.Series(0.0, index=summary.index, name="net_value")
    before = events[pd.to_datetime(events["ts"]) < cut]
    amount = pd.to_numeric(before["amount"], errors="coerce").fillna(0.0).astype("float64")
    kind = before["event_type"].astype(str)
    sign = np.where(kind == "purchase", 1.0, np.where(kind == "return", -1.0, 0.0))
    net: pd.Series = (amount * sign).groupby(before["user_id"].astype(str).to_numpy()).sum()
    net = net.reindex(summary.index).fillna(0.0)
    return (net.clip(lower=0.0) / n_tx).rename("net_value")


class _BTYDModel(RetentionModel):
    """Shared adapter; subclasses name the transaction model."""

    _estimator: ClassVar[type[BetaGeo] | type[ModifiedBetaGeo] | type[ParetoNBD]] = BetaGeo
    #: BTYD models learn no label: their prediction for a customer never depends on that
    #: customer's outcome, so a stacker may learn from their plain predictions (no folds)
    learns_labels: ClassVar[bool] = False

    def __init__(
        self,
        unit_days: float = 7.0,
        penalizer: float = 0.0,
        refit_on_predict: bool = True,
        discount_rate: float = 0.0,
    ) -> None:
        self.unit_days = unit_days
        self.penalizer = penalizer
        self.refit_on_predict = refit_on_predict
        self.discount_rate = discount_rate

    # ---------------------------------------------------------------- helpers

    def _validate(self) -> None:
        u = self.unit_days
        if not (isinstance(u, int | float) and np.isfinite(u) and u > 0):
            raise ConfigError(
                f"unit_days must be a positive number of days (7 for weeks); got {u!r}."
            )
        d = self.discount_rate
        if not (isinstance(d, int | float) and np.isfinite(d) and d >= 0):
            raise ConfigError(f"discount_rate must be a number >= 0 per time unit; got {d!r}.")
        p = self.penalizer
        if not (isinstance(p, int | float) and np.isfinite(p) and p >= 0):
            raise ConfigError(
                f"penalizer must be a number >= 0; got {p!r}. Pass 0 for the plain maximum "
                "likelihood fit or a small positive penalty such as 0.001."
            )
        if not isinstance(self.refit_on_predict, bool | np.bool_):
            raise ConfigError(
                f"refit_on_predict must be True or False; got {self.refit_on_predict!r}."
            )

    def _summary(self, frame: CutoffFrame) -> pd.DataFrame:
        events = frame.events
        if events is None or len(events) == 0:
            raise DataError(
                f"The frame at cutoff {pd.Timestamp(frame.cutoff):%Y-%m-%d} has no events. "
                "BTYD models need each customer's purchases before the cutoff."
            )
        # the transactions are the events that count as coming back (frame.retained_by)
        summary = rfm_summary(
            frame.qualifying_events(),
            frame.cutoff,
            unit_days=float(self.unit_days),
            event_type=None,
        )
        if summary.empty:
            raise DataError(
                f"No {frame.retained_by} events before cutoff {pd.Timestamp(frame.cutoff):%Y-%m-%d}"
                f" (of {len(events)} events). BTYD models count the events that count as coming "
                "back: map your purchase event name to 'purchase' when ingesting, or name the "
                "activity with retained_by (`--retained-by TYPE,...`)."
            )
        summary["net_value"] = net_value_per_purchase(events, frame.cutoff, summary)
        return summary

    def _fit_summary(self, summary: pd.DataFrame) -> tuple[_Transaction, GammaGamma | None, float]:
        """Fit the transaction and spend models on ``summary`` (its ``net_value`` column: the net
        spend per purchase), through the process-wide cache of recent fits."""
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"{type(self).__name__}|{float(self.penalizer)!r}|".encode())
        for column in (*_RFM, "net_value"):
            digest.update(summary[column].to_numpy(dtype="float64").tobytes())
        key = digest.hexdigest()
        with _FIT_LOCK:
            hit = _FIT_CACHE.get(key)
            if hit is not None:
                _FIT_CACHE.move_to_end(key)
        if hit is not None:
            for message in hit[3]:
                warnings.warn(message, RetentionWarning, stacklevel=3)
            return hit[0], hit[1], hit[2]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RetentionWarning)
            model, gg, fallback = self._fit_new(summary)
        messages = [str(w.message) for w in caught if issubclass(w.category, RetentionWarning)]
        for w in caught:  # raise them where the caller's filters decide
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        with _FIT_LOCK:
            _FIT_CACHE[key] = (model, gg, fallback, messages)
            while len(_FIT_CACHE) > _FIT_CACHE_SIZE:
                _FIT_CACHE.popitem(last=False)
        return model, gg, fallback

    def _fit_new(self, summary: pd.DataFrame) -> tuple[_Transaction, GammaGamma | None, float]:
        model = self._estimator(penalizer=float(self.penalizer)).fit(
            summary["frequency"], summary["recency"], summary["T"]
        )
        fallback = float(self._fallback_value(summary))
        try:
            # every purchase day counts (the first included), at its spend net of returns
            gg: GammaGamma | None = GammaGamma().fit(summary["frequency"] + 1, summary["net_value"])
        except DataError as exc:
            gg = None  # fewer than two customers with a positive net value: the mean instead
            warnings.warn(
                f"The Gamma-Gamma spend model could not be fitted ({exc}); monetary and clv "
                f"use the mean net value per purchase instead ({fallback:.2f} for every "
                "customer), so they do not tell customers apart by spend.",
                RetentionWarning,
                stacklevel=2,
            )
        return model, gg, fallback

    @staticmethod
    def _fallback_value(summary: pd.DataFrame) -> float:
        value = summary["net_value"]
        value = value[value > 0]
        return float(value.mean()) if len(value) else 0.0

    def _models_for(
        self, frame: CutoffFrame
    ) -> tuple[_Transaction, GammaGamma | None, float, pd.DataFrame]:
        """The fitted models to score ``frame`` with, and its RFM summary in population order."""
        check_is_fitted(self, "params_")
        self._validate()
        summary = self._summary(frame)
        same = (
            pd.Timestamp(frame.cutoff) == self.cutoff_
            and summary.shape == self.summary_.shape
            and summary.index.equals(self.summary_.index)
            and np.array_equal(summary[_RFM].to_numpy(), self.summary_[_RFM].to_numpy())
        )
        if self.refit_on_predict and not same:
            model, gg, fallback = self._fit_summary(summary)
        else:
            model, gg, fallback = self.model_, self.gamma_gamma_, self.fallback_value_
        aligned = summary.reindex(pd.Index(frame.users).astype(str))
        # a customer of the population without purchase events is new at the cutoff
        aligned = aligned.fillna(
            {"frequency": 0, "recency": 0.0, "T": 0.0, "monetary_value": 0.0, "net_value": 0.0}
        )
        return model, gg, fallback, aligned

    # ---------------------------------------------------------------- API

    def fit(self, train: Sequence[CutoffFrame], valid: CutoffFrame | None = None) -> _BTYDModel:
        """Fit on the purchase history of the most recent frame (``valid`` if given).

        Raises
        ------
        ConfigError
            On invalid hyper-parameters or when no frame is given.
        DataError
            When the frame has no purchase before its cutoff.
        """
        self._validate()
        frames = [*list(train), *([valid] if valid is not None else [])]
        if not frames:
            raise ConfigError("fit needs at least one CutoffFrame (train or valid); got none.")
        latest = max(frames, key=lambda f: pd.Timestamp(f.cutoff))
        summary = self._summary(latest)
        self.model_, self.gamma_gamma_, self.fallback_value_ = self._fit_summary(summary)
        self.params_: dict[str, float] | None = dict(self.model_.params_ or {})
        self.gamma_gamma_params_ = (
            dict(self.gamma_gamma_.params_ or {}) if self.gamma_gamma_ is not None else None
        )
        self.summary_ = summary
        self.cutoff_ = pd.Timestamp(latest.cutoff)
        self.train_cutoffs_ = [f"{pd.Timestamp(f.cutoff):%Y-%m-%d}" for f in frames]
        self.horizon_days_ = int(latest.horizon_days)
        return self

    # ---------------------------------------------------------------- save/load as data

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What :meth:`fit` learned, as data (see ``retention.models.save_model``): the fitted
        transaction and Gamma-Gamma models, and the RFM summary of the fit (columns as arrays)."""
        state = {
            "fallback_value_": self.fallback_value_,
            "cutoff_": self.cutoff_,
            "train_cutoffs_": self.train_cutoffs_,
            "horizon_days_": self.horizon_days_,
        }
        parts: dict[str, Any] = {"model": self.model_, "summary_users": list(self.summary_.index)}
        if self.gamma_gamma_ is not None:
            parts["gamma_gamma"] = self.gamma_gamma_
        for column in (*_RFM, "net_value"):
            parts[f"summary_{column}"] = self.summary_[column].to_numpy()
        return state, parts

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned (``load_model``)."""
        model, gg = parts["model"], parts.get("gamma_gamma")
        if not isinstance(model, self._estimator) or not isinstance(gg, GammaGamma | None):
            raise ModelError(
                f"The saved {type(self).__name__} holds a {type(model).__name__} and a "
                f"{type(gg).__name__}, not a {self._estimator.__name__} and a GammaGamma."
            )
        self.model_, self.gamma_gamma_ = model, gg
        self.fallback_value_ = float(state["fallback_value_"])
        self.params_ = dict(model.params_ or {})
        self.gamma_gamma_params_ = dict(gg.params_ or {}) if gg is not None else None
        index = pd.Index([str(u) for u in parts["summary_users"]], name="user_id")
        columns = [c for c in (*_RFM, "net_value") if f"summary_{c}" in parts]
        self.summary_ = pd.DataFrame({c: parts[f"summary_{c}"] for c in columns}, index=index)
        if "net_value" not in self.summary_:  # saved before net values were kept
            self.summary_["net_value"] = self.summary_["monetary_value"]
        self.cutoff_ = pd.Timestamp(state["cutoff_"])
        self.train_cutoffs_ = [str(c) for c in state["train_cutoffs_"]]
        self.horizon_days_ = int(state["horizon_days_"])

    def predict_proba(self, frame: CutoffFrame) -> np.ndarray:
        """P(at least one purchase in ``[cutoff, cutoff + horizon)``), in ``frame.users`` order."""
        model, _, _, s = self._models_for(frame)
        h = float(frame.horizon_days) / float(self.unit_days)
        return np.asarray(
            model.probability_of_purchase(h, s["frequency"], s["recency"], s["T"]), dtype=float
        )

    def predict_details(self, frame: CutoffFrame) -> pd.DataFrame:
        """``p_retained``, ``p_alive``, ``expected_purchases`` (over the horizon), ``monetary``
        and ``clv``, indexed by ``frame.users``.

        ``p_alive`` is NaN for every customer when the fit for this frame is degenerate (see
        :meth:`fit_report`): the number would not mean anything. ``monetary`` is the
        Gamma-Gamma expected spend per purchase, net of returns (fitted on every purchase day,
        the first included; the mean net value when Gamma-Gamma cannot be fitted), and ``clv``
        the expected spend over the horizon, net of returns: expected purchases over the
        horizon x ``monetary``, discounted by ``discount_rate`` per time unit (undiscounted by
        default).
        """
        return self._details(frame, mask_degenerate=True)

    def _details(self, frame: CutoffFrame, *, mask_degenerate: bool) -> pd.DataFrame:
        model, gg, fallback, s = self._models_for(frame)
        h = float(frame.horizon_days) / float(self.unit_days)
        f, r, t = s["frequency"], s["recency"], s["T"]
        if gg is not None:
            monetary = gg.conditional_expected_average_profit(f + 1, s["net_value"])
        else:
            monetary = np.full(len(s), fallback)
        purchases = model.conditional_expected_purchases(h, f, r, t)
        value = discounted_expected_purchases(model, f, r, t, h, float(self.discount_rate))
        p_alive = model.conditional_probability_alive(f, r, t)
        if mask_degenerate and model.degenerate_:
            p_alive = np.full(len(s), np.nan)
        return pd.DataFrame(
            {
                "p_retained": model.probability_of_purchase(h, f, r, t),
                "p_alive": p_alive,
                "expected_purchases": purchases,
                "monetary": monetary,
                "clv": value * monetary,
            },
            index=frame.users,
        )

    def fit_report(self, frame: CutoffFrame) -> dict[str, Any]:
        """How the fit used to score ``frame`` went: JSON-ready.

        Keys: ``model`` (``"BG/NBD"``...), ``cutoff``, ``params``, ``converged``,
        ``degenerate`` (a parameter on the optimiser's bounds), ``nbd`` (the fit collapsed to
        the NBD: nobody drops out, so BG/NBD, MBG/NBD and Pareto/NBD give the same
        predictions), ``reason`` (what the bounds mean, or None) and ``p_alive`` (``"ok"``, or
        ``"unavailable"`` when degenerate: :meth:`predict_details` then gives NaN).
        """
        with warnings.catch_warnings():
            # a report on the fit, not the fit: its warnings were raised where it was made
            warnings.simplefilter("ignore", RetentionWarning)
            model, _, _, _ = self._models_for(frame)
        reason = model.degenerate_reason()
        return {
            "model": model._label,
            "cutoff": f"{pd.Timestamp(frame.cutoff):%Y-%m-%d}",
            "params": {k: float(v) for k, v in (model.params_ or {}).items()},
            "converged": bool(model.converged_),
            "degenerate": bool(model.degenerate_),
            "nbd": bool(model.is_nbd()),
            "reason": reason,
            "p_alive": "unavailable" if model.degenerate_ else "ok",
        }


class BGNBDModel(_BTYDModel):
    """BG/NBD (:class:`~retention.models.BetaGeo`) as a retention model.

    Parameters
    ----------
    unit_days : float, default 7.0
        Time unit of the model in days (weeks by default, as Fader, Hardie & Lee).
    penalizer : float, default 0.0
        L2 penalty of the BG/NBD fit.
    refit_on_predict : bool, default True
        Refit on the scored frame's own history (before its cutoff) instead of reusing the
        parameters learned in ``fit``.
    discount_rate : float, default 0.0
        Discount rate per time unit applied to ``clv``.

    Warns
    -----
    RetentionWarning
        When a fit (in ``fit``, or the refit on a scored frame) is degenerate or on thin data
        (see :class:`~retention.models.BetaGeo`), and when the Gamma-Gamma spend model cannot be
        fitted and ``monetary`` falls back to the mean repeat purchase value.

    Examples
    --------
    >>> import pandas as pd
    >>> from retention.features import CutoffFrame
    >>> ev = pd.DataFrame({"user_id": ["a", "a", "a", "b", "c", "c"], "event_type": "purchase",
    ...     "ts": pd.to_datetime(["2024-01-02", "2024-02-01", "2024-03-01", "2024-01-10",
    ...                           "2024-01-05", "2024-01-20"]),
    ...     "amount": [10.0, 12.0, 11.0, 50.0, 20.0, 30.0]})
    >>> frame = CutoffFrame(pd.Timestamp("2024-03-15"), 28, pd.DataFrame(index=["a", "b", "c"]),
    ...     None, ev)
    >>> p = BGNBDModel().fit([frame]).predict_proba(frame)
    >>> bool(((p > 0) & (p < 1)).all())
    True
    """

    name: ClassVar[str] = "bgnbd"
    _estimator = BetaGeo
    #: preference as the source of P(alive) (lower first): BG/NBD gives one-time buyers 1
    p_alive_rank: ClassVar[int] = 2


class MBGNBDModel(_BTYDModel):
    """MBG/NBD (:class:`~retention.models.ModifiedBetaGeo`) as a retention model: BG/NBD in
    which a customer may also drop out right after the first purchase, so one-time buyers get a
    P(alive) below 1. Parameters are those of :class:`BGNBDModel`."""

    name: ClassVar[str] = "mbgnbd"
    _estimator = ModifiedBetaGeo
    p_alive_rank: ClassVar[int] = 0


class ParetoNBDModel(_BTYDModel):
    """Pareto/NBD (:class:`~retention.models.ParetoNBD`) as a retention model.

    Parameters are those of :class:`BGNBDModel`.
    """

    name: ClassVar[str] = "paretonbd"
    _estimator = ParetoNBD
    p_alive_rank: ClassVar[int] = 1
