"""Uplift workflows: evaluate on any randomised CSV, train on a campaign in the store, score the
current customers (what ``retention uplift evaluate|train|score`` call).

* :func:`uplift_evaluate` reads a CSV (or Parquet) file with one row per unit and runs the
  protocol of :func:`retention.strategies.evaluate_uplift`: learners, held-out Qini and
  uplift@30%, the policy against random targeting by IPW and DR (the JSON contract of DESIGN.md);
* :func:`uplift_train` joins a campaign's ``assignments`` and ``outcomes`` with the customers'
  covariates (the ``users`` columns and, when the store has purchases before the campaign, the
  point-in-time features at its date), evaluates the learners the same way, and stores the
  targeting rule the evaluation chose (:class:`retention.strategies.UpliftPolicyModel`: the
  learners it averages, the calibration per treatment and the shrinkage, all refitted on every
  unit) in ``uplift_models`` (numbers and LightGBM text, no code);
* :func:`uplift_score` writes each current customer's uplift per treatment under that rule to
  ``uplift_scores`` (what the plan ranks). A model stored before the rule was (one learner)
  scores as that learner's raw uplift.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import Store
from retention.exceptions import ConfigError, DataError, ModelError, ReadError, RetentionWarning
from retention.strategies import (
    LEARNER_CLASSES,
    UPLIFT_LEARNERS,
    FeatureEncoder,
    PolicyRule,
    UpliftEvaluation,
    UpliftPolicyModel,
    check_uplift_frame,
    choose_features,
    design_propensity,
    estimate_propensity,
    evaluate_uplift,
    uplift_policy_from_state,
)
from retention.workflows._common import json_clean, write_json
from retention.workflows._tracking import tracked

__all__ = [
    "UpliftEvaluateReport",
    "UpliftEvaluateRequest",
    "UpliftModelRecord",
    "UpliftScoreReport",
    "UpliftScoreRequest",
    "UpliftTrainReport",
    "UpliftTrainRequest",
    "read_uplift_model",
    "uplift_evaluate",
    "uplift_score",
    "uplift_train",
    "write_uplift_json",
]

_PROPENSITY = ("design", "estimate")


def _models(value: Any) -> tuple[str, ...]:
    names = [m.strip() for m in value.split(",")] if isinstance(value, str) else list(value)
    names = [str(n) for n in names if str(n).strip()]
    if not names:
        raise ConfigError(f"Pass at least one uplift model: {', '.join(UPLIFT_LEARNERS)}.")
    unknown = [n for n in names if n not in LEARNER_CLASSES]
    if unknown:
        raise ConfigError(
            f"Unknown uplift model(s) {', '.join(unknown)}; choose from "
            f"{', '.join(UPLIFT_LEARNERS)}."
        )
    return tuple(dict.fromkeys(names))


def _share(value: Any, name: str = "share") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1); got {value!r}.") from None
    if not 0 < v < 1:
        raise ConfigError(f"{name} must be a number in (0, 1), e.g. 0.3; got {value!r}.")
    return v


def _costs(value: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in (value or {}).items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"The cost of {k!r} must be a number >= 0; got {v!r}.") from None
        if not np.isfinite(f) or f < 0:
            raise ConfigError(f"The cost of {k!r} must be a number >= 0; got {v!r}.")
        out[str(k)] = f
    return out


def _common_checks(req: Any) -> None:
    object.__setattr__(req, "models", _models(req.models))
    segs = req.segments.split(",") if isinstance(req.segments, str) else list(req.segments)
    object.__setattr__(req, "segments", tuple(str(c).strip() for c in segs if str(c).strip()))
    if "segments" in req.models and not req.segments:
        raise ConfigError(
            "The segments learner needs the covariates of its segments: add --segments COL,COL."
        )
    object.__setattr__(req, "share", _share(req.share))
    object.__setattr__(req, "costs", _costs(req.costs))
    if req.propensity not in _PROPENSITY:
        raise ConfigError(
            f"propensity must be 'design' (known from the randomisation: the arms' shares) or "
            f"'estimate'; got {req.propensity!r}."
        )
    if isinstance(req.n_boot, bool) or not isinstance(req.n_boot, int) or req.n_boot < 0:
        raise ConfigError(f"n_boot must be an integer >= 0; got {req.n_boot!r}.")
    try:
        vpo = float(req.value_per_outcome)
    except (TypeError, ValueError):
        vpo = float("nan")
    if not np.isfinite(vpo) or vpo <= 0:
        raise ConfigError(f"value_per_outcome must be a number > 0; got {req.value_per_outcome!r}.")
    object.__setattr__(req, "value_per_outcome", vpo)
    if req.features is not None:
        feats = (
            [f.strip() for f in req.features.split(",")]
            if isinstance(req.features, str)
            else [str(f) for f in req.features]
        )
        object.__setattr__(req, "features", tuple(f for f in feats if f))


# ---------------------------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class UpliftEvaluateRequest:
    """Evaluate uplift models on a randomised CSV with one row per unit.

    Attributes
    ----------
    path : Path
        The file (``.csv``, ``.tsv``, ``.parquet``).
    treatment : str
        Column of the arm each unit was assigned to.
    control : str
        Its control value.
    outcome : str
        Outcome column (0/1 or a number).
    features : tuple of str or None
        Covariates; default: every other column that passes the checks of
        :func:`retention.strategies.choose_features`.
    id_column : str or None
        A unit id column to leave out (ids are found and left out anyway).
    costs : mapping of treatment to cost per send
        Used by the policy: a unit is treated only when ``uplift * value_per_outcome`` exceeds
        the cost.
    value_per_outcome : float
        Value of one unit of outcome.
    share : float
        Most share of units the policy treats (0.3: the "30% of customers treated" comparison).
    models : tuple of str
        Learners (a comma-separated string is accepted).
    segments : tuple of str
        Covariates whose values make segments to target by (``--segments``; a comma-separated
        string is accepted): the ``segments`` learner, each segment's effects measured on the
        training units, joins the models and the choice of the targeting rule.
    propensity : {"design", "estimate"}
        Arm probabilities known from the design (the arms' shares) or estimated from the
        covariates (with an overlap warning).
    test_size : float
        Share of units held out.
    seed : int
        Seed of the splits, the learners and the bootstrap.
    n_boot : int
        Bootstrap resamples of the policy values.
    """

    path: Path
    treatment: str
    control: str
    outcome: str
    features: tuple[str, ...] | None = None
    id_column: str | None = None
    costs: Mapping[str, float] = field(default_factory=dict)
    value_per_outcome: float = 1.0
    share: float = 0.3
    models: tuple[str, ...] = tuple(UPLIFT_LEARNERS)
    segments: tuple[str, ...] = ()
    propensity: str = "design"
    test_size: float = 0.5
    seed: int = 0
    n_boot: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        for name in ("treatment", "outcome"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"Pass the {name} column (--{name} COL).")
        if self.control is None or not str(self.control).strip():
            raise ConfigError("Pass the control value of the treatment column (--control VALUE).")
        _common_checks(self)
        try:
            ts = float(self.test_size)
        except (TypeError, ValueError):
            ts = float("nan")
        if not 0.1 <= ts <= 0.9:
            raise ConfigError(f"test_size must be in [0.1, 0.9]; got {self.test_size!r}.")
        object.__setattr__(self, "test_size", ts)


@dataclass(frozen=True)
class UpliftEvaluateReport:
    """The result of :func:`uplift_evaluate`: the evaluation, its source and time."""

    evaluation: UpliftEvaluation
    source: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``retention uplift evaluate --json``)."""
        return json_clean(
            {"source": self.source, "seconds": self.seconds, **self.evaluation.to_dict()}
        )


def read_units(path: Path) -> pd.DataFrame:
    """A CSV, TSV or Parquet file of one row per unit, with one-line errors."""
    if not path.is_file():
        raise ReadError(f"No file {path}: pass the file of one row per unit with --csv.")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if ".parquet" in suffixes:
            return pd.read_parquet(path)
        sep = "\t" if ".tsv" in suffixes else ","
        return pd.read_csv(path, sep=sep, low_memory=False)
    except pd.errors.EmptyDataError:
        raise ReadError(
            f"{path} is empty: pass a file with a header and one row per unit."
        ) from None
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReadError(
            f"Cannot read {path} ({first}); pass a comma-separated file with a header."
        ) from None


@tracked("uplift_evaluate", files=lambda req: (req.path,))
def uplift_evaluate(
    request: UpliftEvaluateRequest, *, progress: Progress | None = None
) -> UpliftEvaluateReport:
    """Fit, choose and measure uplift models on a randomised file, and prove the policy on the
    held-out half against random targeting (see :func:`retention.strategies.evaluate_uplift`).

    Raises
    ------
    ReadError
        The file cannot be read.
    SchemaError, DataError
        A column is missing; one treatment value only; the control does not occur; the outcome
        is constant or not numeric.
    """
    prog = as_progress(progress)
    t0 = time.perf_counter()
    with prog.stage(f"reading {request.path.name}"):
        df = read_units(request.path)
    data = check_uplift_frame(
        df,
        treatment=request.treatment,
        control=request.control,
        outcome=request.outcome,
        source=request.path.name,
    )
    features, dropped = choose_features(data, request.features, id_column=request.id_column)
    with prog.stage("fitting and evaluating uplift models"):
        evaluation = evaluate_uplift(
            data,
            features,
            models=request.models,
            segments=request.segments,
            share=request.share,
            test_size=request.test_size,
            propensity=None if request.propensity == "design" else "estimate",
            costs=request.costs,
            value_per_outcome=request.value_per_outcome,
            n_boot=request.n_boot,
            random_state=request.seed,
            dropped=dropped,
        )
    return UpliftEvaluateReport(evaluation, str(request.path), time.perf_counter() - t0)


def write_uplift_json(report: UpliftEvaluateReport | UpliftTrainReport, path: Path) -> Path:
    """Write a report's ``to_dict()`` as JSON."""
    return write_json(report.to_dict(), path)


# ------------------------------------------------------------------------- campaign from store
def _numeric_or_text(col: pd.Series) -> pd.Series:
    """A ``users`` column (stored as text) as numbers when every value reads as one."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col
    num = pd.to_numeric(col, errors="coerce")
    return num if num.notna().sum() == col.notna().sum() else col


def _user_covariates(store: Store) -> pd.DataFrame:
    users = store.table_df("users")
    drop = [c for c in ("ingest_id", "signup_ts") if c in users.columns]
    users = users.drop(columns=drop).set_index("user_id")
    users.index = users.index.astype(str)
    users = users.loc[:, users.notna().any()]
    return users.apply(_numeric_or_text).add_prefix("user_")


def _event_features(
    store: Store, cutoff: pd.Timestamp, horizon_days: int, users: pd.Index | None
) -> pd.DataFrame | None:
    """Point-in-time features at ``cutoff`` when the store has purchases before it."""
    from retention.features import make_frame

    found = store.event_range("purchase")
    if found is None or found[0] >= cutoff:
        return None
    cutoff = min(cutoff, found[1].normalize())  # no feature reads past the last event
    frame = make_frame(store, cutoff, horizon_days, with_label=False)
    feats = frame.features
    feats.index = feats.index.astype(str)
    if users is not None:
        feats = feats.reindex(users)
    return feats.select_dtypes(include=["number", "bool"]).add_prefix("ev_")


def _covariates(
    store: Store, cutoff: pd.Timestamp, horizon_days: int, users: pd.Index | None
) -> pd.DataFrame:
    cov = _user_covariates(store)
    if users is not None:
        cov = cov.reindex(users)
    ev = _event_features(store, cutoff, horizon_days, users if users is not None else None)
    if ev is not None:
        cov = ev if cov.shape[1] == 0 else cov.join(ev, how="outer" if users is None else "left")
    return cov


@dataclass(frozen=True)
class UpliftTrainRequest:
    """Fit an uplift model on a randomised campaign stored in ``assignments`` and ``outcomes``.

    Attributes
    ----------
    experiment_id : str
        The campaign (``assignments.experiment_id``).
    outcome : str
        The metric of ``outcomes`` to learn (``visit``, ``conversion``, ``spend``, ...).
    control : str or None
        The control variant; default: the experiment's own (``experiments.control``), when the
        experiment stage created it.
    features : tuple of str or None
        Covariates by name (``user_<column>`` for a users column, ``ev_<feature>`` for a
        point-in-time feature); default: all that pass the checks.
    models, segments, share, propensity, costs, value_per_outcome, seed, n_boot :
        As for :class:`UpliftEvaluateRequest`; the chosen model is refitted on every unit.
    horizon_days : int
        Window of the point-in-time features' labels (only their definition matters here).
    """

    experiment_id: str
    outcome: str
    control: str | None = None
    features: tuple[str, ...] | None = None
    models: tuple[str, ...] = tuple(UPLIFT_LEARNERS)
    segments: tuple[str, ...] = ()
    share: float = 0.3
    propensity: str = "design"
    costs: Mapping[str, float] = field(default_factory=dict)
    value_per_outcome: float = 1.0
    seed: int = 0
    n_boot: int = 200
    horizon_days: int = 90

    def __post_init__(self) -> None:
        for name in ("experiment_id", "outcome"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"Pass {name.replace('_', ' ')} (--{name.replace('_', '-')}).")
        _common_checks(self)


@dataclass(frozen=True)
class UpliftModelRecord:
    """A stored uplift model: what it learned from, and the rule and encoder rebuilt.

    ``learner_name`` is the rule's label (``ensemble|shrink0.5|calibrated``), or the learner of
    a model stored before the rule was."""

    model_id: str
    experiment_id: str | None
    outcome: str
    control: str
    treatments: tuple[str, ...]
    learner_name: str
    features: tuple[str, ...]
    cutoff: pd.Timestamp | None
    created_at: pd.Timestamp
    metrics: dict[str, Any]
    state: dict[str, Any]

    def model(self) -> UpliftPolicyModel:
        """The fitted targeting rule and its learners (rebuilt from numbers and LightGBM text;
        an old single learner as the rule "its raw scores")."""
        return uplift_policy_from_state(self.state)

    @property
    def rule(self) -> PolicyRule:
        """The stored targeting rule."""
        return self.model().rule_

    def encoder(self) -> FeatureEncoder:
        """The feature encoder."""
        return FeatureEncoder.from_dict(self.state["encoder"])


@dataclass(frozen=True)
class UpliftTrainReport:
    """What :func:`uplift_train` stored, and the evaluation that chose the rule.

    Attributes
    ----------
    model_id : str
        The stored model's id.
    learner : str
        The stored rule's label (``uplift_models.learner``).
    evaluation : UpliftEvaluation
        The evaluation on a held-out half; its ``rule`` was chosen on the training half.
    n_units : int
        Units the rule was refitted on (every unit of the campaign).
    seconds : float
        Time taken.
    model : UpliftPolicyModel or None
        The rule refitted on every unit, as stored (not part of ``to_dict()``).
    """

    model_id: str
    learner: str
    evaluation: UpliftEvaluation
    n_units: int
    seconds: float
    model: UpliftPolicyModel | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the evaluation's keys and ``stored_rule`` (the rule refitted on every
        unit: its numbers, its description, how it was chosen)."""
        return json_clean(
            {
                "model_id": self.model_id,
                "learner": self.learner,
                "n_units": self.n_units,
                "seconds": self.seconds,
                **self.evaluation.to_dict(),
                "stored_rule": _stored_rule(self.evaluation, self.model),
            }
        )


def _stored_rule(evaluation: UpliftEvaluation, model: UpliftPolicyModel | None) -> dict[str, Any]:
    """The stored rule and why it was chosen, JSON-ready."""
    chosen = evaluation.rule
    out: dict[str, Any] = {}
    if model is not None:
        rule = model.rule_
        out = {
            **rule.to_dict(),
            "description": rule.describe(evaluation.data.treatments),
            "cross_fitted_value_all_units": rule.value,
        }
    folds = int(evaluation.settings.get("policy_folds", 0))
    tried = sorted(evaluation.rule_search, key=lambda r: r.value, reverse=True)
    if folds >= 2 and chosen is not None:
        runner = next((r for r in tried if r.label != chosen.label), None)
        out["chosen_by"] = (
            f"cross-fitting on the training half ({evaluation.n_train:,} units, {folds} folds): "
            f"the largest doubly robust value of {len(tried)} rules tried"
        )
        out["cross_fitted_value"] = chosen.value
        out["runner_up"] = None if runner is None else {"rule": runner.label, "value": runner.value}
    else:
        out["chosen_by"] = (
            "the best validation Qini on the training half (one treatment: the ranking is all "
            "there is to choose)"
            if len(evaluation.data.treatments) == 1
            else "the best validation Qini on the training half (no cross-fitting)"
        )
    return out


def _campaign(store: Store, request: UpliftTrainRequest) -> tuple[pd.DataFrame, str, pd.Timestamp]:
    exp = request.experiment_id.strip()
    assign = store.read_rows("assignments", where={"experiment_id": exp})
    if assign.empty:
        known = store.con.execute(
            "SELECT DISTINCT experiment_id FROM assignments ORDER BY 1 LIMIT 10"
        ).fetchall()
        shown = ", ".join(repr(r[0]) for r in known) or "none"
        raise ConfigError(
            f"No assignments for experiment {exp!r} in store {store.path} (experiments: {shown}). "
            "Load them with `retention ingest FILE --table assignments` first."
        )
    out = store.read_rows("outcomes", where={"experiment_id": exp, "metric": request.outcome})
    if out.empty:
        metrics = store.con.execute(
            "SELECT DISTINCT metric FROM outcomes WHERE experiment_id = ? ORDER BY 1", [exp]
        ).fetchall()
        shown = ", ".join(repr(r[0]) for r in metrics) or "none"
        raise ConfigError(
            f"Experiment {exp!r} has no outcome {request.outcome!r} (its metrics: {shown}); pass "
            "one of them as --outcome."
        )
    control = request.control
    if control is None and store.has_table("experiments"):
        rec = store.read_rows("experiments", where={"experiment_id": exp})
        if not rec.empty:
            control = str(rec["control"].iloc[0])
    if control is None:
        variants = ", ".join(map(repr, sorted(assign["variant"].astype(str).unique())))
        raise ConfigError(f"Pass the control variant with --control (the variants are {variants}).")
    ts = pd.to_datetime(assign["assigned_ts"]).dropna()
    found = store.event_range("purchase")
    if len(ts):
        cutoff = ts.min().normalize()
    elif found is not None:
        cutoff = found[1].normalize()
        warnings.warn(
            f"The assignments of experiment {exp!r} have no dates, so the customers' history is "
            f"read up to the last purchase ({cutoff:%Y-%m-%d}): events after the campaign began "
            "would leak into the covariates. Load assigned_ts with the assignments.",
            RetentionWarning,
            stacklevel=3,
        )
    else:
        cutoff = pd.Timestamp.now().normalize()
    units = assign[["user_id", "variant"]].astype({"user_id": str, "variant": str})
    values = out[["user_id", "value"]].astype({"user_id": str})
    frame = units.merge(values, on="user_id", how="left").set_index("user_id")
    cov = _covariates(store, cutoff, request.horizon_days, pd.Index(frame.index))
    if cov.shape[1] == 0:
        raise DataError(
            f"The customers of experiment {exp!r} have no covariates: the users table has no "
            "columns beyond the id and the store no purchases before the campaign. Ingest a "
            "users file or the purchase history first."
        )
    frame = frame.join(cov).rename(columns={"variant": "__arm", "value": "__outcome"})
    return frame.reset_index(), str(control), cutoff


@tracked("uplift_train")
def uplift_train(
    store: Store, request: UpliftTrainRequest, *, progress: Progress | None = None
) -> UpliftTrainReport:
    """Evaluate the learners on the campaign, refit the targeting rule it chose on every unit,
    store it.

    The rule (:attr:`UpliftEvaluation.rule`: chosen by cross-fitting on the training half with
    two treatments or more, the validation-Qini learner's raw scores with one) is refitted on
    every unit by :class:`retention.strategies.UpliftPolicyModel` with the evaluation's folds:
    its learners, its calibration per treatment, each treatment's average effect (for the
    shrinkage). The store must be writable. The model goes to ``uplift_models``; its id is a
    digest of what it learned, so training again on the same data and seed gives the same id.
    """
    store.check_writable("store an uplift model")
    prog = as_progress(progress)
    t0 = time.perf_counter()
    with prog.stage("reading the campaign"):
        frame, control, cutoff = _campaign(store, request)
    data = check_uplift_frame(
        frame.drop(columns=["user_id"]),
        treatment="__arm",
        control=control,
        outcome="__outcome",
        source=f"experiment {request.experiment_id!r}",
    )
    features, dropped = choose_features(data, request.features)
    with prog.stage("evaluating uplift models"):
        evaluation = evaluate_uplift(
            data,
            features,
            models=request.models,
            segments=request.segments,
            share=request.share,
            propensity=None if request.propensity == "design" else "estimate",
            costs=request.costs,
            value_per_outcome=request.value_per_outcome,
            n_boot=request.n_boot,
            random_state=request.seed,
            dropped=dropped,
        )
    chosen = evaluation.chosen
    rule = evaluation.rule if evaluation.rule is not None else PolicyRule(chosen, (chosen,))
    folds = int(evaluation.settings.get("policy_folds", 0))
    with prog.stage(f"refitting the targeting rule {rule.label} on every unit"):
        encoder = FeatureEncoder(features).fit(data.frame)
        X = encoder.transform(data.frame).reset_index(drop=True)
        n_arms = len(data.arms)
        e = (
            design_propensity(data.codes, n_arms)
            if request.propensity == "design"
            else estimate_propensity(X, data.codes, n_arms, random_state=request.seed)
        )
        model = UpliftPolicyModel(
            rule=rule,
            folds=folds,
            share=request.share,
            value_per_outcome=request.value_per_outcome,
            send_cost=[float(request.costs.get(t, 0.0)) for t in data.treatments],
            random_state=request.seed,
            nested=bool(evaluation.settings.get("nested_values", False)),
            model_params={"segments": encoder.encoded(request.segments)}
            if request.segments
            else None,
        ).fit(X, data.y, data.codes, propensity=e)
    stored = model.rule_
    state = {**model.get_state(), "encoder": encoder.to_dict()}
    text = json.dumps(state, sort_keys=True, allow_nan=False)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    model_id = sha[:12]
    summary = evaluation.to_dict()
    metrics = json_clean(
        {
            "chosen_model": chosen,
            "rule": stored.label,
            "stored_rule": _stored_rule(evaluation, model),
            "treatments": {
                t: {
                    "difference": v["difference"],
                    "qini": v["models"][chosen]["qini"],
                    "uplift_at_30": v["models"][chosen]["uplift_at_30"],
                }
                for t, v in summary["treatments"].items()
            },
            "policy": summary["policy"]["policies"].get("policy", {}),
            "chosen_model_policy": summary["policy"]["policies"].get(f"model:{chosen}", {}),
            "random": summary["policy"]["policies"].get("random", {}),
            "n_units": summary["n_units"],
        }
    )
    row = pd.DataFrame(
        {
            "model_id": [model_id],
            "experiment_id": [request.experiment_id],
            "outcome": [request.outcome],
            "control": [control],
            "treatments": [list(data.treatments)],
            "learner": [stored.label],
            "features": [list(features)],
            "state": [text],
            "sha256": [sha],
            "metrics": [json.dumps(metrics, allow_nan=False)],
            "cutoff": pd.Series([cutoff], dtype="datetime64[ns]"),
            "created_at": pd.Series([pd.Timestamp.now()], dtype="datetime64[ns]"),
        }
    )
    with store.transaction():
        store.replace_rows("uplift_models", row, {"model_id": model_id})
    return UpliftTrainReport(
        model_id, stored.label, evaluation, len(data.frame), time.perf_counter() - t0, model
    )


def read_uplift_model(store: Store, model_id: str | None = None) -> UpliftModelRecord:
    """A stored uplift model (the newest when ``model_id`` is None), its state checked against
    its SHA-256.

    Raises
    ------
    ConfigError
        No such model (or none at all).
    ModelError
        The stored state does not match its digest.
    """
    where = {} if model_id is None else {"model_id": str(model_id).strip()}
    df = store.read_rows("uplift_models", where=where, order_by=["created_at"], descending=True)
    if df.empty:
        raise ConfigError(
            f"No uplift model {'' if model_id is None else repr(model_id) + ' '}in store "
            f"{store.path}: train one with `retention uplift train --db {store.path} "
            "--experiment ID --outcome METRIC`."
        )
    rec = df.iloc[0]
    text = str(rec["state"])
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != str(rec["sha256"]):
        raise ModelError(
            f"The stored state of uplift model {rec['model_id']!r} does not match its SHA-256: "
            "it was changed after training. Retrain it with `retention uplift train`."
        )
    cutoff = rec["cutoff"]
    return UpliftModelRecord(
        model_id=str(rec["model_id"]),
        experiment_id=None if pd.isna(rec["experiment_id"]) else str(rec["experiment_id"]),
        outcome=str(rec["outcome"]),
        control=str(rec["control"]),
        treatments=tuple(str(t) for t in rec["treatments"]),
        learner_name=str(rec["learner"]),
        features=tuple(str(f) for f in rec["features"]),
        cutoff=None if pd.isna(cutoff) else pd.Timestamp(cutoff),
        created_at=pd.Timestamp(rec["created_at"]),
        metrics=json.loads(rec["metrics"]) if isinstance(rec["metrics"], str) else {},
        state=json.loads(text),
    )


@dataclass(frozen=True)
class UpliftScoreRequest:
    """Score the current customers with a stored uplift model.

    Attributes
    ----------
    model_id : str or None
        The model (default: the newest in ``uplift_models``).
    cutoff : pd.Timestamp or None
        Date of the point-in-time features (default: the last purchase, or today without
        purchases).
    horizon_days : int
        As in training.
    """

    model_id: str | None = None
    cutoff: pd.Timestamp | None = None
    horizon_days: int = 90

    def __post_init__(self) -> None:
        from retention.features import to_cutoff, to_horizon

        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        object.__setattr__(self, "horizon_days", to_horizon(self.horizon_days))


@dataclass(frozen=True)
class UpliftScoreReport:
    """What :func:`uplift_score` wrote."""

    model_id: str
    cutoff: pd.Timestamp
    n_customers: int
    mean_uplift: dict[str, float]
    positive_share: dict[str, float]
    rule: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return json_clean(
            {
                "model_id": self.model_id,
                "rule": self.rule,
                "cutoff": self.cutoff,
                "n_customers": self.n_customers,
                "mean_uplift": self.mean_uplift,
                "positive_share": self.positive_share,
                "table": "uplift_scores",
            }
        )


def uplift_score(
    store: Store, request: UpliftScoreRequest, *, progress: Progress | None = None
) -> UpliftScoreReport:
    """Each customer's uplift per treatment under the stored targeting rule (its learners' mean,
    calibrated and shrunk as the rule says), into ``uplift_scores`` (rows of the same model and
    cutoff replaced)."""
    store.check_writable("write uplift scores")
    prog = as_progress(progress)
    rec = read_uplift_model(store, request.model_id)
    found = store.event_range("purchase")
    cutoff = request.cutoff
    if cutoff is None:
        cutoff = (
            (found[1] + pd.Timedelta(days=1)).normalize()
            if found
            else pd.Timestamp.now().normalize()
        )
    with prog.stage("building the customers' covariates"):
        cov = _covariates(store, cutoff, request.horizon_days, None)
    missing = [f for f in rec.features if f not in cov.columns]
    if missing:
        raise DataError(
            f"The store lacks {len(missing)} covariate(s) uplift model {rec.model_id} reads, e.g. "
            f"{', '.join(missing[:5])}: score in the store it was trained on, or retrain."
        )
    cov = cov[list(rec.features)].dropna(how="all")
    if cov.empty:
        raise DataError("No customer has any of the model's covariates: nothing to score.")
    with prog.stage(f"scoring {len(cov):,} customers"):
        X = rec.encoder().transform(cov).reset_index(drop=True)
        model = rec.model()
        if model.n_arms_ != len(rec.treatments) + 1:
            raise ModelError(
                f"Uplift model {rec.model_id} scores {model.n_arms_ - 1} treatment(s) but names "
                f"{len(rec.treatments)}: retrain it with `retention uplift train`."
            )
        uplift = model.predict(X)
        outcomes = model.predict_outcomes(X)
    n = len(cov)
    rows = pd.DataFrame(
        {
            "user_id": np.repeat(cov.index.astype(str).to_numpy(), len(rec.treatments)),
            "treatment": np.tile(np.array(rec.treatments, dtype=object), n),
            "uplift": uplift.reshape(-1),
            "outcome_control": (
                np.repeat(outcomes[:, 0], len(rec.treatments))
                if outcomes is not None
                else np.full(n * len(rec.treatments), np.nan)
            ),
        }
    )
    rows["model_id"] = rec.model_id
    rows["cutoff"] = pd.Series([cutoff] * len(rows), dtype="datetime64[ns]")
    rows["scored_at"] = pd.Series([pd.Timestamp.now()] * len(rows), dtype="datetime64[ns]")
    with store.transaction():
        store.replace_rows("uplift_scores", rows, {"model_id": rec.model_id, "cutoff": cutoff})
    means = {t: float(uplift[:, k].mean()) for k, t in enumerate(rec.treatments)}
    pos = {t: float((uplift[:, k] > 0).mean()) for k, t in enumerate(rec.treatments)}
    if all(v <= 0 for v in means.values()):
        warnings.warn(
            f"Uplift model {rec.model_id} expects no treatment to help on average: the plan will "
            "send few offers.",
            RetentionWarning,
            stacklevel=2,
        )
    return UpliftScoreReport(rec.model_id, cutoff, n, means, pos, model.rule_.label)
