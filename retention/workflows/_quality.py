"""Checks that make the prediction outputs trustworthy: fit flags, twins, CLV against spend.

Used by the backtest and score workflows (:mod:`retention.workflows._predict`):

* :func:`fit_reports` asks every BTYD model how its fit on the scored frame went (degenerate or
  not, collapsed to the NBD or not); :func:`drop_twins` removes the score of a model that is the
  same NBD under another name, so a table never shows one model twice;
* :func:`btyd_details` gives P(alive), expected purchases and CLV from the first BTYD model whose
  fit is not degenerate, P(alive) unknown (NaN) when every fit is;
* :func:`clv_check` compares the predicted CLV (expected spend over the horizon, net of returns)
  with the spend each customer realised in the label window, by decile, and against the textbook
  CLV (BG/NBD expected purchases x Gamma-Gamma on repeat purchases, returns ignored).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from retention.data import Store
from retention.exceptions import DataError, RetentionWarning
from retention.features import CutoffFrame
from retention.models import BetaGeo, GammaGamma, get_model, rfm_summary

__all__ = [
    "P_ALIVE_MODELS",
    "btyd_details",
    "clv_check",
    "drop_twins",
    "fit_reports",
    "realised_spend",
    "textbook_clv",
]

#: BTYD models tried, in order, for P(alive) when the scoring model gives none
P_ALIVE_MODELS: tuple[str, ...] = ("mbgnbd", "paretonbd", "bgnbd")


def fit_reports(models: Mapping[str, Any], frame: CutoffFrame) -> dict[str, dict[str, Any]]:
    """``{name: model.fit_report(frame)}`` for every model that reports on its fit (BTYD), and
    the members an ensemble left out as NBD twins (``same_as``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        report = getattr(model, "fit_report", None)
        if callable(report):
            out[name] = dict(report(frame))
        dropped = getattr(model, "dropped_", None)
        if isinstance(dropped, dict) and dropped:
            out.setdefault(name, {})["dropped_members"] = dict(dropped)
    return out


def drop_twins(scores: dict[str, pd.Series], fits: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Remove from ``scores`` every model whose fit collapsed to the same NBD as an earlier one
    (BG/NBD, MBG/NBD and Pareto/NBD then predict alike); return ``{removed: kept}`` and note it
    in ``fits[removed]["same_as"]``."""
    removed: dict[str, str] = {}
    first: str | None = None
    for name in list(scores):
        if not fits.get(name, {}).get("nbd"):
            continue
        if first is None:
            first = name
            continue
        removed[name] = first
        fits[name]["same_as"] = first
        del scores[name]
    return removed


def btyd_details(frame: CutoffFrame) -> tuple[pd.DataFrame, str | None]:
    """Details (``p_alive``, ``expected_purchases``, ``clv``...) of the first model of
    :data:`P_ALIVE_MODELS` whose fit on ``frame`` is not degenerate, and its name; when every
    fit is degenerate, the last one's details (``p_alive`` NaN) and None."""
    details: pd.DataFrame | None = None
    for name in P_ALIVE_MODELS:
        model = get_model(name)
        with warnings.catch_warnings():
            # the degenerate fits are expected here (that is why the next model is tried); the
            # one whose P(alive) is unavailable is reported by the caller
            warnings.simplefilter("ignore", RetentionWarning)
            model.fit([frame], None)
            details = model.predict_details(frame)
            degenerate = bool(model.fit_report(frame)["degenerate"])  # type: ignore[attr-defined]
        if not degenerate:
            return details, name
    assert details is not None
    return details, None


def realised_spend(
    store: Store, users: pd.Index, cutoff: pd.Timestamp, horizon_days: int
) -> pd.Series:
    """Each customer's spend in ``[cutoff, cutoff + horizon)``, net of returns (may be below 0
    when a customer returns more than they buy in the window), indexed like ``users``."""
    end = cutoff + pd.Timedelta(days=int(horizon_days))
    ev = store.events_df(before=end, columns=("user_id", "ts", "event_type", "amount"))
    ev = ev[ev["ts"] >= cutoff]
    amount = pd.to_numeric(ev["amount"], errors="coerce").fillna(0.0).astype("float64")
    kind = ev["event_type"].astype(str)
    sign = np.where(kind == "purchase", 1.0, np.where(kind == "return", -1.0, 0.0))
    spend: pd.Series = (amount * sign).groupby(ev["user_id"].astype(str).to_numpy()).sum()
    return spend.reindex(pd.Index(users).astype(str)).fillna(0.0).rename("realised")


def textbook_clv(frame: CutoffFrame, unit_days: float = 7.0) -> pd.Series:
    """The textbook CLV over the frame's horizon, as a baseline: BG/NBD expected purchases x
    Gamma-Gamma expected value fitted on repeat purchases' gross value (the first purchase and
    returns ignored; customers without repeat purchase get the population mean)."""
    # the transactions are what counts as coming back (frame.retained_by), as in the BTYD models
    s = rfm_summary(frame.qualifying_events(), frame.cutoff, unit_days=unit_days, event_type=None)
    h = float(frame.horizon_days) / unit_days
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RetentionWarning)  # a reference, warned about elsewhere
        bg = BetaGeo().fit(s["frequency"], s["recency"], s["T"])
        purchases = bg.conditional_expected_purchases(h, s["frequency"], s["recency"], s["T"])
        try:
            gg = GammaGamma().fit(s["frequency"], s["monetary_value"])
            value = gg.conditional_expected_average_profit(s["frequency"], s["monetary_value"])
        except DataError:  # fewer than two repeat values: the mean order value
            value = np.full(len(s), float(s["monetary_value"].mean()))
    out = pd.Series(purchases * value, index=s.index, name="textbook_clv")
    return out.reindex(pd.Index(frame.users).astype(str)).fillna(0.0)


def _errors(predicted: np.ndarray, realised: np.ndarray) -> dict[str, float]:
    total = float(realised.sum())
    return {
        "mae": float(np.mean(np.abs(predicted - realised))),
        "rmse": float(np.sqrt(np.mean((predicted - realised) ** 2))),
        "predicted_total": float(predicted.sum()),
        "realised_total": total,
        "total_error_share": float((predicted.sum() - total) / total) if total else float("nan"),
    }


def clv_check(
    predicted: pd.Series,
    realised: pd.Series,
    baseline: pd.Series | None = None,
    *,
    source: str | None = None,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Predicted CLV against realised spend: errors, and means by decile of the prediction.

    Returns ``{"source", "mae", "rmse", "predicted_total", "realised_total",
    "total_error_share", "deciles": [{"decile", "n", "predicted", "realised"}], "baseline":
    {...same errors..., "deciles"}}`` (``baseline`` when given).
    """
    users = realised.index
    p = predicted.reindex(users).to_numpy(dtype=float)
    r = realised.to_numpy(dtype=float)
    ok = np.isfinite(p)
    out: dict[str, Any] = {"source": source, "n_users": int(ok.sum()), **_errors(p[ok], r[ok])}
    out["deciles"] = _deciles(p[ok], r[ok], n_bins)
    if baseline is not None:
        b = baseline.reindex(users).to_numpy(dtype=float)
        okb = np.isfinite(b)
        out["baseline"] = {
            "name": "BG/NBD x Gamma-Gamma (repeat purchases, gross)",
            **_errors(b[okb], r[okb]),
            "deciles": _deciles(b[okb], r[okb], n_bins),
        }
    return out


def _deciles(p: np.ndarray, r: np.ndarray, n_bins: int) -> list[dict[str, float]]:
    if len(p) == 0:
        return []
    order = np.argsort(p, kind="mergesort")
    rows = []
    for i, idx in enumerate(np.array_split(order, min(n_bins, len(p)))):
        if len(idx) == 0:
            continue
        rows.append(
            {
                "decile": i + 1,
                "n": len(idx),
                "predicted": float(p[idx].mean()),
                "realised": float(r[idx].mean()),
            }
        )
    return rows


def backtest_quality(
    store: Store,
    fitted: Mapping[str, Any],
    scores: dict[str, pd.Series],
    test: CutoffFrame,
) -> dict[str, Any]:
    """What the backtest adds to ``result.extra``: ``fits`` (BTYD fit reports on the test
    cutoff), ``twins`` (models removed from ``scores`` as the same NBD under another name),
    ``p_alive_source`` and ``clv`` (:func:`clv_check` of the CLV against realised spend)."""
    fits = fit_reports(fitted, test)
    twins = drop_twins(scores, fits)
    ensemble = fitted.get("ensemble")
    if ensemble is not None:
        details = ensemble.predict_details(test)
        source = details.attrs.get("p_alive_source")
    else:
        details, source = btyd_details(test)
    out: dict[str, Any] = {"fits": fits, "twins": twins, "p_alive_source": source}
    if "clv" in details.columns:
        realised = realised_spend(store, test.users, test.cutoff, test.horizon_days)
        out["clv"] = clv_check(
            details["clv"], realised, textbook_clv(test), source=source or "unavailable"
        )
    return out
