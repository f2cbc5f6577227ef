"""BG/NBD and Pareto/NBD as :class:`RetentionModel`: P(at least one purchase in the horizon).

BTYD models learn no labels: they describe each customer's purchase history up to the cutoff.
``fit`` fits the transaction model (and a Gamma-Gamma model of spend) on the purchase history of
the most recent frame it is given; ``predict_proba`` refits on the scored frame's own events (all
strictly before its cutoff, so nothing leaks) unless ``refit_on_predict=False``, and returns
``P(at least one purchase in [cutoff, cutoff + horizon))``.
"""

from __future__ import annotations

import warnings
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
    ParetoNBD,
    discounted_expected_purchases,
    rfm_summary,
)

__all__ = ["BGNBDModel", "ParetoNBDModel"]

_RFM = ["frequency", "recency", "T", "monetary_value"]


class _BTYDModel(RetentionModel):
    """Shared adapter; subclasses name the transaction model."""

    _estimator: ClassVar[type[BetaGeo] | type[ParetoNBD]] = BetaGeo

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
        summary = rfm_summary(events, frame.cutoff, unit_days=float(self.unit_days))
        if summary.empty:
            raise DataError(
                f"No purchase events before cutoff {pd.Timestamp(frame.cutoff):%Y-%m-%d} "
                f"(of {len(events)} events). BTYD models need event_type 'purchase'; map your "
                "purchase event name to 'purchase' when ingesting."
            )
        return summary

    def _fit_summary(
        self, summary: pd.DataFrame
    ) -> tuple[BetaGeo | ParetoNBD, GammaGamma | None, float]:
        model = self._estimator(penalizer=float(self.penalizer)).fit(
            summary["frequency"], summary["recency"], summary["T"]
        )
        fallback = float(self._fallback_value(summary))
        try:
            gg: GammaGamma | None = GammaGamma().fit(
                summary["frequency"], summary["monetary_value"]
            )
        except DataError as exc:
            gg = None  # fewer than two repeat customers with a value: fall back to the mean
            warnings.warn(
                f"The Gamma-Gamma spend model could not be fitted ({exc}); monetary and clv "
                f"use the mean repeat purchase value instead ({fallback:.2f} for every "
                "customer), so they do not tell customers apart by spend.",
                RetentionWarning,
                stacklevel=2,
            )
        return model, gg, fallback

    @staticmethod
    def _fallback_value(summary: pd.DataFrame) -> float:
        rep = summary.loc[summary["frequency"] > 0, "monetary_value"]
        rep = rep[rep > 0]
        return float(rep.mean()) if len(rep) else 0.0

    def _models_for(
        self, frame: CutoffFrame
    ) -> tuple[BetaGeo | ParetoNBD, GammaGamma | None, float, pd.DataFrame]:
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
        aligned = aligned.fillna({"frequency": 0, "recency": 0.0, "T": 0.0, "monetary_value": 0.0})
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
        for column in _RFM:
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
        self.summary_ = pd.DataFrame({c: parts[f"summary_{c}"] for c in _RFM}, index=index)
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
        (Gamma-Gamma expected mean value; the population mean for customers without repeat
        purchase, the mean repeat value when Gamma-Gamma cannot be fitted) and ``clv``
        (expected purchases over the horizon x expected value, discounted by ``discount_rate``
        per time unit; undiscounted by default), indexed by ``frame.users``."""
        model, gg, fallback, s = self._models_for(frame)
        h = float(frame.horizon_days) / float(self.unit_days)
        f, r, t = s["frequency"], s["recency"], s["T"]
        if gg is not None:
            monetary = gg.conditional_expected_average_profit(f, s["monetary_value"])
        else:
            monetary = np.full(len(s), fallback)
        purchases = model.conditional_expected_purchases(h, f, r, t)
        value = discounted_expected_purchases(model, f, r, t, h, float(self.discount_rate))
        return pd.DataFrame(
            {
                "p_retained": model.probability_of_purchase(h, f, r, t),
                "p_alive": model.conditional_probability_alive(f, r, t),
                "expected_purchases": purchases,
                "monetary": monetary,
                "clv": value * monetary,
            },
            index=frame.users,
        )


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


class ParetoNBDModel(_BTYDModel):
    """Pareto/NBD (:class:`~retention.models.ParetoNBD`) as a retention model.

    Parameters are those of :class:`BGNBDModel`.
    """

    name: ClassVar[str] = "paretonbd"
    _estimator = ParetoNBD
