"""Hyper-parameter search with Optuna, on the validation design only (never the test cutoff).

A study searches the hyper-parameters of one registered model (``gbdt``, ``sequence`` or
``text_lm_lora``) on the *learning* frames of a cutoff: the training cutoffs and the validation
cutoff of :func:`retention.features.backtest_cutoffs`, every label window of which ends by the
cutoff. The value of a trial is the mean, over those learning cutoffs, of the ROC-AUC of
customer-grouped out-of-fold predictions (:func:`retention.models.customer_folds`: every cutoff
of a customer in one fold, each prediction from a model that never saw the customer), the
validation design of the prediction issue:

* ``gbdt`` cross-validates on those folds itself (early stopping, calibration): one fit per
  trial, its ``oof_`` predictions are scored, and the mean held-out log loss of every 10th
  boosting round is the intermediate value (negated: higher is better) a pruner acts on;
* any other model is fitted once per fold of customers on the other folds' customers (the
  mechanics of :func:`retention.models.out_of_fold_proba`), and the ROC-AUC of the folds done so
  far is the intermediate value.

Nothing here reads a store: the caller passes frames, so the test cutoff cannot reach a trial.
The study lives in Optuna's RDB storage (a SQLite file), so a second call resumes it; the
settings it was started with (model, fixed parameters, folds, the learning frames' sizes) are
kept on the study and a resume with other settings is refused. The search spaces name each
hyper-parameter with the names the model may use for it and keep the ones the model's
``get_params()`` has at run time, so a renamed parameter drops out of the space rather than
breaking the search.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.exceptions import ConfigError, ModelError
from retention.features import CutoffFrame
from retention.models import N_FOLDS, customer_folds, get_model, subset_frame

__all__ = [
    "SAMPLERS",
    "SEARCH_SPACES",
    "TUNABLE_MODELS",
    "SearchParam",
    "TrialRecord",
    "TuningResult",
    "resolve_search_space",
    "stored_best_params",
    "study_name",
    "tune_model",
]

#: samplers of ``retention tune --sampler``
SAMPLERS: tuple[str, ...] = ("tpe", "random", "grid")

#: boosting rounds between two intermediate values of a ``gbdt`` trial
REPORT_EVERY = 10


@dataclass(frozen=True)
class SearchParam:
    """One hyper-parameter of a search space.

    Attributes
    ----------
    names : tuple of str
        The names the model may give it, preferred first; the first one the model's
        ``get_params()`` holds is searched, and the parameter is left out when none is there.
    kind : {"float", "int", "categorical"}
    low, high : float
        Bounds (float and int).
    log : bool
        Search on a log scale.
    choices : tuple
        The values of a categorical parameter.
    grid : tuple
        The values the grid sampler tries (a few, inside the bounds).
    """

    names: tuple[str, ...]
    kind: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    grid: tuple[Any, ...] = ()

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw the value of ``name`` for ``trial``."""
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value: Any) -> bool:
        """Whether ``value`` (a model's default) lies in the space."""
        if self.kind == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        return bool(self.low <= float(value) <= self.high)

    def describe(self) -> str:
        if self.kind == "categorical":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        scale = ", log" if self.log else ""
        return f"[{self.low:g}, {self.high:g}{scale}]"


#: the search space of each tunable model. Gradient boosting: the tree shape, the learning rate,
#: the sampling and the L2 penalty (rounds by early stopping). The transformers: small spaces
#: (each trial trains a network per fold of customers).
SEARCH_SPACES: dict[str, tuple[SearchParam, ...]] = {
    "gbdt": (
        SearchParam(("learning_rate",), "float", 0.005, 0.2, log=True, grid=(0.01, 0.03, 0.1)),
        SearchParam(("num_leaves",), "int", 2, 64, log=True, grid=(4, 15, 31)),
        SearchParam(("min_child_samples",), "int", 10, 500, log=True, grid=(50, 200)),
        SearchParam(("subsample",), "float", 0.5, 1.0, grid=(0.8,)),
        SearchParam(("colsample_bytree",), "float", 0.3, 1.0, grid=(0.5, 0.8)),
        SearchParam(("reg_lambda",), "float", 1e-3, 100.0, log=True, grid=(1.0, 10.0)),
    ),
    "sequence": (
        SearchParam(("n_layers", "num_layers"), "int", 1, 3, grid=(1, 2)),
        SearchParam(("d_model", "width", "hidden_size"), "categorical", choices=(32, 64, 128),
                    grid=(32, 64)),
        SearchParam(("dropout",), "float", 0.0, 0.3, grid=(0.1,)),
        SearchParam(("learning_rate", "lr"), "float", 1e-4, 3e-3, log=True, grid=(3e-4, 1e-3)),
        SearchParam(("epochs", "max_epochs"), "int", 3, 30, grid=(10,)),
    ),
    "text_lm_lora": (
        SearchParam(("lora_r", "rank"), "categorical", choices=(4, 8, 16), grid=(4, 8)),
        SearchParam(("learning_rate", "lr"), "float", 1e-4, 3e-3, log=True, grid=(3e-4, 1e-3)),
        SearchParam(("epochs", "max_epochs"), "int", 1, 4, grid=(1, 2)),
        SearchParam(
            ("trainable_layers", "n_trainable_layers", "lora_layers", "unfrozen_layers"),
            "int", 1, 6, grid=(2, 6),
        ),
    ),
}  # fmt: skip

#: models ``retention tune --model`` accepts
TUNABLE_MODELS: tuple[str, ...] = tuple(SEARCH_SPACES)

#: what a trial's value is, in words (reports and the study's attributes)
OBJECTIVE = (
    "mean ROC-AUC over the learning cutoffs of customer-grouped out-of-fold predictions "
    "(validation design; the test cutoff is never used)"
)


def _check_model(model: Any) -> str:
    if model not in SEARCH_SPACES:
        raise ConfigError(
            f"Cannot tune model {model!r}; choose one of: {', '.join(TUNABLE_MODELS)}."
        )
    return str(model)


def _check_sampler(sampler: Any) -> str:
    if sampler not in SAMPLERS:
        raise ConfigError(f"Unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}.")
    return str(sampler)


def _check_trials(n_trials: Any) -> int:
    if isinstance(n_trials, bool) or not isinstance(n_trials, int | np.integer) or n_trials < 1:
        raise ConfigError(f"trials must be a whole number >= 1; got {n_trials!r}. Pass e.g. 50.")
    return int(n_trials)


def resolve_search_space(
    model: str, fixed_params: Mapping[str, Any] | None = None
) -> tuple[dict[str, SearchParam], list[str]]:
    """The searched hyper-parameters of ``model``, by the names its ``get_params()`` holds now.

    Parameters
    ----------
    model : str
        One of :data:`TUNABLE_MODELS`.
    fixed_params : mapping, optional
        Hyper-parameters held fixed (left out of the search).

    Returns
    -------
    space : dict of str to SearchParam
        Parameter name -> its search range.
    skipped : list of str
        Parameters of :data:`SEARCH_SPACES` the model does not have (by any of their names).

    Raises
    ------
    ConfigError
        An unknown model or fixed parameter, or nothing left to search.

    Examples
    --------
    >>> space, skipped = resolve_search_space("gbdt", {"num_leaves": 8})
    >>> sorted(space)[:2], skipped
    (['colsample_bytree', 'learning_rate'], [])
    """
    model = _check_model(model)
    fixed = dict(fixed_params or {})
    available = get_model(model, **fixed).get_params()  # ConfigError on an unknown fixed name
    space: dict[str, SearchParam] = {}
    skipped: list[str] = []
    for param in SEARCH_SPACES[model]:
        name = next((n for n in param.names if n in available), None)
        if name is None:
            skipped.append(param.names[0])
        elif name not in fixed:
            space[name] = param
    if not space:
        raise ConfigError(
            f"Nothing is left to search for {model}: every searched parameter is fixed or "
            f"unknown to the model (fixed: {', '.join(sorted(fixed)) or 'none'}). Fix fewer "
            "parameters."
        )
    return space, skipped


def study_name(model: str, cutoff: Any, horizon_days: int, retained_by: str = "purchase") -> str:
    """The study's default name: ``gbdt-2011-09-10-h90`` (``-by-<activity>`` unless purchase)."""
    name = f"{model}-{pd.Timestamp(cutoff):%Y-%m-%d}-h{int(horizon_days)}"
    if retained_by != "purchase":
        name += f"-by-{retained_by.replace(',', '+')}"
    return name


# ------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class TrialRecord:
    """One trial of a study: ``state`` is ``COMPLETE``, ``PRUNED``, ``FAIL`` or ``RUNNING``."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    seconds: float | None
    step: int | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "state": self.state,
            "value": _finite(self.value),
            "params": dict(self.params),
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "last_step": self.step,
            "note": self.note,
        }


@dataclass(frozen=True)
class TuningResult:
    """What :func:`tune_model` did, and the study as it stands after it.

    Attributes
    ----------
    model, sampler, study_name : str
    storage : Path or None
        The SQLite file of the study (None: in memory, not resumable).
    objective : str
        What a trial's value is.
    space : dict of str to str
        Searched parameter -> its range.
    skipped : list of str
        Parameters of the space the model does not have.
    fixed_params : dict
        Hyper-parameters held fixed.
    n_trials_run : int
        Trials run by this call.
    trials : list of TrialRecord
        Every trial of the study (earlier calls' too), in order.
    best_value : float or None
        Best value of the study (None when no trial completed).
    best_params : dict
        The searched parameters of the best trial.
    default_value : float or None
        Value of the trial that ran the model's defaults (the study's first trial), when there
        is one.
    seconds : float
        Wall time of this call.
    """

    model: str
    sampler: str
    study_name: str
    storage: Path | None
    objective: str
    space: dict[str, str]
    skipped: list[str]
    fixed_params: dict[str, Any]
    n_trials_run: int
    trials: list[TrialRecord]
    best_value: float | None
    best_params: dict[str, Any]
    default_value: float | None
    seconds: float
    learning: list[dict[str, Any]] = field(default_factory=list)

    def count(self, state: str) -> int:
        """Trials of the study in ``state``."""
        return sum(t.state == state for t in self.trials)

    @property
    def params(self) -> dict[str, Any]:
        """Every keyword argument to train the model with: the fixed ones and the best ones."""
        return {**self.fixed_params, **self.best_params}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``json.dumps(..., allow_nan=False)`` accepts it)."""
        return {
            "model": self.model,
            "sampler": self.sampler,
            "study_name": self.study_name,
            "storage": None if self.storage is None else str(self.storage),
            "objective": self.objective,
            "space": dict(self.space),
            "skipped": list(self.skipped),
            "fixed_params": _jsonable(self.fixed_params),
            "n_trials_run": self.n_trials_run,
            "n_trials": len(self.trials),
            "n_complete": self.count("COMPLETE"),
            "n_pruned": self.count("PRUNED"),
            "n_failed": self.count("FAIL"),
            "best_value": _finite(self.best_value),
            "default_value": _finite(self.default_value),
            "best_params": _jsonable(self.best_params),
            "params": _jsonable(self.params),
            "seconds": round(self.seconds, 3),
            "learning": _jsonable(self.learning),
            "trials": [t.to_dict() for t in self.trials],
        }


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars as Python numbers)."""
    result: Any = json.loads(json.dumps(value, default=_json_default))
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


# ------------------------------------------------------------------------------------ objective
def _check_frames(train: Sequence[CutoffFrame], valid: CutoffFrame) -> list[CutoffFrame]:
    frames = [*(train if not isinstance(train, CutoffFrame) else [train]), valid]
    for f in frames:
        if not isinstance(f, CutoffFrame) or f.label is None:
            raise ConfigError(
                "Tuning learns from labelled CutoffFrame objects (make_frame(..., "
                f"with_label=True)); got {type(f).__name__}"
                + ("" if not isinstance(f, CutoffFrame) else " without a label")
                + "."
            )
        if len(f) == 0 or f.label.nunique() < 2:
            raise ModelError(
                f"The learning cutoff {pd.Timestamp(f.cutoff):%Y-%m-%d} holds "
                f"{len(f)} customer(s) and {int(f.label.sum()) if len(f) else 0} retained: "
                "a ROC-AUC needs both outcomes. Use more data or an earlier --cutoff."
            )
    return frames


def learning_summary(frames: Sequence[CutoffFrame]) -> list[dict[str, Any]]:
    """Cutoff, customers and retained customers of each learning frame (the study checks that a
    resume learns from the same data)."""
    return [
        {
            "cutoff": f"{pd.Timestamp(f.cutoff):%Y-%m-%d}",
            "label_end": f"{pd.Timestamp(f.cutoff) + pd.Timedelta(days=f.horizon_days):%Y-%m-%d}",
            "n_users": len(f),
            "n_retained": int(np.asarray(f.label, dtype=int).sum()) if f.label is not None else 0,
        }
        for f in frames
    ]


def _mean_auc(frames: Sequence[CutoffFrame], preds: Sequence[np.ndarray]) -> float:
    """Mean over the frames of the ROC-AUC of the rows predicted so far (NaN rows skipped)."""
    from sklearn.metrics import roc_auc_score

    values = []
    for f, p in zip(frames, preds, strict=True):
        y = np.asarray(f.label, dtype=int)
        done = np.isfinite(p)
        if done.sum() and len(np.unique(y[done])) == 2:
            values.append(float(roc_auc_score(y[done], p[done])))
    return float(np.mean(values)) if values else float("nan")


def _supports_round_callbacks(model: Any) -> bool:
    """Whether ``model.fit`` takes LightGBM ``callbacks`` and leaves out-of-fold predictions."""
    import inspect

    try:
        parameters = inspect.signature(model.fit).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    return "callbacks" in parameters and hasattr(model, "cv_folds")


class _Objective:
    """Callable for ``study.optimize``: one trial = one search point on the learning frames."""

    def __init__(
        self,
        model: str,
        space: Mapping[str, SearchParam],
        fixed: Mapping[str, Any],
        frames: list[CutoffFrame],
        n_folds: int,
        progress: Progress,
        n_trials: int,
        best: Callable[[], float | None],
    ) -> None:
        self.model = model
        self.space = dict(space)
        self.fixed = dict(fixed)
        self.frames = frames
        self.n_folds = n_folds
        self.progress = progress
        self.n_trials = n_trials
        self.best = best
        self.done = 0

    def __call__(self, trial: Any) -> float:
        params = {name: p.suggest(trial, name) for name, p in self.space.items()}
        model = get_model(self.model, **self.fixed, **params)
        best = self.best()
        self.done += 1
        description = f"trial {self.done}/{self.n_trials} (#{trial.number}), best so far " + (
            "-" if best is None else f"{best:.4f}"
        )
        try:
            if _supports_round_callbacks(model):
                return self._rounds(trial, model, description)
            return self._folds(trial, model, description)
        except ModelError as exc:  # a point the model cannot train on: a failed trial
            trial.set_user_attr("error", " ".join(str(exc).split()))
            raise

    def _rounds(self, trial: Any, model: Any, description: str) -> float:
        """One cross-validated fit; the held-out log loss of the rounds as intermediate values."""
        import optuna

        with self.progress.task(description, total=None) as task:

            def report(env: Any) -> None:
                round_ = int(env.iteration) + 1
                if round_ % REPORT_EVERY:
                    return
                task.advance(REPORT_EVERY)
                loss = next(
                    (float(r[2]) for r in env.evaluation_result_list if "logloss" in str(r[1])),
                    None,
                )
                if loss is None or not math.isfinite(loss):
                    return
                trial.report(-loss, round_)
                if trial.should_prune():
                    trial.set_user_attr("pruned_at", round_)
                    raise optuna.TrialPruned(f"pruned at round {round_}")

            model.fit(self.frames[:-1], self.frames[-1], callbacks=[report])
        oof = getattr(model, "oof_", None)
        if oof is None:  # pragma: no cover - cv_folds is checked above
            raise ModelError(f"{self.model} left no out-of-fold predictions to score.")
        preds = []
        for f in self.frames:
            rows = oof[oof["cutoff"] == np.datetime64(pd.Timestamp(f.cutoff), "ns")]
            p = pd.Series(rows["p"].to_numpy(), index=rows["user_id"].astype(str))
            preds.append(p.reindex(f.users.astype(str)).to_numpy(dtype=float))
        trial.set_user_attr("best_iteration", int(model.best_iteration_))
        return _mean_auc(self.frames, preds)

    def _folds(self, trial: Any, model: Any, description: str) -> float:
        """A clone per fold of customers, fitted on the other folds; the ROC-AUC of the folds
        done so far as intermediate values."""
        import optuna
        from sklearn.base import clone

        folds = [customer_folds(f.users, self.n_folds) for f in self.frames]
        preds = [np.full(len(f), np.nan) for f in self.frames]
        with self.progress.task(description, total=self.n_folds) as task:
            for k in range(self.n_folds):
                learn = [
                    subset_frame(f, f.users[fold != k])
                    for f, fold in zip(self.frames, folds, strict=True)
                ]
                if any(len(f) == 0 for f in learn):
                    raise ModelError(
                        f"Fold {k} of {self.n_folds} holds every customer of a learning cutoff. "
                        "Use more customers or fewer folds."
                    )
                fitted = clone(model).fit(learn[:-1], learn[-1])
                for i, (f, fold) in enumerate(zip(self.frames, folds, strict=True)):
                    mask = fold == k
                    if mask.any():
                        preds[i][mask] = fitted.predict_proba(subset_frame(f, f.users[mask]))
                task.advance()
                value = _mean_auc(self.frames, preds)
                if k < self.n_folds - 1 and math.isfinite(value):
                    trial.report(value, k)
                    if trial.should_prune():
                        trial.set_user_attr("pruned_at", k)
                        raise optuna.TrialPruned(f"pruned after fold {k + 1}")
        return _mean_auc(self.frames, preds)


# ------------------------------------------------------------------------------------ the study
@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines ("Trial 3 finished ...") and its warnings about failed trials off
    while a search runs (the result reports them); the verbosity is restored after."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _storage(path: Path | None) -> Any:
    import optuna

    if path is None:
        return optuna.storages.InMemoryStorage()
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"storage {path} is a folder: pass a file name, e.g. {path / 'study.sqlite3'}."
        )
    if not path.parent.exists():
        raise ConfigError(f"The folder of storage {path} does not exist; create it first.")
    try:
        return optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
    except Exception as exc:  # SQLAlchemy/alembic errors: not a study file, or unwritable
        raise ConfigError(
            f"Cannot open {path} as an Optuna study file ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}). Pass another --storage."
        ) from exc


def _sampler(kind: str, space: Mapping[str, SearchParam], seed: int) -> Any:
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        grid = {name: list(p.grid or p.choices) for name, p in space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10)


def _pruner(round_based: bool, prune: bool) -> Any:
    import optuna

    if not prune:
        return optuna.pruners.NopPruner()
    if round_based:  # 100 rounds before a trial may be pruned, after 5 finished trials
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=100)
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def _settings_digest(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _value(trial: Any) -> float:
    """The value of a completed trial."""
    value = trial.value
    if value is None:  # pragma: no cover - only completed trials are passed
        raise ModelError(f"Trial {trial.number} has no value.")
    return float(value)


def _records(study: Any) -> list[TrialRecord]:
    out = []
    for t in study.get_trials(deepcopy=False):
        seconds = None
        if t.datetime_start is not None and t.datetime_complete is not None:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        note = t.user_attrs.get("error")
        if t.state.name == "PRUNED":
            note = f"pruned at step {t.last_step}"
        out.append(
            TrialRecord(
                number=int(t.number),
                state=t.state.name,
                value=t.value if t.state.name == "COMPLETE" else None,
                params=dict(t.params),
                seconds=seconds,
                step=t.last_step,
                note=note,
            )
        )
    return out


def tune_model(
    model: str,
    train: Sequence[CutoffFrame],
    valid: CutoffFrame,
    *,
    n_trials: int,
    sampler: str = "tpe",
    storage: Path | None = None,
    name: str | None = None,
    fixed_params: Mapping[str, Any] | None = None,
    n_folds: int = N_FOLDS,
    prune: bool = True,
    seed: int = 0,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> TuningResult:
    """Search ``model``'s hyper-parameters on the learning frames; store and resume the study.

    Parameters
    ----------
    model : str
        One of :data:`TUNABLE_MODELS`.
    train, valid : CutoffFrame
        The learning frames (labelled; ``valid`` the latest), e.g. those of
        :func:`retention.features.backtest_cutoffs` before a cutoff. Nothing else is read.
    n_trials : int
        Trials to run in this call (a grid stops early once every point has been tried).
    sampler : {"tpe", "random", "grid"}
    storage : Path, optional
        SQLite file of the study; a study of the same name there is resumed. None: in memory.
    name : str, optional
        Study name (default :func:`study_name` of the model and the last learning frame's
        cutoff plus horizon, i.e. the cutoff tuned for).
    fixed_params : mapping, optional
        Hyper-parameters held fixed (left out of the search, passed to every trial).
    n_folds : int
        Folds of customers of a model without its own cross-validation.
    prune : bool
        Stop unpromising trials early (Optuna's ``MedianPruner``).
    seed : int
        Seed of the sampler (offset by the trials already in the study, so a resume draws new
        points).
    timeout : float, optional
        Stop starting new trials after this many seconds.
    progress : Progress, optional
        A bar per trial (rounds or folds), its description the best value so far.

    Returns
    -------
    TuningResult

    Raises
    ------
    ConfigError
        A bad model, sampler, trial count or fixed parameter, or a stored study of that name
        that was run with other settings or on other data.
    """
    import optuna

    model = _check_model(model)
    sampler = _check_sampler(sampler)
    n_trials = _check_trials(n_trials)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ConfigError(f"n_folds must be a whole number >= 2; got {n_folds!r}.")
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise ConfigError(f"timeout must be a positive number of seconds; got {timeout!r}.")
    fixed = dict(fixed_params or {})
    space, skipped = resolve_search_space(model, fixed)
    frames = _check_frames(train, valid)
    horizon = frames[-1].horizon_days
    tuned_for = pd.Timestamp(frames[-1].cutoff) + pd.Timedelta(days=horizon)
    if name is None:
        name = study_name(model, tuned_for, horizon, frames[-1].retained_by)
    learning = learning_summary(frames)
    settings = {
        "model": model,
        "fixed_params": _jsonable(fixed),
        "n_folds": n_folds,
        "objective": OBJECTIVE,
        "learning": learning,
    }
    probe = get_model(model, **fixed)
    round_based = _supports_round_callbacks(probe)
    if round_based and probe.get_params().get("cv_folds", N_FOLDS) is None:
        raise ConfigError(
            f"Tuning {model} needs its cross-validation (out-of-fold predictions); do not fix "
            "cv_folds=None."
        )
    started = time.perf_counter()
    with _quiet_optuna(), warnings.catch_warnings():
        # optuna's ExperimentalWarning and the like are not the user's concern here
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        store = _storage(storage)
        study = optuna.create_study(
            storage=store,
            study_name=name,
            direction="maximize",
            load_if_exists=True,
            pruner=_pruner(round_based, prune),
        )
        stored = study.user_attrs.get("settings")
        if stored is None:
            study.set_user_attr("settings", settings)
            study.set_user_attr("settings_digest", _settings_digest(settings))
        elif _settings_digest(stored) != _settings_digest(settings):
            diff = sorted(k for k in settings if stored.get(k) != _jsonable(settings[k]))
            raise ConfigError(
                f"Study {name!r} in {storage} was run with other settings or on other data "
                f"({', '.join(diff)} differ: e.g. {diff[0]} was {stored.get(diff[0])!r}). "
                "Resume it with the same settings, or pass another --storage."
            )
        existing = len(study.trials)
        study.sampler = _sampler(sampler, space, seed + existing)
        if existing == 0 and sampler != "grid":
            defaults = probe.get_params()
            start = {n: defaults[n] for n, p in space.items() if p.contains(defaults.get(n))}
            if start:
                study.enqueue_trial(start, user_attrs={"defaults": True})

        def best() -> float | None:
            done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
            return max(_value(t) for t in done) if done else None

        objective = _Objective(
            model, space, fixed, frames, n_folds, as_progress(progress), n_trials, best
        )
        study.optimize(
            objective,
            n_trials=n_trials,
            timeout=timeout,
            catch=(ModelError,),
            gc_after_trial=False,
            show_progress_bar=False,
        )
        records = _records(study)
        complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        best_trial = max(complete, key=_value) if complete else None
        default_value = next((_value(t) for t in complete if t.user_attrs.get("defaults")), None)
    return TuningResult(
        model=model,
        sampler=sampler,
        study_name=name,
        storage=None if storage is None else Path(storage),
        objective=OBJECTIVE,
        space={n: p.describe() for n, p in space.items()},
        skipped=skipped,
        fixed_params=fixed,
        n_trials_run=objective.done,
        trials=records,
        best_value=None if best_trial is None else _value(best_trial),
        best_params={} if best_trial is None else dict(best_trial.params),
        default_value=default_value,
        seconds=time.perf_counter() - started,
        learning=learning,
    )


def stored_best_params(storage: Path, name: str) -> dict[str, Any]:
    """Every keyword argument to train with from a stored study: its fixed parameters and the
    searched ones of its best trial.

    Raises
    ------
    ConfigError
        No such file or study, or no trial of it completed.
    """
    import optuna

    path = Path(storage)
    if not path.is_file():
        raise ConfigError(
            f"No study file {path}: run `retention tune` first (it writes the study there), or "
            "pass its --storage."
        )
    with _quiet_optuna():
        try:
            study = optuna.load_study(study_name=name, storage=_storage(path))
        except KeyError:
            names = optuna.get_all_study_names(storage=_storage(path))
            raise ConfigError(
                f"{path} holds no study {name!r} (it holds: {', '.join(names) or 'none'}). Tune "
                "with the same --model, --cutoff, --horizon and --retained-by first."
            ) from None
        complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if not complete:
            raise ConfigError(
                f"Study {name!r} in {path} has no completed trial yet. Run `retention tune` "
                "with more --trials."
            )
        best = max(complete, key=_value)
        fixed = dict((study.user_attrs.get("settings") or {}).get("fixed_params") or {})
    return {**fixed, **dict(best.params)}
