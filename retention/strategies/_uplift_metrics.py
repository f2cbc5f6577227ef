"""How well an uplift model ranks: Qini and uplift curves, their areas, uplift at k.

All take one treatment against the control: ``y`` (binary or continuous outcome), ``uplift`` (the
model's score, higher first) and ``treated`` (1 for the treatment, 0 for the control). Units with
equal scores form one step of a curve. Definitions (Radcliffe 2007; the same as scikit-uplift's,
so that figures compare):

* **Qini curve** at the first ``k`` units: ``Q(k) = Y_t(k) - Y_c(k) * N_t(k) / N_c(k)``, the
  treated outcome minus the controls' scaled to as many units: incremental outcomes had the top
  ``k`` been treated.
* **Uplift curve**: ``U(k) = (Y_t(k) / N_t(k) - Y_c(k) / N_c(k)) * k``.
* **Random baseline**: the straight line from ``(0, 0)`` to the curve's end ``(N, Q(N))``: what
  targeting in random order gains on average. A random model's curve lies on it.
* **Perfect curve**: the Qini curve of the score ``y * treated - y * (1 - treated)`` (responders
  among the treated first, responders among the controls last); for the uplift curve of a binary
  outcome, treated responders and control non-responders first (scikit-uplift's definition).
* **Normalised AUUC** (``qini_auc_score``, ``uplift_auc_score``): area between the curve and the
  random baseline, divided by the perfect curve's: 1 is perfect, 0 random, negative worse than
  random. The Qini one is the "Qini coefficient" of the JSON (``qini``).
* **Raw areas** (``qini_area``, ``uplift_area``): the area between the curve and the baseline
  divided by ``N**2``: in outcome units per unit, not normalised.
* **uplift@k** (``uplift_at_k``, share ``k``): the mean outcome of the treated minus that of the
  controls among the top ``k * N`` units of both groups together.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from retention.exceptions import DataError

__all__ = [
    "perfect_score",
    "qini_area",
    "qini_auc_score",
    "qini_curve",
    "uplift_area",
    "uplift_at_k",
    "uplift_auc_score",
    "uplift_curve",
]


def _arrays(
    y: npt.ArrayLike, uplift: npt.ArrayLike, treated: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yv = np.asarray(y, dtype=float).ravel()
    u = np.asarray(uplift, dtype=float).ravel()
    t = np.asarray(treated).ravel().astype(float)
    if not (len(yv) == len(u) == len(t)):
        raise DataError(f"y, uplift and treated differ in length ({len(yv)}, {len(u)}, {len(t)}).")
    if not np.isin(t, (0.0, 1.0)).all():
        raise DataError("treated must be 0 (control) or 1 (treatment) for every unit.")
    if t.sum() == 0 or t.sum() == len(t):
        raise DataError("The curve needs units of both the treatment and the control.")
    if np.isnan(u).any() or np.isnan(yv).any():
        raise DataError("uplift and y must not be missing.")
    return yv, u, t


def _cumulative(
    y: np.ndarray, u: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-u, kind="mergesort")
    ys, us, ts = y[order], u[order], t[order]
    ends = np.r_[np.flatnonzero(np.diff(us)), len(us) - 1]  # last index of each score step
    n_t = np.cumsum(ts)[ends]
    y_t = np.cumsum(ys * ts)[ends]
    y_c = np.cumsum(ys * (1 - ts))[ends]
    n_all = ends + 1.0
    n_c = n_all - n_t
    return n_all, n_t, n_c, y_t, y_c


def qini_curve(
    y: npt.ArrayLike, uplift: npt.ArrayLike, treated: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(k, Q(k))`` of the Qini curve, starting at ``(0, 0)``."""
    n_all, n_t, n_c, y_t, y_c = _cumulative(*_arrays(y, uplift, treated))
    ratio = np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c > 0)
    q = y_t - y_c * ratio
    return np.r_[0.0, n_all], np.r_[0.0, q]


def uplift_curve(
    y: npt.ArrayLike, uplift: npt.ArrayLike, treated: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(k, U(k))`` of the uplift curve, starting at ``(0, 0)``."""
    n_all, n_t, n_c, y_t, y_c = _cumulative(*_arrays(y, uplift, treated))
    rate_t = np.divide(y_t, n_t, out=np.zeros_like(y_t), where=n_t > 0)
    rate_c = np.divide(y_c, n_c, out=np.zeros_like(y_c), where=n_c > 0)
    return np.r_[0.0, n_all], np.r_[0.0, (rate_t - rate_c) * n_all]


def perfect_score(y: npt.ArrayLike, treated: npt.ArrayLike) -> np.ndarray:
    """The score of the perfect curve: ``y`` for the treated, ``-y`` for the controls."""
    yv = np.asarray(y, dtype=float)
    t = np.asarray(treated, dtype=float)
    return yv * t - yv * (1 - t)


def _area_above_random(x: np.ndarray, q: np.ndarray) -> float:
    return float(np.trapezoid(q, x) - 0.5 * x[-1] * q[-1])


def qini_area(y: npt.ArrayLike, uplift: npt.ArrayLike, treated: npt.ArrayLike) -> float:
    """Area between the Qini curve and the random baseline, divided by ``N**2``."""
    x, q = qini_curve(y, uplift, treated)
    return _area_above_random(x, q) / x[-1] ** 2


def uplift_area(y: npt.ArrayLike, uplift: npt.ArrayLike, treated: npt.ArrayLike) -> float:
    """Area between the uplift curve and the random baseline, divided by ``N**2``."""
    x, u = uplift_curve(y, uplift, treated)
    return _area_above_random(x, u) / x[-1] ** 2


def qini_auc_score(y: npt.ArrayLike, uplift: npt.ArrayLike, treated: npt.ArrayLike) -> float:
    """Normalised area under the Qini curve (the Qini coefficient): 0 random, 1 perfect.

    NaN when the perfect curve has no area above the baseline (no outcome to rank).
    """
    x, q = qini_curve(y, uplift, treated)
    xp, qp = qini_curve(y, perfect_score(y, treated), treated)
    best = _area_above_random(xp, qp)
    return _area_above_random(x, q) / best if best > 0 else float("nan")


def uplift_auc_score(y: npt.ArrayLike, uplift: npt.ArrayLike, treated: npt.ArrayLike) -> float:
    """Normalised area under the uplift curve: 0 random, 1 perfect."""
    x, u = uplift_curve(y, uplift, treated)
    yv, tv = np.asarray(y, dtype=float), np.asarray(treated, dtype=float)
    if np.isin(yv, (0.0, 1.0)).all():
        # binary: treated responders and control non-responders first, in the order that
        # maximises the curve (scikit-uplift's perfect uplift curve)
        control_responders = np.sum((yv == 1) & (tv == 0))
        treated_non = np.sum((yv == 0) & (tv == 1))
        best_score = 2.0 * (yv == tv) + (yv if control_responders > treated_non else tv)
    else:
        best_score = perfect_score(yv, tv)
    xp, up = uplift_curve(y, best_score, treated)
    best = _area_above_random(xp, up)
    return _area_above_random(x, u) / best if best > 0 else float("nan")


def uplift_at_k(
    y: npt.ArrayLike, uplift: npt.ArrayLike, treated: npt.ArrayLike, k: float = 0.3
) -> float:
    """Mean outcome of the treated minus the controls' among the top ``k`` share of units.

    NaN when the top share holds no unit of one of the groups.
    """
    if not 0 < float(k) < 1:
        raise DataError(f"k must be a share in (0, 1); got {k!r}.")
    yv, u, t = _arrays(y, uplift, treated)
    top = np.argsort(-u, kind="mergesort")[: int(len(u) * float(k))]
    yt, tt = yv[top], t[top]
    if tt.sum() == 0 or tt.sum() == len(tt):
        return float("nan")
    return float(yt[tt == 1].mean() - yt[tt == 0].mean())
