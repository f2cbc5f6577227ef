"""Hyper-parameter search: what ``retention tune`` calls (and ``train --params-from-tune``).

:func:`tune` builds the learning frames of a cutoff (the training cutoffs and the validation
cutoff ``cutoff - horizon`` of :func:`retention.features.backtest_cutoffs`, all of whose label
windows end by the cutoff) and runs an Optuna study on them
(:func:`retention.experiments.tune_model`), stored in a SQLite file next to the store so that
the next call resumes it. The cutoff itself is never a learning cutoff: tuning at the test cutoff
of a backtest learns from exactly what the backtest's models learn from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import Store
from retention.exceptions import ConfigError
from retention.experiments import (
    SAMPLERS,
    TUNABLE_MODELS,
    TuningResult,
    stored_best_params,
    study_name,
    tune_model,
)
from retention.features import (
    RETAINED_BY_DEFAULT,
    MinData,
    backtest_cutoffs,
    check_activity,
    check_min_data,
    data_span,
    make_frame,
    to_cutoff,
    to_horizon,
    to_retained_by,
)
from retention.workflows._common import (
    check_output_path,
    check_positive_int,
    json_clean,
    write_json,
)
from retention.workflows._tracking import tracked

__all__ = [
    "TuneReport",
    "TuneRequest",
    "check_model_params",
    "default_study_storage",
    "model_params_from",
    "read_model_params",
    "tune",
    "tuned_params",
    "write_tune_json",
]

#: the study file of a store at ``PATH`` is ``PATH.optuna.sqlite3``
STUDY_SUFFIX = ".optuna.sqlite3"


def default_study_storage(db: str | os.PathLike[str]) -> Path:
    """Where the studies of the store ``db`` are kept by default: ``<db>.optuna.sqlite3``."""
    if str(db) == ":memory:":
        raise ConfigError(
            "An in-memory store has no folder to keep the study in; pass storage= (--storage)."
        )
    return Path(str(db) + STUDY_SUFFIX)


def _check_choice(value: Any, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}; choose one of: {', '.join(choices)}.")
    return str(value)


@dataclass(frozen=True)
class TuneRequest:
    """A hyper-parameter search for one model at one cutoff.

    Attributes
    ----------
    n_trials : int
        Trials to run now (added to the stored study's).
    model : {"gbdt", "sequence", "text_lm_lora"}
    sampler : {"tpe", "random", "grid"}
    cutoff : pd.Timestamp or None
        The cutoff tuned for: a backtest's test cutoff, or the cutoff ``train`` will score at
        (default: the date of the last qualifying event, as for ``train``). It is never a
        learning cutoff: every label window tuned on ends by it.
    horizon_days : int
    n_train : int
        Training cutoffs (as for ``train`` and ``backtest``).
    retained_by : str
        The activity that counts as coming back (see ``BacktestRequest``).
    storage : Path or None
        SQLite file of the study (default: :func:`default_study_storage` of the store).
    study : str or None
        Study name (default: model, cutoff and horizon, ``gbdt-2011-09-10-h90``).
    fixed_params : mapping
        Hyper-parameters held fixed (not searched), e.g. ``{"n_jobs": 2}``.
    prune : bool
        Stop unpromising trials early (median pruner).
    seed : int
        Seed of the sampler.
    timeout : float or None
        Start no new trial after this many seconds.
    min_data : MinData or None
        The least data to learn from (see ``BacktestRequest``).
    """

    n_trials: int
    model: str = "gbdt"
    sampler: str = "tpe"
    cutoff: pd.Timestamp | None = None
    horizon_days: int = 90
    n_train: int = 3
    retained_by: str = RETAINED_BY_DEFAULT
    storage: Path | None = None
    study: str | None = None
    fixed_params: Mapping[str, Any] = field(default_factory=dict)
    prune: bool = True
    seed: int = 0
    timeout: float | None = None
    min_data: MinData | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", _check_choice(self.model, TUNABLE_MODELS, "model"))
        object.__setattr__(self, "sampler", _check_choice(self.sampler, SAMPLERS, "sampler"))
        if (
            isinstance(self.n_trials, bool)
            or not isinstance(self.n_trials, int)
            or self.n_trials < 1
        ):
            raise ConfigError(
                f"trials must be a whole number >= 1; got {self.n_trials!r}. Pass e.g. --trials 50."
            )
        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        object.__setattr__(self, "horizon_days", to_horizon(self.horizon_days))
        object.__setattr__(self, "n_train", check_positive_int(self.n_train, "n_train"))
        object.__setattr__(self, "retained_by", to_retained_by(self.retained_by))
        if self.storage is not None:
            object.__setattr__(self, "storage", Path(self.storage))
        if self.study is not None and (not isinstance(self.study, str) or not self.study.strip()):
            raise ConfigError(f"study must be a non-empty name; got {self.study!r}.")
        object.__setattr__(
            self, "fixed_params", check_model_params(self.fixed_params, "fixed_params")
        )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0; got {self.seed!r}.")
        if not isinstance(self.prune, bool):
            raise ConfigError(f"prune must be True or False; got {self.prune!r}.")
        if self.min_data is not None and not isinstance(self.min_data, MinData):
            raise ConfigError(f"min_data must be a MinData or None; got {self.min_data!r}.")
        if self.timeout is not None and not (
            isinstance(self.timeout, int | float) and self.timeout > 0
        ):
            raise ConfigError(
                f"timeout must be a positive number of seconds; got {self.timeout!r}."
            )


@dataclass(frozen=True)
class TuneReport:
    """What :func:`tune` did: the cutoffs tuned on and the study (:class:`TuningResult`)."""

    cutoff: pd.Timestamp
    horizon_days: int
    retained_by: str
    train_cutoffs: list[pd.Timestamp]
    valid_cutoff: pd.Timestamp
    result: TuningResult

    @property
    def params(self) -> dict[str, Any]:
        """Keyword arguments to train the model with (``retention train --params``)."""
        return self.result.params

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``model`` and ``params`` are what ``retention train --params FILE``
        reads back."""
        out: dict[str, Any] = json_clean(
            {
                "cutoff": self.cutoff,
                "horizon_days": self.horizon_days,
                "retained_by": self.retained_by,
                "train_cutoffs": list(self.train_cutoffs),
                "valid_cutoff": self.valid_cutoff,
                **self.result.to_dict(),
            }
        )
        return out


def _learning_frames(
    store: Store, request: TuneRequest, progress: Progress
) -> tuple[pd.Timestamp, list[Any], Any]:
    span = data_span(store, request.retained_by)
    at = request.cutoff if request.cutoff is not None else check_activity(span).normalize()
    train_cutoffs, valid_cutoff = backtest_cutoffs(
        at, request.horizon_days, n_train=request.n_train, span=span
    )
    with progress.stage("building features"):
        frames = [
            make_frame(store, c, request.horizon_days, retained_by=request.retained_by)
            for c in train_cutoffs
        ]
        valid = make_frame(
            store, valid_cutoff, request.horizon_days, retained_by=request.retained_by
        )
    check_min_data(frames, valid, span, request.min_data, purpose="tune")
    return at, frames, valid


@tracked("tune")
def tune(store: Store, request: TuneRequest, *, progress: Progress | None = None) -> TuneReport:
    """Search the model's hyper-parameters on the learning cutoffs before ``request.cutoff``.

    Parameters
    ----------
    store : Store
        Read only (the study goes to its own SQLite file).
    request : TuneRequest
    progress : Progress, optional
        A bar per trial with the best value so far.

    Returns
    -------
    TuneReport
        ``to_dict()`` holds the best parameters, the value of the defaults and every trial.
    """
    progress = as_progress(progress)
    storage = request.storage if request.storage is not None else default_study_storage(store.path)
    check_output_path(storage, "--storage", "study.sqlite3")
    at, frames, valid = _learning_frames(store, request, progress)
    name = request.study or study_name(request.model, at, request.horizon_days, request.retained_by)
    result = tune_model(
        request.model,
        frames,
        valid,
        n_trials=request.n_trials,
        sampler=request.sampler,
        storage=storage,
        name=name,
        fixed_params=request.fixed_params,
        prune=request.prune,
        seed=request.seed,
        timeout=request.timeout,
        progress=progress,
    )
    return TuneReport(
        cutoff=at,
        horizon_days=request.horizon_days,
        retained_by=request.retained_by,
        train_cutoffs=[pd.Timestamp(f.cutoff) for f in frames],
        valid_cutoff=pd.Timestamp(valid.cutoff),
        result=result,
    )


def write_tune_json(report: TuneReport, path: str | os.PathLike[str]) -> Path:
    """Write ``report.to_dict()`` (``retention tune --json``)."""
    return write_json(report.to_dict(), path)


def tuned_params(
    store: Store,
    model: str,
    *,
    cutoff: Any = None,
    horizon_days: int = 90,
    retained_by: str = RETAINED_BY_DEFAULT,
    storage: Path | None = None,
    study: str | None = None,
) -> dict[str, Any]:
    """The best parameters of the stored study for ``model`` at ``cutoff`` and horizon (what
    ``retention train --params-from-tune`` trains with).

    The cutoff defaults as in ``tune`` and ``train`` (the last qualifying event's date), so
    ``retention tune`` followed by ``retention train --params-from-tune`` with the same
    ``--model``, ``--cutoff``, ``--horizon`` and ``--retained-by`` finds the study.

    Raises
    ------
    ConfigError
        No study file, no such study, or no completed trial.
    """
    retained_by = to_retained_by(retained_by)
    at = (
        to_cutoff(cutoff)
        if cutoff is not None
        else check_activity(data_span(store, retained_by)).normalize()
    )
    horizon_days = to_horizon(horizon_days)
    path = storage if storage is not None else default_study_storage(store.path)
    name = study or study_name(model, at, horizon_days, retained_by)
    return check_model_params(stored_best_params(Path(path), name), "tuned parameters")


def check_model_params(value: Any, name: str = "params") -> dict[str, Any]:
    """``value`` as a dict of keyword arguments (str keys), or a one-line ConfigError."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(
            f'{name} must be a JSON object of hyper-parameters, e.g. {{"num_leaves": 8}}; '
            f"got {value!r}."
        )
    return dict(value)


def read_model_params(source: str | os.PathLike[str], model: str) -> dict[str, Any]:
    """Hyper-parameters from a JSON file: a plain object, or the ``retention tune --json``
    output (its ``params``, which must be for ``model``).

    Raises
    ------
    ConfigError
        The file cannot be read or is not such an object, or it was tuned for another model.
    """
    path = Path(source)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"Cannot read --params {path}: {exc.strerror or exc}. Pass a JSON file, or a JSON "
            "object such as '{\"num_leaves\": 8}'."
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"--params {path} is not JSON ({exc}). Pass a JSON object of hyper-parameters or "
            "the file `retention tune --json` wrote."
        ) from exc
    return model_params_from(payload, model, where=f"--params {path}")


def model_params_from(payload: Any, model: str, *, where: str = "--params") -> dict[str, Any]:
    """The hyper-parameters in ``payload``: a plain object, or a tune report's ``params``."""
    if isinstance(payload, Mapping) and "params" in payload and "study_name" in payload:
        tuned_for = payload.get("model")
        if tuned_for != model:
            raise ConfigError(
                f"{where} holds parameters tuned for {tuned_for!r}; got --model {model}. Pass "
                f"--model {tuned_for}, or tune {model}."
            )
        payload = payload["params"]
    return check_model_params(payload, where)
