"""The interface every retention model implements (it consumes :class:`CutoffFrame`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from retention.exceptions import NotFittedError
from retention.features._frame import CutoffFrame

__all__ = ["CutoffFrame", "RetentionModel", "check_is_fitted"]


def check_is_fitted(model: object, attribute: str) -> None:
    """Raise :class:`NotFittedError` unless ``model`` has the learned ``attribute``."""
    if getattr(model, attribute, None) is None:
        raise NotFittedError(
            f"This {type(model).__name__} is not fitted yet. Call fit(...) before using it."
        )


class RetentionModel(ABC):
    """A model of P(at least one purchase in the horizon) for each customer at a cutoff.

    Subclasses follow scikit-learn: hyper-parameters stored as given in ``__init__``, validated in
    ``fit``, learned state in attributes ending in ``_``, ``fit`` returns ``self``.
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

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__`` (for metadata and cloning)."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p not in {"self"}]
        return {n: getattr(self, n) for n in names if hasattr(self, n)}
