"""Risk bands: how likely a customer is to churn, in three words, from P(retained).

The one definition of the bands: ``retention score`` writes them, ``retention explain`` prints
them, the explain report samples its high-risk customers with them, and the strategies that
target customers by risk read them.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["HIGH_RISK_BELOW", "RISK_BANDS", "risk_band"]

#: ``(upper bound of P(retained), band)``, lowest first: churn risk is ``high`` below 0.3,
#: ``medium`` below 0.6, ``low`` from 0.6 up
RISK_BANDS: tuple[tuple[float, str], ...] = ((0.3, "high"), (0.6, "medium"), (math.inf, "low"))

#: P(retained) under which a customer is high-risk (the upper bound of the ``high`` band)
HIGH_RISK_BELOW: float = RISK_BANDS[0][0]


def risk_band(p_retained: npt.ArrayLike) -> np.ndarray:
    """The churn-risk band of each P(retained): ``high`` below 0.3, ``medium`` below 0.6, else
    ``low``.

    Parameters
    ----------
    p_retained : array-like or float
        Probabilities of coming back within the horizon.

    Returns
    -------
    np.ndarray
        Band names (object dtype), the shape of ``p_retained``.

    Examples
    --------
    >>> risk_band([0.1, 0.3, 0.75]).tolist()
    ['high', 'medium', 'low']
    """
    p = np.asarray(p_retained, dtype=float)
    out = np.full(p.shape, RISK_BANDS[-1][1], dtype=object)
    for upper, band in reversed(RISK_BANDS[:-1]):
        out[p < upper] = band
    return out
