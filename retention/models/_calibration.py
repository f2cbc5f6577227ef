"""Calibration of scores into probabilities: isotonic regression or Platt scaling.

A calibrator learns, on a held-out cutoff (the validation frame of a backtest), a monotone map from
a model's raw score to the observed retention rate, so that "0.7" means seven customers in ten come
back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from retention.exceptions import ConfigError, ModelError
from retention.models._base import check_is_fitted

__all__ = ["CALIBRATION_METHODS", "Calibrator", "logit"]

#: accepted values of ``method``
CALIBRATION_METHODS: tuple[str, ...] = ("isotonic", "platt")

_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """The log-odds of probabilities ``p`` (clipped away from 0 and 1)."""
    q = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    out: np.ndarray = np.log(q) - np.log1p(-q)
    return out


class Calibrator(BaseEstimator):
    """Maps probabilities to calibrated probabilities.

    Parameters
    ----------
    method : {"isotonic", "platt"}
        ``"isotonic"``: a non-decreasing step function (flexible, needs a few hundred customers
        per class, creates ties). ``"platt"``: a logistic regression on the log-odds of the score
        (two parameters, strictly increasing, so it keeps the ranking and the ROC-AUC).

    Attributes
    ----------
    model_ : IsotonicRegression or LogisticRegression
        The fitted map.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=2000)
    >>> y = (rng.uniform(size=2000) < p**2).astype(int)
    >>> cal = Calibrator("platt").fit(p, y)
    >>> bool(abs(cal.transform(p).mean() - y.mean()) < 0.01)
    True
    """

    def __init__(self, method: str = "platt") -> None:
        self.method = method

    def fit(self, p: np.ndarray, y: np.ndarray) -> Calibrator:
        """Learn the map from scores ``p`` (in [0, 1]) to outcomes ``y`` (0/1)."""
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(
                f"method must be one of {', '.join(CALIBRATION_METHODS)}; got {self.method!r}. "
                "(A model's calibration=None turns calibration off.)"
            )
        p = np.asarray(p, dtype=float)
        y = np.asarray(y, dtype=int)
        if p.shape != y.shape or p.ndim != 1:
            raise ModelError(
                f"Calibration needs one score per outcome; got {p.shape} scores and {y.shape} "
                "outcomes. Pass two 1-d arrays of the same length."
            )
        if len(np.unique(y)) < 2:
            raise ModelError(
                "Calibration needs both outcomes on the validation cutoff; got only "
                f"{set(y.tolist())} among {len(y)} customers. "
                "Use a longer history or set calibration=None."
            )
        if self.method == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(p, y)
            self.model_: IsotonicRegression | LogisticRegression = iso
        else:
            lr = LogisticRegression(C=1e4)
            lr.fit(logit(p).reshape(-1, 1), y)
            self.model_ = lr
        return self

    def transform(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of scores ``p``."""
        check_is_fitted(self, "model_")
        p = np.asarray(p, dtype=float)
        if isinstance(self.model_, IsotonicRegression):
            out = self.model_.predict(p)
        else:
            out = self.model_.predict_proba(logit(p).reshape(-1, 1))[:, 1]
        result: np.ndarray = np.clip(np.asarray(out, dtype=float), 0.0, 1.0)
        return result

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The fitted map, as data (see ``retention.models.save_model``)."""
        check_is_fitted(self, "model_")
        return {}, {"model": self.model_}

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned (``load_model``)."""
        expected = IsotonicRegression if self.method == "isotonic" else LogisticRegression
        if not isinstance(parts.get("model"), expected):
            raise ModelError(
                f"A saved {self.method} calibrator holds a {type(parts.get('model')).__name__}, "
                f"not a {expected.__name__}."
            )
        self.model_ = parts["model"]
