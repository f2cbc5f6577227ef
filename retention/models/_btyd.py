"""Buy-till-you-die models: BG/NBD, Pareto/NBD and Gamma-Gamma, written for numerical safety.

The estimators work on the classic RFM summary of each customer: ``frequency`` ``x`` (number of
repeat purchases), ``recency`` ``t_x`` (time of the last purchase, measured from the first one) and
``T`` (time from the first purchase to the end of the calibration period), all in one time unit
(days, weeks...). :func:`rfm_summary` builds it from contract events.

Implementation notes
--------------------
* Every likelihood is computed in log space (``gammaln``, ``betaln``, ``logaddexp``) and
  maximised with L-BFGS-B on the logarithm of the parameters, with analytic gradients. The
  parameters are bounded to ``[1e-8, 1e8]`` (Gamma-Gamma ``q`` to ``1 + [1e-8, 1e8]``, so that the
  mean spend exists), so parameters are always finite.
* Identical ``(x, t_x, T)`` rows are merged and weighted, which makes fits on large populations
  fast (customers of one cohort share ``T``).
* The Pareto/NBD "death between ``t_x`` and ``T``" term is the integral
  ``s * int_{t_x}^{T} (alpha + tau)^-(r+x) (beta + tau)^-(s+1) dtau``, the quantity the
  hypergeometric ``2F1`` expressions of Fader & Hardie (2005, "A Note on Implementing the
  Pareto/NBD Model in MATLAB") and Jerath et al. (2011) evaluate. It is computed here by
  composite Gauss-Legendre quadrature (7 panels of 8 nodes) in ``y = log(1 + lambda0 (tau -
  t_x))``, ``lambda0`` being the integrand's decay rate at ``t_x``: the exponential-like start
  and the power-law tail both become smooth in ``y``. The nodes are summed in log space, which
  avoids the overflow of ``2F1`` near one and the cancellation between its two terms (error
  below 1e-6 in the log-integral against mpmath over parameters spanning 1e-4..1e5). The
  gradient is an expectation over the same nodes.
* Conditional expectations use the posterior of a customer known to be alive. The remaining
  one-dimensional expectation over the BG/NBD dropout probability is a Gauss-Jacobi quadrature
  of a bounded function (no ``2F1``; Gamma or normal approximations where the Beta is so
  concentrated that Jacobi weights overflow).
* Degenerate data: nobody repeating drives the purchase rate to 0 (P(alive) = 1, expected
  purchases near 0); a single customer or ``T = 0`` everywhere leaves parameters at the start
  or at a bound; on Online Retail at 2011-09-10 the BG/NBD maximum lies at ``a -> 0`` (no
  dropout: the NBD). Every case gives finite predictions; fits that run off towards a bound
  are flagged by ``degenerate_`` and a :class:`~retention.exceptions.RetentionWarning` that
  names the parameter, the bound and what it means.
* Thin data: a transaction model fitted on fewer than :data:`MIN_REPEAT_CUSTOMERS` customers
  with a repeat purchase (or a Gamma-Gamma model on fewer repeat customers with a value) warns
  that its parameters are poorly identified.

No function here returns NaN or infinity for valid input.

References
----------
Fader, Hardie & Lee (2005a), "Counting Your Customers the Easy Way: An Alternative to the
Pareto/NBD Model", Marketing Science 24(2). Fader, Hardie & Lee (2005b), "RFM and CLV: Using
Iso-Value Curves for Customer Base Analysis", JMR 42(4). Fader & Hardie (2013), "The Gamma-Gamma
Model of Monetary Value". Schmittlein, Morrison & Colombo (1987), "Counting Your Customers".
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import (
    betaln,
    digamma,
    expit,
    gammaln,
    roots_genlaguerre,
    roots_hermitenorm,
    roots_jacobi,
)
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from retention.exceptions import ConfigError, DataError, ModelError, RetentionWarning, SchemaError
from retention.models._base import check_is_fitted

__all__ = [
    "MIN_REPEAT_CUSTOMERS",
    "BetaGeo",
    "GammaGamma",
    "ModifiedBetaGeo",
    "ParetoNBD",
    "discounted_expected_purchases",
    "rfm_summary",
]

FloatArray = NDArray[np.float64]

_LOG_LO, _LOG_HI = np.log(1e-8), np.log(1e8)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)
_LOG_GL_W = np.log(_GL_W)
#: panel edges of the composite quadrature in y = log(1 + lambda0 (tau - lo)); the last panel
#: runs to the end of the interval, however far
_PANELS = np.array([0.0, 1.0, 2.5, 5.0, 9.0, 16.0, 30.0, np.inf])
_N_JACOBI = 40

#: fewer customers with a repeat purchase than this to fit on: a RetentionWarning (thin data).
#: Four parameters (two for the purchase rates, two for dropout) are learned from the repeat
#: customers' recency and frequency; below ten of them they are poorly identified, the fit often
#: runs to a bound, and the predictions say more about the starting point than about the data.
MIN_REPEAT_CUSTOMERS = 10


# --------------------------------------------------------------------------------------------
# RFM summary
# --------------------------------------------------------------------------------------------


def rfm_summary(
    events: pd.DataFrame,
    cutoff: Any,
    *,
    unit_days: float = 1.0,
    event_type: str | None = "purchase",
    merge_same_day: bool = True,
    monetary: Literal["mean", "mean_all"] = "mean",
) -> pd.DataFrame:
    """Frequency, recency, T and monetary value of every customer with a purchase before ``cutoff``.

    Parameters
    ----------
    events : pd.DataFrame
        Contract events with at least ``user_id`` and ``ts``; ``event_type`` (filtered on
        ``event_type`` when given and the column exists) and ``amount`` (for ``monetary_value``;
        zero when absent or missing; an amount that cannot be read as a number counts as zero
        too, with a :class:`~retention.exceptions.RetentionWarning`) are optional.
    cutoff : str or pd.Timestamp
        End of the calibration period; only events with ``ts < cutoff`` are used.
    unit_days : float, default 1.0
        Length of the time unit in days (7 for weeks).
    event_type : str or None, default "purchase"
        Event type counted as a purchase; None counts every event.
    merge_same_day : bool, default True
        Count purchases on one calendar day as one (amounts summed). Times are then whole
        calendar days and the period ends on the last day before the cutoff, so ``T`` is that day
        minus the first purchase day: lifetimes' ``observation_period_end`` convention, which
        reproduces Fader, Hardie & Lee (2005) on CDNOW with cutoff 1997-10-01 (period ending
        1997-09-30). When False, each event is a purchase at its exact time and ``T`` runs to the
        cutoff itself.
    monetary : {"mean", "mean_all"}, default "mean"
        ``"mean"``: mean value of the repeat purchases (the first one excluded, 0 for customers
        without repeat purchase: the lifetimes and Gamma-Gamma convention); ``"mean_all"``: mean
        value of all purchases.

    Returns
    -------
    pd.DataFrame
        Index ``user_id``; columns ``frequency`` (repeat purchases), ``recency`` (last purchase
        minus first, in units), ``T`` (cutoff minus first purchase, in units) and
        ``monetary_value``.

    Examples
    --------
    >>> ev = pd.DataFrame({"user_id": ["a", "a", "b"], "event_type": "purchase",
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-01-08", "2024-01-05"]),
    ...     "amount": [10.0, 30.0, 5.0]})
    >>> rfm_summary(ev, "2024-01-15", unit_days=7).round(3)  # doctest: +ELLIPSIS
             frequency  recency      T  monetary_value
    user_id...
    a                1      1.0  1.857            30.0
    b                0      0.0  1.286             0.0
    """
    missing = [c for c in ("user_id", "ts") if c not in events.columns]
    if missing:
        raise SchemaError(
            f"rfm_summary needs the event columns user_id and ts; missing {missing}. "
            "Pass contract events (retention.data) or rename the columns."
        )
    if not (np.isfinite(unit_days) and unit_days > 0):
        raise ConfigError(f"unit_days must be a positive number of days; got {unit_days!r}.")
    if monetary not in ("mean", "mean_all"):
        raise ConfigError(f"monetary must be 'mean' or 'mean_all'; got {monetary!r}.")
    try:
        cut = pd.Timestamp(cutoff)
    except (TypeError, ValueError):
        raise ConfigError(
            f"cutoff {cutoff!r} is not a date. Pass a date such as '2011-09-10'."
        ) from None
    ts = pd.to_datetime(events["ts"], errors="coerce")
    if ts.isna().any():
        raise DataError(
            f"{int(ts.isna().sum())} events have a missing or unreadable ts. "
            "Drop them or fix the timestamps before computing the RFM summary."
        )
    keep = np.array(ts < cut, dtype=bool)
    if event_type is not None and "event_type" in events.columns:
        keep &= (events["event_type"] == event_type).to_numpy()
    if "amount" in events.columns:
        parsed = pd.to_numeric(events["amount"], errors="coerce")
        unreadable = keep & (parsed.isna() & events["amount"].notna()).to_numpy()
        if unreadable.any():
            example = events["amount"].to_numpy()[unreadable][0]
            warnings.warn(
                f"rfm_summary: {int(unreadable.sum())} of {int(keep.sum())} purchase amounts "
                f"before cutoff {cut:%Y-%m-%d} cannot be read as numbers (e.g. {example!r}); "
                "they count as 0 in monetary_value. Fix or drop those amounts (or cast the "
                "amount column to numbers) before computing the RFM summary.",
                RetentionWarning,
                stacklevel=2,
            )
        amount = parsed.fillna(0.0).astype("float64")
    else:
        amount = pd.Series(0.0, index=events.index)
    df = pd.DataFrame(
        {
            "user_id": events["user_id"].to_numpy()[keep],
            "ts": ts.to_numpy()[keep],
            "amount": amount.to_numpy()[keep],
        }
    )
    cols = ["frequency", "recency", "T", "monetary_value"]
    if df.empty:
        out = pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
        out["frequency"] = out["frequency"].astype("int64")
        out.index.name = "user_id"
        return out
    if merge_same_day:
        df["ts"] = df["ts"].dt.floor("D")
        df = df.groupby(["user_id", "ts"], sort=True)["amount"].sum().reset_index()
    else:
        df = df.sort_values(["user_id", "ts"], kind="stable")
    g = df.groupby("user_id", sort=True)
    first = g["ts"].transform("min")
    is_repeat = (df["ts"] > first) if merge_same_day else g.cumcount() > 0
    # with whole days, the last observed day is the one before the cutoff (lifetimes'
    # observation_period_end); otherwise the period ends at the cutoff itself
    end = (cut - pd.Timedelta(1, "ns")).floor("D") if merge_same_day else cut
    n = g["ts"].size()
    first_ts = g["ts"].min()
    last_ts = g["ts"].max()
    if monetary == "mean":
        rep = df.loc[is_repeat.to_numpy()].groupby("user_id")["amount"].mean()
        money = rep.reindex(n.index).fillna(0.0)
    else:
        money = g["amount"].mean()
    out = pd.DataFrame(
        {
            "frequency": (n - 1).astype("int64"),
            "recency": (last_ts - first_ts).dt.total_seconds() / (86400.0 * unit_days),
            "T": (end - first_ts).dt.total_seconds() / (86400.0 * unit_days),
            "monetary_value": money.astype("float64"),
        }
    )
    out.index = out.index.astype(str)
    out.index.name = "user_id"
    return out


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _as_float(name: str, values: ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(values, dtype="float64")
    except (TypeError, ValueError):
        raise DataError(
            f"{name} must be numeric; got values of type {np.asarray(values).dtype}. "
            "Pass numbers (for example the columns of rfm_summary)."
        ) from None
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DataError(
            f"{name} has {int(bad.sum())} missing or infinite values. "
            "Drop those customers or fill the values before fitting or predicting."
        )
    if (arr < 0).any():
        raise DataError(
            f"{name} has {int((arr < 0).sum())} negative values (smallest {arr.min():g}). "
            "Times and counts are non-negative: check the cutoff and the event timestamps."
        )
    return arr


def _check_rfm(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = _as_float("frequency", frequency)
    tx = _as_float("recency", recency)
    t_end = _as_float("T", T)
    try:
        x, tx, t_end = np.broadcast_arrays(x, tx, t_end)
    except ValueError:
        raise DataError(
            f"frequency, recency and T must have the same length; got shapes {x.shape}, "
            f"{tx.shape} and {t_end.shape}."
        ) from None
    if (x != np.round(x)).any():
        raise DataError(
            "frequency must count whole repeat purchases; got non-integer values such as "
            f"{x[x != np.round(x)].flat[0]:g}. Pass the number of repeat purchase periods."
        )
    over = tx > t_end * (1 + 1e-12) + 1e-12
    if over.any():
        raise DataError(
            f"{int(over.sum())} customers have recency greater than T (e.g. recency "
            f"{tx[over].flat[0]:g} > T {t_end[over].flat[0]:g}). Recency and T are measured from "
            "the first purchase and the last purchase cannot be after the end of the period."
        )
    zero_rec = (x == 0) & (tx > 0)
    if zero_rec.any():
        raise DataError(
            f"{int(zero_rec.sum())} customers have frequency 0 but recency > 0. Recency is the "
            "time from the first to the last purchase: 0 for customers without repeat purchase."
        )
    return (
        np.array(x, dtype="float64"),
        np.minimum(np.array(tx, dtype="float64"), t_end),
        np.array(t_end, dtype="float64"),
    )


def _check_horizon(t: ArrayLike) -> FloatArray:
    return _as_float("t (the horizon)", t)


def _compress(*cols: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Unique rows of the columns and how often each occurs (lexsort: fast on floats)."""
    order = np.lexsort(cols[::-1])
    sorted_cols = [c[order] for c in cols]
    new = np.ones(order.size, dtype=bool)
    if order.size > 1:
        new[1:] = np.any([np.diff(c) != 0 for c in sorted_cols], axis=0)
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, order.size)).astype("float64")
    return [c[starts] for c in sorted_cols], counts


def _check_penalizer(penalizer: float) -> float:
    ok = isinstance(penalizer, int | float) and not isinstance(penalizer, bool)
    if not (ok and np.isfinite(penalizer) and penalizer >= 0):
        raise ConfigError(
            f"penalizer must be a number >= 0; got {penalizer!r}. Pass 0 for the plain maximum "
            "likelihood fit or a small positive penalty such as 0.001."
        )
    return float(penalizer)


def _maximise(
    neg_ll: Callable[[FloatArray], tuple[float, FloatArray]],
    x0: FloatArray,
    bounds: list[tuple[float, float]],
) -> tuple[FloatArray, float, bool]:
    """L-BFGS-B on log-parameters; returns (theta, objective, success)."""
    x0 = np.clip(x0, [b[0] for b in bounds], [b[1] for b in bounds])
    # L-BFGS-B calls BLAS on tiny vectors: threads only add overhead (10x on a busy machine)
    with threadpool_limits(1, user_api="blas"), np.errstate(over="ignore", under="ignore"):
        res = minimize(
            neg_ll,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-9, "maxcor": 20},
        )
    theta = np.asarray(res.x, dtype="float64")
    if not np.isfinite(theta).all():  # pragma: no cover - L-BFGS-B keeps to the bounds
        raise ModelError("The optimiser returned non-finite parameters; this is a bug.")
    return theta, float(res.fun), bool(res.success)


_DEGENERATE_LO, _DEGENERATE_HI = np.log(1e-4), np.log(1e4)


def _degenerate(theta: FloatArray) -> bool:
    """A parameter below 1e-4 or above 1e4: the fit ran off towards a boundary."""
    return bool(np.any(theta <= _DEGENERATE_LO) or np.any(theta >= _DEGENERATE_HI))


_NO_DROPOUT = (
    "nobody seems to drop out, so the model is the NBD, P(alive) is 1 for almost everyone, and "
    "BG/NBD and Pareto/NBD score alike"
)
_BG_NO_DROP = "the dropout probabilities Beta(a, b) collapse to 0: " + _NO_DROPOUT
_PARETO_NO_DROP = "the dropout rates Gamma(s, beta) collapse to 0: " + _NO_DROPOUT
_MBG_NO_DROP = (
    "the dropout probabilities Beta(a, b) collapse to 0: nobody seems to drop out, so the model "
    "is the NBD and P(alive) is 1 for almost everyone"
)
#: (model, parameter, "lower" or "upper") -> what a parameter at that bound means
_BOUND_MEANING: dict[tuple[str, str, str], str] = {
    ("BG/NBD", "a", "lower"): _BG_NO_DROP,
    ("BG/NBD", "b", "upper"): _BG_NO_DROP,
    ("BG/NBD", "a", "upper"): "customers drop out right after almost every purchase",
    ("BG/NBD", "b", "lower"): "customers drop out right after almost every purchase",
    ("MBG/NBD", "a", "lower"): _MBG_NO_DROP,
    ("MBG/NBD", "b", "upper"): _MBG_NO_DROP,
    ("MBG/NBD", "a", "upper"): "customers drop out at once or right after almost every purchase",
    ("MBG/NBD", "b", "lower"): "customers drop out at once or right after almost every purchase",
    ("Pareto/NBD", "s", "lower"): _PARETO_NO_DROP,
    ("Pareto/NBD", "beta", "upper"): _PARETO_NO_DROP,
    ("Pareto/NBD", "beta", "lower"): "customers drop out almost at once",
    ("Pareto/NBD", "s", "upper"): "every customer has the same dropout rate (no heterogeneity)",
}
#: (parameter, side) -> meaning, for the purchase-rate parameters both models share
_RATE_MEANING: dict[tuple[str, str], str] = {
    ("r", "lower"): "the purchase rates Gamma(r, alpha) collapse to 0: almost nobody repeats",
    ("alpha", "upper"): "the purchase rates Gamma(r, alpha) collapse to 0: almost nobody repeats",
    ("alpha", "lower"): "the purchase rates Gamma(r, alpha) are implausibly large",
    ("r", "upper"): "every customer has the same purchase rate (no heterogeneity)",
}


#: meanings that say the model collapsed to the NBD (no dropout): BG/NBD, MBG/NBD and Pareto/NBD
#: then give the same predictions under different names
NO_DROPOUT_MEANINGS: frozenset[str] = frozenset({_BG_NO_DROP, _PARETO_NO_DROP, _MBG_NO_DROP})


def _degenerate_reasons(
    model: str, names: Sequence[str], theta: FloatArray
) -> dict[str, list[str]]:
    """What each parameter on a bound means -> the parameters (``name=value (towards ...)``)."""
    by_meaning: dict[str, list[str]] = {}
    for name, value in zip(names, theta, strict=True):
        if _DEGENERATE_LO < value < _DEGENERATE_HI:
            continue
        side = "lower" if value <= _DEGENERATE_LO else "upper"
        bound = float(np.exp(_LOG_LO if side == "lower" else _LOG_HI))
        meaning = _BOUND_MEANING.get((model, name, side)) or _RATE_MEANING.get(
            (name, side), "the model is not identified on this data"
        )
        by_meaning.setdefault(meaning, []).append(
            f"{name}={np.exp(value):.3g} (towards its {side} bound {bound:.0e})"
        )
    return by_meaning


def _degenerate_message(model: str, by_meaning: dict[str, list[str]]) -> str:
    """One sentence: the model, each parameter on a bound and what it means."""
    parts = [f"{' and '.join(where)}: {meaning}" for meaning, where in by_meaning.items()]
    return f"The {model} fit is degenerate, its parameters on the optimiser's bounds: " + (
        "; ".join(parts) + "."
    )


def _warn_degenerate(model: str, names: Sequence[str], theta: FloatArray, pen: float) -> None:
    """Warn, naming each parameter that ran off towards a bound and what that means."""
    by_meaning = _degenerate_reasons(model, names, theta)
    if not by_meaning:
        return
    advice = (
        "Predictions stay finite, but treat them with care: a small penalizer (e.g. 0.001) "
        "keeps the parameters inside the bounds, or fit on a longer history."
        if pen == 0
        else f"penalizer={pen:g} did not keep them inside: try a larger one or a longer history."
    )
    warnings.warn(
        f"{_degenerate_message(model, by_meaning)} {advice}",
        RetentionWarning,
        stacklevel=4,
    )


_COLLAPSE_ADVICE = (
    "Predictions stay finite and P(retained) is that of the NBD, but P(alive) means nothing "
    "here; fit on a longer history to identify the dropout."
)


def _warn_thin(model: str, n_repeat: float, n_total: float, what: str) -> None:
    """Warn when fewer than MIN_REPEAT_CUSTOMERS customers carry the fit (thin data)."""
    if n_repeat >= MIN_REPEAT_CUSTOMERS:
        return
    warnings.warn(
        f"The {model} model is fitted on thin data: {round(n_repeat)} of {round(n_total)} "
        f"customers {what} (fewer than {MIN_REPEAT_CUSTOMERS}), so its parameters are poorly "
        "identified and its predictions unreliable. Use a longer calibration period or more "
        "customers.",
        RetentionWarning,
        stacklevel=4,
    )


# --------------------------------------------------------------------------------------------
# quadrature helpers
# --------------------------------------------------------------------------------------------


def _log_power_integral(
    A: FloatArray,
    B: FloatArray,
    P: FloatArray,
    Q: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``log int_lo^hi (A + tau)^-P (B + tau)^-Q dtau`` (``A, B > 0``, ``P + Q > 1``), vectorised.

    The change of variable ``y = log(1 + lambda0 (tau - lo))``, with ``lambda0`` the decay rate of
    the integrand at ``lo``, turns both the exponential-like start and the power-law tail into
    smooth functions of ``y``; composite Gauss-Legendre panels graded in ``y`` then integrate it.

    Returns the log-integral (``-inf`` where ``hi <= lo``), the nodes ``tau`` and their
    normalised weights (rows sum to one, zero rows for empty integrals), so that the gradient of
    the log-integral with respect to any parameter is an expectation over the nodes.
    """
    n = len(lo)
    lam0 = P / (A + lo) + Q / (B + lo)
    y_hi = np.log1p(lam0 * (hi - lo))
    # panels past every row's end are dropped; the last kept one runs to each row's end
    n_pan = max(1, int(np.searchsorted(_PANELS, float(y_hi.max(initial=0.0)), side="left")))
    a_edge = np.minimum(_PANELS[None, :n_pan], y_hi[:, None])
    b_edge = np.minimum(_PANELS[None, 1 : n_pan + 1], y_hi[:, None])
    b_edge[:, -1] = y_hi
    half = (b_edge - a_edge) / 2.0
    mid = (a_edge + b_edge) / 2.0
    y = (mid[:, :, None] + half[:, :, None] * _GL_X).reshape(n, -1)
    with np.errstate(divide="ignore"):
        logw = (np.log(half)[:, :, None] + _LOG_GL_W).reshape(n, -1)
    tau = np.minimum(lo[:, None] + np.expm1(y) / lam0[:, None], hi[:, None])
    logf = logw + y
    logf -= P[:, None] * np.log(A[:, None] + tau)
    logf -= Q[:, None] * np.log(B[:, None] + tau)
    empty = ~(y_hi > 0)
    logf[empty] = 0.0
    top = logf.max(axis=1)
    q = np.exp(logf - top[:, None])
    total = q.sum(axis=1)
    q /= total[:, None]
    logint = np.where(empty, -np.inf, top + np.log(total) - np.log(lam0))
    q[empty] = 0.0
    return logint, tau, q


@lru_cache(maxsize=4096)
def _beta_nodes(a: float, b: float) -> tuple[FloatArray, FloatArray]:
    """Nodes in [0, 1] and normalised weights of the Beta(a, b) density, ``a >= 1``.

    Gauss-Jacobi while ``a + b <= 300`` (beyond, its weights overflow); then ``Beta(a, b)`` is
    replaced by ``Gamma(a) / (a + b)`` (or the mirror image) when one parameter is below 100,
    and by the normal with the same mean and variance when both are larger: approximations of
    relative error ``O(1 / (a + b))`` where the distribution is already very concentrated.
    """
    n = _N_JACOBI
    if a + b <= 300.0:
        y, w = roots_jacobi(n, b - 1.0, a - 1.0)
        p = (y + 1.0) / 2.0
    elif min(a, b) <= 100.0:
        g, w = roots_genlaguerre(n, min(a, b) - 1.0)
        p = g / (a + b) if a <= b else 1.0 - g / (a + b)
    else:
        z, w = roots_hermitenorm(n)
        mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1.0))
        p = mean + np.sqrt(var) * z
    w = np.asarray(w, dtype="float64")
    return np.clip(np.asarray(p, dtype="float64"), 1e-300, 1.0), w / w.sum()


def _beta_expectation_purchases(
    k: FloatArray, u: FloatArray, a: float, b: FloatArray
) -> FloatArray:
    """``E_p[h(p)]``, ``h(p) = (1 - (1 + p u)^-k) / p``, for ``p ~ Beta(a, b)``.

    The expected purchases of an alive BG/NBD customer. Written as
    ``h(0) + E[p] E_{Beta(a + 1, b)}[(h(p) - h(0)) / p]`` so that the quadrature never meets the
    singular density of ``a < 1`` and a degenerate fit (``a -> 0``: nobody drops out) gives
    ``h(0) = k u``, the NBD answer.
    """
    k, u = np.asarray(k, dtype="float64"), np.asarray(u, dtype="float64")
    out = k * u
    for bv in np.unique(b):
        sel = b == bv
        p, w = _beta_nodes(float(a) + 1.0, float(bv))
        kk, uu = k[sel][:, None], u[sel][:, None]
        pu = p[None, :] * uu
        h = -np.expm1(-kk * np.log1p(pu)) / p[None, :]
        direct = (h - kk * uu) / p[None, :]
        series = -kk * (kk + 1.0) * uu**2 / 2.0 + kk * (kk + 1.0) * (kk + 2.0) * uu**3 * p / 6.0
        g = np.where(pu < 1e-4, series, direct)
        out[sel] = out[sel] + float(a) / (float(a) + float(bv)) * (g @ w)
    return np.maximum(out, 0.0)


def _finite(values: FloatArray) -> FloatArray:
    """Last line of defence: keep outputs finite (they are by construction)."""
    return np.nan_to_num(values, nan=0.0, posinf=np.finfo("float64").max, neginf=0.0)


#: what a fit learns (restored by ``_set_state`` when a saved model is loaded)
_LEARNED = (
    "params_",
    "log_likelihood_",
    "converged_",
    "degenerate_",
    "n_customers_",
    "dropout_share_",
)

#: below this expected share of customers dropping out over the period observed, a fit has
#: collapsed to the NBD even with its parameters inside the bounds (Online Retail at 2011-12-09:
#: MBG/NBD a = 0.0016, b = 607, P(alive) >= 0.997 for everyone): flagged like a bound
NBD_DROPOUT_SHARE = 0.01


def _learned_state(model: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state, parts)`` of a fitted BTYD estimator for ``retention.models.save_model``: the
    parameters and fit diagnostics, all JSON numbers."""
    return {k: getattr(model, k) for k in _LEARNED if hasattr(model, k)}, {}


def _restore_learned(model: object, state: dict[str, Any]) -> None:
    """Set the attributes of :func:`_learned_state` (``params_`` must be a dict of numbers)."""
    params = state.get("params_")
    if not (
        isinstance(params, dict)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in params.values())
    ):
        raise ModelError(f"The saved BTYD parameters are not a dict of numbers: {params!r}.")
    for key in _LEARNED:
        if key in state:
            setattr(model, key, state[key])


# --------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------


class _BTYDEstimator(BaseEstimator):
    """What every BTYD estimator shares: the one hyper-parameter, the repr, the saved state."""

    _param_names: tuple[str, ...] = ()
    params_: dict[str, float] | None

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    def __repr__(self) -> str:
        if getattr(self, "params_", None) is None:
            return f"{type(self).__name__}(penalizer={self.penalizer!r})"
        assert self.params_ is not None
        inner = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
        return f"{type(self).__name__}({inner})"

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What :meth:`fit` learned, as data (see ``retention.models.save_model``)."""
        return _learned_state(self)

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned (``load_model``)."""
        if set(self._param_names) != set(state.get("params_") or {}):
            raise ModelError(
                f"The saved {type(self).__name__} parameters {sorted(state.get('params_') or {})} "
                f"are not {list(self._param_names)}."
            )
        _restore_learned(self, state)


class _TransactionModel(_BTYDEstimator):
    """Shared plumbing of the transaction models."""

    #: the model's name in warnings
    _label: str = ""

    def _p(self) -> tuple[float, ...]:
        check_is_fitted(self, "params_")
        assert self.params_ is not None
        return tuple(self.params_[n] for n in self._param_names)

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> Self:
        """Maximum-likelihood fit on the customers' ``(frequency, recency, T)``.

        Raises
        ------
        DataError
            On negative, missing or non-integer frequencies, or recency greater than T.
        """
        self._fit_common(frequency, recency, T, weights)
        return self

    def _start(self, mean_t: float, mean_x: float) -> FloatArray:
        """Where the optimiser starts, from the mean ``T`` and the mean frequency."""
        raise NotImplementedError

    def _loglik(
        self, params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Per-customer log-likelihood at ``params`` and its gradient (one row a parameter)."""
        raise NotImplementedError

    def _fit_common(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None,
    ) -> None:
        """Fit by maximum likelihood from :meth:`_start`."""
        start, loglik = self._start, self._loglik
        pen = _check_penalizer(self.penalizer)
        x, tx, t_end = _check_rfm(frequency, recency, T)
        x, tx, t_end = x.ravel(), tx.ravel(), t_end.ravel()
        if x.size == 0:
            raise DataError("No customers to fit on. Pass at least one customer's RFM summary.")
        x0 = start(float(np.mean(t_end)) or 1.0, float(np.mean(x)))
        if weights is None:
            (x, tx, t_end), w = _compress(x, tx, t_end)
        else:
            w = _as_float("weights", weights).ravel()
            if w.shape != x.shape or w.sum() <= 0:
                raise DataError("weights must have one non-negative value per customer, not all 0.")
        wsum = float(w.sum())
        _warn_thin(self._label, float(w[x > 0].sum()), wsum, "have a repeat purchase")

        def objective(theta: FloatArray) -> tuple[float, FloatArray]:
            params = np.exp(theta)
            ll, grad = loglik(params, x, tx, t_end)
            value = -float(w @ ll) / wsum + pen * float(params @ params)
            g = -(grad @ w) / wsum * params + pen * 2.0 * params * params
            return value, g

        bounds = [(_LOG_LO, _LOG_HI)] * len(self._param_names)
        theta, _, ok = _maximise(objective, np.log(x0), bounds)
        params = np.exp(theta)
        ll, _ = loglik(params, x, tx, t_end)
        self.params_ = {n: float(v) for n, v in zip(self._param_names, params, strict=True)}
        self.log_likelihood_ = float(w @ ll)
        self.converged_ = ok
        bounded = _degenerate(theta)
        self.n_customers_ = round(wsum)
        x_mean, t_mean = float(w @ x) / wsum, float(w @ t_end) / wsum
        self.dropout_share_ = float(self._dropout_share(params, x_mean, t_mean))
        self.degenerate_ = bounded or self.dropout_share_ < NBD_DROPOUT_SHARE
        if bounded:
            _warn_degenerate(self._label, self._param_names, theta, pen)
        elif self.degenerate_:
            warnings.warn(
                f"{self._collapse_message()} {_COLLAPSE_ADVICE}", RetentionWarning, stacklevel=3
            )

    def _dropout_share(self, params: FloatArray, x_mean: float, t_mean: float) -> float:
        """Expected share of customers dropping out over the period observed (the mean
        customer's ``x`` purchases and ``T``), at ``params``."""
        raise NotImplementedError

    def _collapse_message(self) -> str:
        share = getattr(self, "dropout_share_", float("nan"))
        inner = ", ".join(f"{k}={v:.3g}" for k, v in (self.params_ or {}).items())
        return (
            f"The {self._label} fit is degenerate: its dropout ({inner}) would end only "
            f"{share:.2%} of the customers over the period observed, so nobody seems to drop "
            "out: the model is the NBD and P(alive) is about 1 for everyone."
        )

    def degenerate_reason(self) -> str | None:
        """Why the fit is degenerate (each parameter on a bound and what it means, or a dropout
        so small that the model is the NBD), or None: the same test as ``degenerate_``."""
        theta = np.log(np.asarray(self._p(), dtype="float64"))
        by_meaning = _degenerate_reasons(self._label, self._param_names, theta)
        if by_meaning:
            return _degenerate_message(self._label, by_meaning)
        if getattr(self, "dropout_share_", 1.0) < NBD_DROPOUT_SHARE:
            return self._collapse_message()
        return None

    def is_nbd(self) -> bool:
        """True when the fit collapsed to the NBD (nobody drops out: a dropout parameter on its
        bound, or a dropout that would end fewer than :data:`NBD_DROPOUT_SHARE` of the customers
        over the period observed): P(alive) is then about 1 for everyone and carries no
        information, and BG/NBD, MBG/NBD and Pareto/NBD fitted on the same data give the same
        predictions."""
        theta = np.log(np.asarray(self._p(), dtype="float64"))
        by_meaning = _degenerate_reasons(self._label, self._param_names, theta)
        if any(m in NO_DROPOUT_MEANINGS for m in by_meaning):
            return True
        return bool(getattr(self, "dropout_share_", 1.0) < NBD_DROPOUT_SHARE)

    def probability_of_purchase(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(at least one purchase in ``(T, T + t]``) given the history: ``1 - P(no purchase)``."""
        raise NotImplementedError

    def probability_no_purchase(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(no purchase in ``(T, T + t]``) given the history ``(frequency, recency, T)``."""
        return 1.0 - self.probability_of_purchase(t, frequency, recency, T)


def _beta_geo_loglik(
    params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray, first: int
) -> tuple[FloatArray, FloatArray]:
    """Per-customer log-likelihood of the BG/NBD family and its gradient (rows r, alpha, a, b).

    A customer alive at ``T`` has survived ``k = x + first`` dropout chances, one after each
    repeat purchase and, with ``first = 1`` (MBG/NBD), one after the first purchase too
    (``first = 0``: BG/NBD). With ``B`` the Beta function,
    ``L = Gamma(r + x) alpha^r / Gamma(r) * B(a, b + k) / B(a, b) * [(alpha + T)^-(r + x)
    + a / (b + k - 1) (alpha + t_x)^-(r + x)]``: alive at ``T``, or dropped out at the last
    purchase, which needs ``k >= 1`` (Fader, Hardie & Lee 2005a; Batislam et al. 2007, whose
    ``B(a + 1, b + x) / B(a, b)`` is ``B(a, b + x + 1) / B(a, b) * a / (b + x)``).
    """
    r, alpha, a, b = params
    bk = b + x + first  # b + k
    dies = x + first > 0  # a chance to have dropped out at the last purchase
    bk1 = np.where(dies, b + x + (first - 1.0), 1.0)  # b + k - 1
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, bk) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    a4 = np.where(dies, np.log(a) - np.log(bk1) - (r + x) * np.log(alpha + tx), -np.inf)
    lse = np.logaddexp(a3, a4)
    w3 = np.exp(a3 - lse)
    w4 = 1.0 - w3
    psi_abk = digamma(a + b + x + first)  # a + b + k, summed in this order as it always was
    psi_ab = digamma(a + b)
    g_r = (
        digamma(r + x)
        - digamma(r)
        + np.log(alpha)
        - w3 * np.log(alpha + T)
        - w4 * np.log(alpha + tx)
    )
    g_alpha = r / alpha - w3 * (r + x) / (alpha + T) - w4 * (r + x) / (alpha + tx)
    g_a = psi_ab - psi_abk + w4 / a
    g_b = digamma(bk) - digamma(b) + psi_ab - psi_abk - w4 / bk1
    return a1 + a2 + lse, np.vstack([g_r, g_alpha, g_a, g_b])


def _bgnbd_loglik(
    params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-customer BG/NBD log-likelihood and its gradient (rows r, alpha, a, b)."""
    return _beta_geo_loglik(params, x, tx, T, first=0)


def _mbgnbd_loglik(
    params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-customer MBG/NBD log-likelihood and its gradient (rows r, alpha, a, b): BG/NBD with a
    dropout chance after the first purchase too."""
    return _beta_geo_loglik(params, x, tx, T, first=1)


class _BetaGeoFamily(_TransactionModel):
    """BG/NBD and MBG/NBD, which differ in one thing only: whether a customer may drop out right
    after the first purchase (:attr:`_first`, the dropout chances before the first repeat)."""

    _param_names = ("r", "alpha", "a", "b")
    #: dropout chances before the first repeat purchase: 0 (BG/NBD) or 1 (MBG/NBD)
    _first: ClassVar[int] = 0

    def _dropout_share(self, params: FloatArray, x_mean: float, t_mean: float) -> float:
        a, b = float(params[2]), float(params[3])
        # a chance after each repeat (and, MBG/NBD, after the first purchase)
        return float(-np.expm1((x_mean + self._first) * np.log1p(-a / (a + b))))

    def _start(self, mean_t: float, mean_x: float) -> FloatArray:
        return np.array([1.0, mean_t / (mean_x + 1.0), 1.0, 1.0])

    def _loglik(
        self, params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        return _beta_geo_loglik(params, x, tx, T, self._first)

    def _log_odds_dead(self, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
        r, alpha, a, b = self._p()
        dies = x + self._first > 0
        bk1 = np.where(dies, b + x + (self._first - 1.0), 1.0)
        lo = np.log(a) - np.log(bk1) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
        return np.where(dies, lo, -np.inf)

    def conditional_probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(alive at T) given the history: ``1 / (1 + a / (b + k - 1) ((alpha + T) /
        (alpha + t_x))^(r + x))`` after ``k`` dropout chances; 1 for BG/NBD customers without a
        repeat purchase (``k = 0``), below 1 for MBG/NBD one-time buyers too."""
        x, tx, t_end = _check_rfm(frequency, recency, T)
        return _finite(expit(-self._log_odds_dead(x, tx, t_end)))

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Expected number of purchases in ``(T, T + t]`` given the history.

        ``P(alive) * E[(1 - (1 + p t / (alpha + T))^-(r + x)) / p]`` with the dropout
        probability's posterior ``p ~ Beta(a, b + k)`` after ``k`` survived chances (for MBG/NBD
        the closed form of Wagner & Hoppe 2008 for ``a > 1``; by quadrature here so that any
        ``a`` works).
        """
        tt = _check_horizon(t)
        x, tx, t_end = _check_rfm(frequency, recency, T)
        tt, x, tx, t_end = np.broadcast_arrays(tt, x, tx, t_end)
        shape = x.shape
        tt, x, tx, t_end = tt.ravel(), x.ravel(), tx.ravel(), t_end.ravel()
        r, alpha, a, b = self._p()
        p_alive = expit(-self._log_odds_dead(x, tx, t_end))
        e = _beta_expectation_purchases(r + x, tt / (alpha + t_end), a, b + x + self._first)
        return _finite(p_alive * e).reshape(shape)

    def probability_of_purchase(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(at least one purchase in ``(T, T + t]``) given the history.

        Alive at ``T``, the next purchase comes at rate ``lambda ~ Gamma(r + x, alpha + T)``
        (dropout only happens right after a purchase), so this is
        ``P(alive) * (1 - ((alpha + T) / (alpha + T + t))^(r + x))``.
        """
        tt = _check_horizon(t)
        x, tx, t_end = _check_rfm(frequency, recency, T)
        r, alpha, _, _ = self._p()
        p_alive = expit(-self._log_odds_dead(x, tx, t_end))
        p_buy = -np.expm1(-(r + x) * np.log1p(tt / (alpha + t_end)))
        return _finite(np.clip(p_alive * p_buy, 0.0, 1.0))

    def expected_purchases(self, t: ArrayLike) -> FloatArray:
        """Expected number of repeat purchases of a new customer in ``(0, t]`` (population
        level); an MBG/NBD customer first survives the dropout chance of its first purchase,
        with probability ``E[1 - p] = b / (a + b)``."""
        tt = np.atleast_1d(_check_horizon(t))
        r, alpha, a, b = self._p()
        out = _beta_expectation_purchases(
            np.full(tt.shape, r), (tt / alpha).ravel(), a, np.full(tt.size, b + self._first)
        )
        survive = (b / (a + b)) ** self._first
        return _finite((survive * out).reshape(np.shape(t)))


class BetaGeo(_BetaGeoFamily):
    """The BG/NBD model of Fader, Hardie & Lee (2005a).

    Purchases follow a Poisson process with rate ``lambda ~ Gamma(r, alpha)``; after each purchase
    a customer drops out with probability ``p ~ Beta(a, b)``.

    Parameters
    ----------
    penalizer : float, default 0.0
        L2 penalty on the parameters, added to the mean negative log-likelihood (as lifetimes).

    Attributes
    ----------
    params_ : dict
        ``r``, ``alpha``, ``a``, ``b``.
    log_likelihood_ : float
        Total log-likelihood at ``params_`` (without the penalty).
    converged_ : bool
        Whether the optimiser reported convergence.
    degenerate_ : bool
        Whether a parameter ran off towards its bound (below ``1e-4`` or above ``1e4``; the
        bounds are ``1e-8`` and ``1e8``): the likelihood is maximised at the edge of the
        parameter space, as when nobody repeated, or when nobody seems to drop out (Online
        Retail at 2011-09-10: ``a -> 0``, the BG/NBD becomes the NBD and P(alive) -> 1). The
        parameters and every prediction are still finite; a small ``penalizer`` keeps them inside.
        ``fit`` then emits a :class:`~retention.exceptions.RetentionWarning` naming the parameter,
        the bound and what it means.

    Warns
    -----
    RetentionWarning
        In ``fit``, when the fit is degenerate (see ``degenerate_``) or when fewer than
        :data:`MIN_REPEAT_CUSTOMERS` customers have a repeat purchase (thin data).

    Examples
    --------
    >>> bg = BetaGeo().fit([2, 1, 0, 0, 5], [30.4, 1.7, 0, 0, 35.0], [38.9, 38.9, 38.9, 38.7, 38.7])
    >>> bool(0 < bg.conditional_probability_alive(0, 0, 38.9) <= 1)
    True
    """

    _label = "BG/NBD"
    _first = 0


# --------------------------------------------------------------------------------------------
# MBG/NBD
# --------------------------------------------------------------------------------------------


class ModifiedBetaGeo(_BetaGeoFamily):
    """The MBG/NBD model of Batislam, Denizel & Filiztekin (2007).

    As BG/NBD (purchases at rate ``lambda ~ Gamma(r, alpha)``, dropout with probability
    ``p ~ Beta(a, b)``), except that a customer may also drop out right after the *first*
    purchase, so a one-time buyer who has not come back for a long time is probably gone. BG/NBD
    gives every one-time buyer P(alive) = 1; where its fit collapses to the NBD (``a -> 0``, as on
    Online Retail) every customer's P(alive) is near 1. MBG/NBD keeps drop-out identified from
    the one-time buyers, which is why it is the default source of P(alive).

    Parameters
    ----------
    penalizer : float, default 0.0
        L2 penalty on the parameters, added to the mean negative log-likelihood.

    Attributes
    ----------
    params_ : dict
        ``r``, ``alpha``, ``a``, ``b``.
    log_likelihood_, converged_, degenerate_ :
        As for :class:`BetaGeo`.

    References
    ----------
    Batislam, Denizel & Filiztekin (2007), "Empirical validation and comparison of models for
    customer base analysis", IJRM 24(3); Wagner & Hoppe (2008), "Erratum on the MBG/NBD model",
    IJRM 25(3).

    Examples
    --------
    >>> mbg = ModifiedBetaGeo().fit([2, 1, 0, 0, 5], [30.4, 1.7, 0, 0, 35.0],
    ...                             [38.9, 38.9, 38.9, 38.7, 38.7])
    >>> bool(mbg.conditional_probability_alive(0, 0, 38.9) < 1)
    True
    """

    _label = "MBG/NBD"
    _first = 1  # the one difference: a dropout chance after the first purchase


# --------------------------------------------------------------------------------------------
# Pareto/NBD
# --------------------------------------------------------------------------------------------


def _pareto_parts(
    params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Log of 'alive at T' term, log of 'died in (t_x, T]' term, prefix, nodes, weights."""
    r, alpha, s, beta = params
    n = x.shape[0]
    prefix = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    b1 = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    logi, tau, q = _log_power_integral(
        np.full(n, alpha), np.full(n, beta), r + x, np.full(n, s + 1.0), tx, T
    )
    b2 = np.log(s) + logi
    return prefix, b1, b2, tau, q


def _pareto_loglik(
    params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-customer Pareto/NBD log-likelihood and its gradient (rows r, alpha, s, beta)."""
    r, alpha, s, beta = params
    prefix, b1, b2, tau, q = _pareto_parts(params, x, tx, T)
    lse = np.logaddexp(b1, b2)
    w1 = np.exp(b1 - lse)
    w2 = 1.0 - w1
    e_log_a = (q * np.log(alpha + tau)).sum(axis=1)
    e_inv_a = (q / (alpha + tau)).sum(axis=1)
    e_log_b = (q * np.log(beta + tau)).sum(axis=1)
    e_inv_b = (q / (beta + tau)).sum(axis=1)
    g_r = digamma(r + x) - digamma(r) + np.log(alpha) - w1 * np.log(alpha + T) - w2 * e_log_a
    g_alpha = r / alpha - (r + x) * (w1 / (alpha + T) + w2 * e_inv_a)
    g_s = np.log(beta) - w1 * np.log(beta + T) + w2 * (1.0 / s - e_log_b)
    g_beta = s / beta - w1 * s / (beta + T) - w2 * (s + 1.0) * e_inv_b
    return prefix + lse, np.vstack([g_r, g_alpha, g_s, g_beta])


class ParetoNBD(_TransactionModel):
    """The Pareto/NBD model of Schmittlein, Morrison & Colombo (1987).

    Purchases follow a Poisson process with rate ``lambda ~ Gamma(r, alpha)``; each customer's
    lifetime is exponential with rate ``mu ~ Gamma(s, beta)``.

    Parameters
    ----------
    penalizer : float, default 0.0
        L2 penalty on the parameters, added to the mean negative log-likelihood.

    Attributes
    ----------
    params_ : dict
        ``r``, ``alpha``, ``s``, ``beta``.
    log_likelihood_, converged_, degenerate_ :
        As for :class:`BetaGeo`.
    """

    _param_names = ("r", "alpha", "s", "beta")
    _label = "Pareto/NBD"

    def _dropout_share(self, params: FloatArray, x_mean: float, t_mean: float) -> float:
        s, beta = float(params[2]), float(params[3])
        return float(-np.expm1(-s * np.log1p(t_mean / beta)))  # 1 - E[exp(-mu T)]

    def _start(self, mean_t: float, mean_x: float) -> FloatArray:
        return np.array([1.0, mean_t / (mean_x + 1.0), 1.0, mean_t])

    def _loglik(
        self, params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        return _pareto_loglik(params, x, tx, T)

    def _log_odds_alive(self, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
        params = np.array(self._p())
        shape = x.shape
        _, b1, b2, _, _ = _pareto_parts(params, x.ravel(), tx.ravel(), T.ravel())
        return (b1 - b2).reshape(shape)

    def _broadcast(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        tt = _check_horizon(t)
        x, tx, t_end = _check_rfm(frequency, recency, T)
        tt, x, tx, t_end = np.broadcast_arrays(tt, x, tx, t_end)
        return tt.astype("float64"), x, tx, t_end

    def conditional_probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(alive at T) given the history."""
        x, tx, t_end = _check_rfm(frequency, recency, T)
        shape = x.shape
        x, tx, t_end = np.atleast_1d(x.ravel(), tx.ravel(), t_end.ravel())
        return _finite(expit(self._log_odds_alive(x, tx, t_end))).reshape(shape)

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Expected number of purchases in ``(T, T + t]`` given the history.

        ``P(alive) * (r + x) / (alpha + T) * E[(1 - exp(-mu t)) / mu]`` with
        ``mu ~ Gamma(s, beta + T)``.
        """
        tt, x, tx, t_end = self._broadcast(t, frequency, recency, T)
        shape = x.shape
        tt, x, tx, t_end = np.atleast_1d(tt.ravel(), x.ravel(), tx.ravel(), t_end.ravel())
        r, alpha, s, beta = self._p()
        p_alive = expit(self._log_odds_alive(x, tx, t_end))
        lg = np.log1p(tt / (beta + t_end))
        c = s - 1.0
        e_life = (beta + t_end) * (lg if abs(c) < 1e-10 else -np.expm1(-c * lg) / c)
        out = p_alive * (r + x) / (alpha + t_end) * e_life
        return _finite(out).reshape(shape)

    def probability_of_purchase(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(at least one purchase in ``(T, T + t]``) given the history.

        Alive at ``T``, the first purchase at ``tau`` needs the customer still alive:
        ``int_0^t E[lambda exp(-lambda tau)] E[exp(-mu tau)] dtau`` under the posterior gammas.
        """
        tt, x, tx, t_end = self._broadcast(t, frequency, recency, T)
        shape = x.shape
        tt, x, tx, t_end = np.atleast_1d(tt.ravel(), x.ravel(), tx.ravel(), t_end.ravel())
        r, alpha, s, beta = self._p()
        n = x.shape[0]
        p_alive = expit(self._log_odds_alive(x, tx, t_end))
        logi, _, _ = _log_power_integral(
            np.full(n, alpha), np.full(n, beta), r + x + 1.0, np.full(n, s), t_end, t_end + tt
        )
        log_buy = np.log(r + x) + (r + x) * np.log(alpha + t_end) + s * np.log(beta + t_end) + logi
        p_buy = np.exp(np.minimum(log_buy, 0.0))
        return _finite(np.clip(p_alive * p_buy, 0.0, 1.0)).reshape(shape)

    def expected_purchases(self, t: ArrayLike) -> FloatArray:
        """Expected number of purchases of a new customer in ``(0, t]`` (population level)."""
        tt = _check_horizon(t)
        r, alpha, s, beta = self._p()
        lg = np.log1p(tt / beta)
        c = s - 1.0
        e_life = beta * lg if abs(c) < 1e-10 else beta * (-np.expm1(-c * lg)) / c
        return _finite(np.asarray(r / alpha * e_life, dtype="float64"))


# --------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------


def _gg_loglik(params: FloatArray, x: FloatArray, m: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-customer Gamma-Gamma log-likelihood of the mean spend ``m`` over ``x`` purchases and
    its gradient with respect to (p, q, v)."""
    p, q, v = params
    px = p * x
    lxm = np.log(x * m + v)
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * lxm
    )
    dpsi = digamma(px + q)
    g_p = x * (dpsi - digamma(px) + np.log(m) + np.log(x) - lxm)
    g_q = dpsi - digamma(q) + np.log(v) - lxm
    g_v = q / v - (px + q) / (x * m + v)
    return ll, np.vstack([g_p, g_q, g_v])


class GammaGamma(_BTYDEstimator):
    """The Gamma-Gamma model of the mean transaction value (Fader, Hardie & Lee 2005b).

    Fitted on customers with at least one repeat purchase and a positive mean value (others are
    ignored in ``fit``). ``q`` is kept above 1 so that the population mean spend
    ``p v / (q - 1)`` exists.

    Parameters
    ----------
    penalizer : float, default 0.0
        L2 penalty on ``(p, q, v)``, added to the mean negative log-likelihood.

    Attributes
    ----------
    params_ : dict
        ``p``, ``q``, ``v``.
    log_likelihood_, converged_ : as for :class:`BetaGeo`.
    degenerate_ : bool
        ``p`` or ``q - 1`` below ``1e-4`` or above ``1e4`` (``v`` scales with the currency).
        Not warned about: ``p -> inf`` only says that each customer spends the same amount every
        time (common, and harmless for the expected mean value).

    Warns
    -----
    RetentionWarning
        In ``fit``, when fewer than :data:`MIN_REPEAT_CUSTOMERS` customers have a repeat purchase
        of positive value (thin data).
    """

    _param_names = ("p", "q", "v")

    def fit(self, frequency: ArrayLike, monetary_value: ArrayLike) -> GammaGamma:
        """Maximum-likelihood fit on repeat customers' frequency and mean value.

        Raises
        ------
        DataError
            On invalid input, or when fewer than two customers have a repeat purchase with a
            positive value (the model cannot be identified).
        """
        pen = _check_penalizer(self.penalizer)
        x = _as_float("frequency", frequency).ravel()
        m = _as_float("monetary_value", monetary_value).ravel()
        if x.shape != m.shape:
            raise DataError(
                f"frequency and monetary_value must have the same length; got {x.size} and "
                f"{m.size}."
            )
        if (x != np.round(x)).any():
            raise DataError("frequency must count whole repeat purchases; got non-integer values.")
        keep = (x > 0) & (m > 0)
        if keep.sum() < 2:
            raise DataError(
                f"Gamma-Gamma needs at least two customers with a repeat purchase of positive "
                f"value; got {int(keep.sum())}. Use a longer calibration period or more customers."
            )
        _warn_thin(
            "Gamma-Gamma", float(keep.sum()), float(x.size), "have a repeat purchase of value"
        )
        (xs, ms), w = _compress(x[keep], m[keep])
        wsum = float(w.sum())

        def objective(theta: FloatArray) -> tuple[float, FloatArray]:
            params = np.array([np.exp(theta[0]), 1.0 + np.exp(theta[1]), np.exp(theta[2])])
            ll, grad = _gg_loglik(params, xs, ms)
            value = -float(w @ ll) / wsum + pen * float(params @ params)
            g = -(grad @ w) / wsum + pen * 2.0 * params
            dparams = np.array([params[0], params[1] - 1.0, params[2]])
            return value, g * dparams

        mean_m = float(np.average(ms, weights=w))
        x0 = np.log(np.array([1.0, 1.0, mean_m]))
        theta, _, ok = _maximise(objective, x0, [(_LOG_LO, _LOG_HI)] * 3)
        params = np.array([np.exp(theta[0]), 1.0 + np.exp(theta[1]), np.exp(theta[2])])
        ll, _ = _gg_loglik(params, xs, ms)
        self.params_: dict[str, float] | None = {
            "p": float(params[0]),
            "q": float(params[1]),
            "v": float(params[2]),
        }
        self.log_likelihood_ = float(w @ ll)
        self.converged_ = ok
        self.degenerate_ = _degenerate(theta[:2])  # v scales with the currency
        self.n_customers_ = round(wsum)
        return self

    def population_mean(self) -> float:
        """Mean transaction value of a customer about whom nothing is known: ``p v / (q - 1)``."""
        check_is_fitted(self, "params_")
        assert self.params_ is not None
        p, q, v = self.params_["p"], self.params_["q"], self.params_["v"]
        return float(_finite(np.asarray(p * v / (q - 1.0))))

    def conditional_expected_average_profit(
        self, frequency: ArrayLike, monetary_value: ArrayLike
    ) -> FloatArray:
        """Expected mean transaction value given ``x`` repeat purchases of mean value ``m``.

        A weighted average of the population mean and ``m`` (weight ``p x / (p x + q - 1)``);
        customers without repeat purchase get the population mean.
        """
        check_is_fitted(self, "params_")
        assert self.params_ is not None
        p, q, v = self.params_["p"], self.params_["q"], self.params_["v"]
        x = _as_float("frequency", frequency)
        m = _as_float("monetary_value", monetary_value)
        x, m = np.broadcast_arrays(x, m)
        wgt = p * x / (p * x + q - 1.0)
        out = (1.0 - wgt) * (p * v / (q - 1.0)) + wgt * m
        return _finite(np.asarray(out, dtype="float64"))

    def customer_lifetime_value(
        self,
        transaction_model: BetaGeo | ModifiedBetaGeo | ParetoNBD,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        monetary_value: ArrayLike,
        horizon_units: float,
        discount_rate: float = 0.0,
    ) -> FloatArray:
        """Expected value of each customer's purchases in ``(T, T + horizon_units]``.

        Expected purchases of each whole time unit (the last one possibly partial) times the
        expected mean value, discounted by ``(1 + discount_rate) ** i`` at the end of unit
        ``i``. With ``discount_rate=0`` this is expected purchases times expected value.

        Parameters
        ----------
        transaction_model : BetaGeo or ParetoNBD
            A fitted transaction model (same time unit).
        frequency, recency, T, monetary_value : array-like
            The RFM summary.
        horizon_units : float
            Horizon in the model's time unit.
        discount_rate : float, default 0.0
            Discount rate per time unit (0.01 a week is about 68% a year).
        """
        if not (np.isfinite(horizon_units) and horizon_units >= 0):
            raise ConfigError(f"horizon_units must be a number >= 0; got {horizon_units!r}.")
        if not (np.isfinite(discount_rate) and discount_rate >= 0):
            raise ConfigError(f"discount_rate must be a number >= 0; got {discount_rate!r}.")
        value = self.conditional_expected_average_profit(frequency, monetary_value)
        purchases = discounted_expected_purchases(
            transaction_model, frequency, recency, T, horizon_units, discount_rate
        )
        return _finite(purchases * value)


def discounted_expected_purchases(
    transaction_model: BetaGeo | ModifiedBetaGeo | ParetoNBD,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    horizon_units: float,
    discount_rate: float = 0.0,
) -> FloatArray:
    """Expected purchases in ``(T, T + horizon_units]``, those of time unit ``i`` discounted by
    ``(1 + discount_rate) ** i`` (the last unit may be partial); undiscounted when the rate is 0.
    """
    if not (np.isfinite(horizon_units) and horizon_units >= 0):
        raise ConfigError(f"horizon_units must be a number >= 0; got {horizon_units!r}.")
    if not (np.isfinite(discount_rate) and discount_rate >= 0):
        raise ConfigError(f"discount_rate must be a number >= 0; got {discount_rate!r}.")
    if discount_rate == 0 or horizon_units == 0:
        return transaction_model.conditional_expected_purchases(
            horizon_units, frequency, recency, T
        )
    steps = np.append(np.arange(1.0, np.ceil(horizon_units)), horizon_units)
    total: FloatArray | None = None
    prev: FloatArray | None = None
    for i, step in enumerate(steps, start=1):
        cum = transaction_model.conditional_expected_purchases(step, frequency, recency, T)
        inc = cum if prev is None else cum - prev
        total = (
            inc / (1.0 + discount_rate) ** i
            if total is None
            else total + inc / (1.0 + discount_rate) ** i
        )
        prev = cum
    assert total is not None
    return _finite(np.maximum(total, 0.0))
