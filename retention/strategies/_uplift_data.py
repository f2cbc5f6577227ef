"""Randomised-campaign data for uplift models: checks, feature choice and encoding, propensity.

One row per unit (customer), a treatment column (one value is the control), an outcome (binary
or continuous) and covariates measured before the treatment. :func:`check_uplift_frame` refuses
data an uplift model cannot learn from with one-line errors; :func:`choose_features` picks the
covariates (leaving out ids, constants, and columns that differ between the arms, which under
randomisation means they were measured after the treatment); :class:`FeatureEncoder` turns them
into a LightGBM-ready frame (numbers as float, text as categories); :func:`design_propensity` and
:func:`estimate_propensity` give each unit's probability of each arm.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from retention.exceptions import ConfigError, DataError, RetentionWarning, SchemaError

__all__ = [
    "BALANCE_ALPHA",
    "FeatureEncoder",
    "UpliftData",
    "balance_pvalues",
    "check_uplift_frame",
    "choose_features",
    "design_propensity",
    "estimate_propensity",
]

#: a covariate whose distribution differs between the arms with p below this is left out of the
#: default features: under randomisation that happens to a pre-treatment covariate once in a
#: thousand, and to an outcome measured after the treatment (conversion beside visit) routinely
BALANCE_ALPHA = 1e-3
#: fewest units per arm an uplift model is fitted on
MIN_ARM_SIZE = 20
#: propensities outside [OVERLAP_MIN, 1 - OVERLAP_MIN] make inverse weights explode
OVERLAP_MIN = 0.02


@dataclass(frozen=True)
class UpliftData:
    """A checked randomised campaign: one row per unit.

    Attributes
    ----------
    frame : pd.DataFrame
        The rows (index reset), with the treatment, outcome and covariate columns.
    treatment : str
        The treatment column.
    control : str
        Its control value.
    outcome : str
        The outcome column (numeric; True/False read as 1/0).
    treatments : tuple of str
        The other values of the treatment column, sorted.
    binary : bool
        Whether the outcome takes the values 0 and 1 only.
    """

    frame: pd.DataFrame
    treatment: str
    control: str
    outcome: str
    treatments: tuple[str, ...]
    binary: bool

    @property
    def arms(self) -> tuple[str, ...]:
        """Control first, then the treatments."""
        return (self.control, *self.treatments)

    @property
    def codes(self) -> np.ndarray:
        """Each row's arm as an index of :attr:`arms` (0 is the control)."""
        lookup = {a: i for i, a in enumerate(self.arms)}
        return self.frame[self.treatment].map(lookup).to_numpy(dtype=np.int64)

    @property
    def y(self) -> np.ndarray:
        """The outcome as float."""
        return self.frame[self.outcome].to_numpy(dtype=float)


def _as_label(values: pd.Series) -> pd.Series:
    """Treatment values as strings (``1.0`` read from a CSV as ``"1"`` when whole)."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if len(whole) and bool(np.all(np.equal(np.mod(whole, 1), 0))):
            return values.map(lambda v: None if pd.isna(v) else str(int(v)))
    return values.map(lambda v: None if pd.isna(v) else str(v))


def check_uplift_frame(
    df: pd.DataFrame,
    *,
    treatment: str,
    control: Any,
    outcome: str,
    source: str = "the data",
) -> UpliftData:
    """Check a randomised campaign and return it as :class:`UpliftData`.

    Rows with a missing treatment or outcome are dropped with a warning.

    Raises
    ------
    SchemaError
        The treatment or outcome column is missing.
    DataError
        One treatment value only, a control value that does not occur, an arm with fewer than
        20 units, a non-numeric or constant outcome.
    """
    cols = [str(c) for c in df.columns]
    for flag, col in (("--treatment", treatment), ("--outcome", outcome)):
        if col not in df.columns:
            raise SchemaError(
                f"{source} has no column {col!r} ({flag}); its columns are "
                f"{', '.join(cols[:20])}{', ...' if len(cols) > 20 else ''}."
            )
    if treatment == outcome:
        raise ConfigError(f"--treatment and --outcome are the same column {treatment!r}.")
    frame = df.copy()
    labels = _as_label(frame[treatment])
    y = frame[outcome]
    if pd.api.types.is_bool_dtype(y):
        y = y.astype(float)
    if not pd.api.types.is_numeric_dtype(y):
        sample = ", ".join(map(repr, y.dropna().astype(str).unique()[:3]))
        raise DataError(
            f"Outcome column {outcome!r} of {source} is not numeric (values such as {sample}): "
            "pass a 0/1 or numeric outcome column."
        )
    missing = labels.isna() | y.isna()
    if missing.any():
        warnings.warn(
            f"{int(missing.sum())} row(s) of {source} have no {treatment} or no {outcome} and "
            "were left out.",
            RetentionWarning,
            stacklevel=2,
        )
    frame[treatment] = labels
    frame[outcome] = y.astype(float)
    frame = frame.loc[~missing].reset_index(drop=True)
    values = sorted(frame[treatment].unique().tolist())
    control = str(control)
    if len(values) < 2:
        raise DataError(
            f"Treatment column {treatment!r} of {source} holds one value only "
            f"({values[0] if values else 'none'!r}): an uplift model compares a control with at "
            "least one treatment; pass a column with both."
        )
    if control not in values:
        shown = ", ".join(map(repr, values[:10]))
        raise DataError(
            f"Control value {control!r} does not occur in column {treatment!r} of {source}; its "
            f"values are {shown}. Pass one of them as --control."
        )
    counts = frame[treatment].value_counts()
    small = counts[counts < MIN_ARM_SIZE]
    if len(small):
        raise DataError(
            f"Arm(s) {', '.join(f'{k!r} ({v})' for k, v in small.items())} of {source} have "
            f"fewer than {MIN_ARM_SIZE} units: too few to learn or measure an effect. Merge or "
            "drop them."
        )
    yv = frame[outcome].to_numpy(dtype=float)
    if np.nanmin(yv) == np.nanmax(yv):
        raise DataError(
            f"Outcome {outcome!r} of {source} is constant ({yv[0]:g} for every unit): there is "
            "no effect to measure; pass another --outcome."
        )
    binary = bool(np.isin(yv, (0.0, 1.0)).all())
    treatments = tuple(v for v in values if v != control)
    return UpliftData(frame, treatment, control, outcome, treatments, binary)


def balance_pvalues(frame: pd.DataFrame, columns: Sequence[str], arm: pd.Series) -> pd.Series:
    """p-value of "the column is distributed alike in every arm", per column.

    Kruskal-Wallis for numbers, chi-squared on the contingency table for the rest (missing values
    count as their own category). Under randomisation, every covariate measured before the
    treatment passes (p is uniform); an outcome measured after it does not.
    """
    from scipy import stats

    groups = arm.to_numpy()
    arms = pd.unique(groups)
    out: dict[str, float] = {}
    for col in columns:
        x = frame[col]
        p = 1.0
        try:
            if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
                v = x.to_numpy(dtype=float)
                samples = [v[(groups == a) & ~np.isnan(v)] for a in arms]
                if all(len(s) > 1 for s in samples) and np.nanmax(v) > np.nanmin(v):
                    p = float(stats.kruskal(*samples).pvalue)
            else:
                table = pd.crosstab(x.astype(str).fillna("<missing>"), groups)
                if table.shape[0] > 1:
                    p = float(stats.chi2_contingency(table.to_numpy())[1])
        except ValueError:  # all values equal within the test: nothing to tell
            p = 1.0
        out[str(col)] = p if np.isfinite(p) else 1.0
    return pd.Series(out, dtype=float)


def _nested_in_outcome(x: pd.Series, y: np.ndarray) -> bool:
    """Whether ``x`` is non-zero only where the outcome is (conversion beside visit, spend beside
    conversion): an outcome of the same campaign, not a covariate."""
    if not pd.api.types.is_numeric_dtype(x):
        return False
    v = x.to_numpy(dtype=float)
    nonzero = np.nan_to_num(v) != 0
    share = float(np.mean(y != 0))
    if not nonzero.any() or nonzero.all() or share >= 1.0:
        return False
    # by chance, k non-zero rows all fall where the outcome is with probability share ** k
    if int(nonzero.sum()) * np.log(max(share, 1e-300)) > np.log(1e-3):
        return False
    return bool(np.all(y[nonzero] != 0))


def choose_features(
    data: UpliftData,
    features: Sequence[str] | None = None,
    *,
    id_column: str | None = None,
    max_categories: int = 50,
    alpha: float = BALANCE_ALPHA,
) -> tuple[list[str], dict[str, str]]:
    """The covariates to learn from, and why each other column was left out.

    With ``features`` given, those are used as they are (each must exist). Otherwise every column
    but the treatment, the outcome and ``id_column`` is a candidate, and these are left out (with
    a :class:`RetentionWarning` naming them): ids (a distinct value per row), constants, text
    with more distinct values than rows / 2 (and more than ``max_categories``), columns non-zero
    only where the outcome is, and columns whose distribution differs between the arms
    (p < ``alpha``): under randomisation, measured after the treatment.

    Returns
    -------
    (list of str, dict of str to str)
        The chosen columns, and ``{column: reason}`` for the candidates left out.
    """
    frame = data.frame
    reserved = {data.treatment, data.outcome} | ({id_column} if id_column else set())
    if id_column is not None and id_column not in frame.columns:
        raise SchemaError(f"--id column {id_column!r} is not in the data.")
    if features is not None:
        chosen = [str(f) for f in features]
        missing = [f for f in chosen if f not in frame.columns]
        if missing:
            raise SchemaError(
                f"--features names column(s) {', '.join(map(repr, missing))} that the data "
                f"lacks; its columns are {', '.join(map(str, frame.columns[:20]))}."
            )
        clash = [f for f in chosen if f in reserved]
        if clash:
            raise ConfigError(
                f"--features includes {', '.join(map(repr, clash))}, the treatment, outcome or "
                "id column: list covariates measured before the treatment only."
            )
        if not chosen:
            raise ConfigError("--features is empty: list at least one covariate.")
        return chosen, {}
    dropped: dict[str, str] = {}
    candidates: list[str] = []
    n = len(frame)
    y = data.y
    for col in map(str, frame.columns):
        if col in reserved:
            continue
        x = frame[col]
        n_unique = int(x.nunique(dropna=True))
        numeric = pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)
        if n_unique <= 1:
            dropped[col] = "constant"
        elif n_unique == n and (not numeric or bool(np.all(np.mod(x.dropna(), 1) == 0))):
            dropped[col] = "an id (a distinct value per row)"
        elif not numeric and n_unique > max(max_categories, n // 2):
            dropped[col] = f"text with {n_unique:,} distinct values"
        elif _nested_in_outcome(x, y):
            dropped[col] = f"non-zero only where {data.outcome} is: an outcome, not a covariate"
        else:
            candidates.append(col)
    pvals = balance_pvalues(frame, candidates, frame[data.treatment])
    chosen = []
    for col in candidates:
        if pvals[col] < alpha:
            dropped[col] = (
                f"differs between the arms (p={pvals[col]:.1e}): measured after the treatment, "
                "or the assignment was not random"
            )
        else:
            chosen.append(col)
    suspicious = {c: r for c, r in dropped.items() if not r.startswith(("constant", "an id"))}
    if suspicious:
        shown = "; ".join(f"{c}: {r}" for c, r in suspicious.items())
        warnings.warn(
            f"Left out of the features: {shown}. Pass --features to choose them yourself.",
            RetentionWarning,
            stacklevel=2,
        )
    if not chosen:
        raise DataError(
            "No covariate left to learn from (every other column was left out: "
            f"{'; '.join(f'{c}: {r}' for c, r in dropped.items()) or 'none'}). Pass --features."
        )
    return chosen, dropped


@dataclass
class FeatureEncoder:
    """Covariates as a LightGBM-ready frame: numbers as float, anything else as a category.

    A text column keeps its ``max_categories - 1`` most frequent values; the rest, and values
    not seen in ``fit``, become missing. The learned state is plain data (:meth:`to_dict`), so an
    uplift model can be stored without code.

    Parameters
    ----------
    columns : sequence of str
        The covariates, in order.
    max_categories : int
        Most categories kept per text column.
    """

    columns: Sequence[str]
    max_categories: int = 50
    numeric_: list[str] = field(default_factory=list, init=False)
    categories_: dict[str, list[str]] = field(default_factory=dict, init=False)

    def fit(self, frame: pd.DataFrame) -> FeatureEncoder:
        """Learn which columns are numbers and the categories of the others."""
        if int(self.max_categories) < 2:
            raise ConfigError(f"max_categories must be >= 2; got {self.max_categories!r}.")
        self.numeric_ = []
        self.categories_ = {}
        for col in self.columns:
            x = frame[col]
            if pd.api.types.is_bool_dtype(x) or pd.api.types.is_numeric_dtype(x):
                self.numeric_.append(str(col))
            else:
                counts = x.dropna().astype(str).value_counts(sort=True)
                counts = counts.sort_index(kind="mergesort").sort_values(
                    ascending=False, kind="mergesort"
                )
                self.categories_[str(col)] = sorted(
                    counts.index[: int(self.max_categories) - 1].tolist()
                )
        return self

    @property
    def feature_names_(self) -> list[str]:
        """Column names of :meth:`transform`'s frame (safe for LightGBM)."""
        return [f"f{i}" for i in range(len(self.columns))]

    def encoded(self, names: Sequence[str]) -> list[str]:
        """The encoded column names (``f0, ...``) of some of the covariates, e.g. the segments
        of :class:`~retention.strategies.SegmentLearner`; a covariate not among them is a
        one-line error."""
        columns = [str(c) for c in self.columns]
        missing = [str(n) for n in names if str(n) not in columns]
        if missing:
            raise ConfigError(
                f"--segments names {', '.join(map(repr, missing))}, not among the covariates "
                f"({', '.join(columns)}): name covariates, or add them with --features."
            )
        return [self.feature_names_[columns.index(str(n))] for n in names]

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The encoded frame (columns ``f0, f1, ...`` in ``columns`` order)."""
        if not self.numeric_ and not self.categories_:
            raise ConfigError("FeatureEncoder.transform was called before fit.")
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"The data lacks the covariate(s) {', '.join(map(repr, missing))} the uplift "
                "model was trained on: pass data with the same columns."
            )
        out: dict[str, Any] = {}
        for name, col in zip(self.feature_names_, self.columns, strict=True):
            x = frame[col]
            if col in self.categories_:
                cats = self.categories_[col]
                text = x.astype(str).where(x.notna())
                out[name] = pd.Categorical(text.where(text.isin(cats)), categories=cats)
            else:
                out[name] = pd.to_numeric(x, errors="coerce").to_numpy(dtype=float)
        return pd.DataFrame(out, index=frame.index)

    def to_dict(self) -> dict[str, Any]:
        """The learned state as JSON-ready data."""
        return {
            "columns": list(self.columns),
            "max_categories": int(self.max_categories),
            "numeric": list(self.numeric_),
            "categories": {k: list(v) for k, v in self.categories_.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureEncoder:
        """Rebuild an encoder from :meth:`to_dict`."""
        enc = cls(columns=list(data["columns"]), max_categories=int(data["max_categories"]))
        enc.numeric_ = [str(c) for c in data["numeric"]]
        enc.categories_ = {str(k): [str(x) for x in v] for k, v in data["categories"].items()}
        return enc


def design_propensity(codes: np.ndarray, n_arms: int) -> np.ndarray:
    """Each unit's probability of each arm under complete randomisation: the arms' shares.

    Returns
    -------
    np.ndarray
        Shape ``(n, n_arms)``, every row the same.
    """
    shares = np.bincount(np.asarray(codes, dtype=np.int64), minlength=n_arms) / len(codes)
    return np.tile(shares, (len(codes), 1))


def estimate_propensity(
    X: pd.DataFrame, codes: np.ndarray, n_arms: int, *, random_state: int = 0
) -> np.ndarray:
    """Propensities estimated from the covariates (two-fold cross-fitted LightGBM), for data whose
    assignment probabilities are not known from the design; warns when overlap is poor.

    Returns
    -------
    np.ndarray
        Shape ``(n, n_arms)``, rows summing to 1, clipped to [0.01, 0.99] and renormalised.
    """
    import lightgbm as lgb

    codes = np.asarray(codes, dtype=np.int64)
    rng = np.random.default_rng(random_state)
    fold = rng.integers(0, 2, size=len(codes))
    out = np.zeros((len(codes), n_arms))
    params = {
        "objective": "multiclass",
        "num_class": n_arms,
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 50,
        "verbosity": -1,
        "seed": int(random_state),
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
    }
    for k in (0, 1):
        fit_rows, pred_rows = fold != k, fold == k
        booster = lgb.train(
            params,
            lgb.Dataset(X.loc[fit_rows], label=codes[fit_rows]),
            num_boost_round=100,
        )
        out[pred_rows] = np.asarray(booster.predict(X.loc[pred_rows])).reshape(-1, n_arms)
    out = np.clip(out, 0.01, 0.99)
    out /= out.sum(axis=1, keepdims=True)
    low = (out < OVERLAP_MIN).any(axis=1) | (out > 1 - OVERLAP_MIN).any(axis=1)
    if low.mean() > 0.01:
        warnings.warn(
            f"{low.mean():.1%} of units have an estimated propensity below {OVERLAP_MIN} or above "
            f"{1 - OVERLAP_MIN} for some arm: the arms barely overlap there, so weighted "
            "estimates are unstable. Check how the treatment was assigned.",
            RetentionWarning,
            stacklevel=2,
        )
    return out
