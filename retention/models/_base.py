"""The interface every retention model implements (it consumes :class:`CutoffFrame`).

Every model, and every raw estimator it is built of (BTYD, calibration, text features), is a
scikit-learn ``BaseEstimator``: ``get_params``/``set_params``/``sklearn.base.clone`` work (tuning
relies on them), ``__init__`` stores hyper-parameters exactly as given, ``fit`` validates them and
returns ``self``, learned state lives in attributes ending in ``_``, and ``predict_proba`` /
``predict_details`` write nothing on the model. ``tests/models/test_check_estimator.py`` checks
all of it on every registered model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from retention.exceptions import NotFittedError
from retention.features import CutoffFrame

__all__ = ["CutoffFrame", "RetentionModel", "check_is_fitted"]


def check_is_fitted(model: object, attribute: str) -> None:
    """Raise :class:`NotFittedError` unless ``model`` has the learned ``attribute``."""
    if getattr(model, attribute, None) is None:
        raise NotFittedError(
            f"This {type(model).__name__} is not fitted yet. Call fit(...) before using it."
        )


class RetentionModel(BaseEstimator, ABC):
    """A model of P(at least one purchase in the horizon) for each customer at a cutoff.

    Subclasses follow scikit-learn: hyper-parameters stored as given in ``__init__`` (no
    validation, no copies, no derived values there), validated in ``fit``, learned state in
    attributes ending in ``_``, ``fit`` returns ``self``; ``get_params``, ``set_params`` and
    ``sklearn.base.clone`` come from ``BaseEstimator``. Predicting never changes the model: a
    cache a model needs between calls lives outside it (see ``GBDTModel``).
    """

    #: registry name used by ``retention backtest --models``
    name: ClassVar[str] = ""

    @abstractmethod
    def fit(self, train: Sequence[CutoffFrame], valid: CutoffFrame | None = None) -> RetentionModel:
        """Learn from training cutoffs (stacked); ``valid`` is a later cutoff for early stopping
        and calibration. Labels of every frame given here end before the test cutoff."""

    @abstractmethod
    def predict_proba(self, frame: CutoffFrame) -> np.ndarray:
        """P(retained) for every customer of ``frame``, in the order of ``frame.users``."""

    def predict_details(self, frame: CutoffFrame) -> pd.DataFrame:
        """Per-customer outputs beyond the probability (P(alive), expected purchases, CLV...).

        The default returns only ``p_retained``; models with more to say override it.
        """
        return pd.DataFrame({"p_retained": self.predict_proba(frame)}, index=frame.users)
