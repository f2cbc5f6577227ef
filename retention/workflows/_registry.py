"""The model registry with stages (what ``retention models|promote|rollback`` call; issue 16).

Every model ``retention train`` registers starts as a ``candidate``; ``production`` is the one
``retention score`` and the service use by default (at most one at a time); a replaced or
rolled-back production model is ``archived``. Every change is a row of the store's
``model_stages`` table, with its time, reason and evidence.

* :func:`list_models` lists the versions with their stage, cutoff, horizon, creation time and
  the latest backtest figures recorded for them;
* :func:`promote` makes a candidate the production model only when it beats the production
  model on the latest backtest by a stated ROC-AUC margin (the paired-bootstrap interval of the
  difference beside it), or with ``force`` (recorded as such);
* :func:`rollback` gives production back to the previous production model;
* :func:`choose_model` is the default model of ``score`` and the API: production, else the
  newest candidate (with a warning).

"The latest backtest" is honest: its cutoff is the latest whose label window has fully passed
in the store (the last qualifying event's date minus the horizon), and both models'
configurations (name and hyper-parameters from the registry) are refit there by the backtest
protocol (training and validation cutoffs whose label windows end by it) and scored on the same
customers, so neither has seen the labels it is judged on.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import ModelRecord, Store
from retention.exceptions import ConfigError, ModelError, RetentionError, RetentionWarning
from retention.features import (
    RETAINED_BY_DEFAULT,
    MinData,
    check_min_data,
    data_span,
    to_retained_by,
)
from retention.models import classification_metrics, get_model, paired_auc_bootstrap
from retention.workflows._common import check_positive_int, file_sha256, json_clean, write_json
from retention.workflows._predict import last_event_date

__all__ = [
    "DEFAULT_PROMOTE_MARGIN",
    "ModelChoice",
    "ModelVersion",
    "PromoteReport",
    "PromoteRequest",
    "RegistryListing",
    "RollbackReport",
    "RollbackRequest",
    "choose_model",
    "list_models",
    "production_model_id",
    "promote",
    "rollback",
    "write_registry_json",
]

#: the ROC-AUC a candidate must gain over production on the latest backtest
DEFAULT_PROMOTE_MARGIN = 0.005


# ---------------------------------------------------------------------------------- reading
def write_registry_json(payload: Any, path: str | os.PathLike[str]) -> Path:
    """Write a registry result's ``to_dict()`` as JSON (``--json OUT``)."""
    return write_json(payload, path)


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")


def _stages(store: Store) -> dict[str, str]:
    """Every registered model's current stage (a model without a row counts as candidate)."""
    hist = store.model_stage_history()
    current = {} if hist.empty else dict(zip(hist["model_id"], hist["stage"], strict=True))
    reg = store.read_rows("models")
    return {str(m): str(current.get(m, "candidate")) for m in reg["model_id"]}


def production_model_id(store: Store) -> str | None:
    """The id of the store's production model, or None before the first promotion."""
    return store.production_model_id()


def _newest(store: Store, stage: str) -> str | None:
    stages = _stages(store)
    reg = store.read_rows("models", order_by=["created_at", "model_id"], descending=True)
    for mid in reg["model_id"]:
        if stages.get(str(mid)) == stage:
            return str(mid)
    return None


@dataclass(frozen=True)
class ModelChoice:
    """The model a command uses by default.

    Attributes
    ----------
    model_id : str
    stage : str
        ``production``, or ``candidate`` when no model was promoted yet.
    """

    model_id: str
    stage: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"model_id": self.model_id, "stage": self.stage}


def choose_model(store: Store, model_id: str | None = None, *, warn: bool = True) -> ModelChoice:
    """The model ``score`` and the service use: ``model_id`` when given, else production, else
    the newest candidate (then a :class:`RetentionWarning` says so).

    Raises
    ------
    ConfigError
        ``model_id`` is not registered, or the registry is empty.
    """
    if model_id is not None:
        mid = str(model_id).strip()
        if store.model_record(mid) is None:
            raise ConfigError(
                f"No model {mid!r} in the registry of store {store.path}: pass the id of a "
                f"registered model (`retention models --db {store.path}`)."
            )
        return ModelChoice(mid, _stages(store).get(mid, "candidate"))
    prod = production_model_id(store)
    if prod is not None:
        return ModelChoice(prod, "production")
    newest = _newest(store, "candidate")
    if newest is None:
        raise ConfigError(
            f"No model in the registry of store {store.path} to use: train one with "
            f"`retention train --db {store.path}`, or pass --model PATH."
        )
    if warn:
        warnings.warn(
            f"No production model in store {store.path} yet: using the newest candidate "
            f"{newest}. Promote one with `retention promote --db {store.path}`.",
            RetentionWarning,
            stacklevel=2,
        )
    return ModelChoice(newest, "candidate")


def _metadata(record: ModelRecord) -> dict[str, Any]:
    return dict(record.metadata or {})


def _artifact_state(record: ModelRecord) -> str:
    """``ok``, ``missing`` or ``changed`` (the file's SHA-256 is not the registered one)."""
    if not record.path.is_file():
        return "missing"
    return "ok" if file_sha256(record.path) == record.sha256 else "changed"


def _evidence_rows(store: Store) -> list[dict[str, Any]]:
    hist = store.model_stage_history()
    out: list[dict[str, Any]] = []
    for row in hist.to_dict("records"):
        text = row.get("evidence")
        if isinstance(text, str) and text:
            try:
                out.append({**{str(k): v for k, v in row.items()}, "evidence": json.loads(text)})
            except ValueError:
                continue
    return out


def _latest_backtest(rows: list[dict[str, Any]], model_id: str) -> dict[str, Any] | None:
    """The newest backtest figures recorded for ``model_id`` (as candidate or production)."""
    for row in reversed(rows):
        ev = row["evidence"]
        for role in ("candidate", "production"):
            part = ev.get(role) or {}
            if part.get("model_id") == model_id and part.get("metrics"):
                return {
                    "cutoff": ev.get("cutoff"),
                    "horizon_days": ev.get("horizon_days"),
                    "n_users": ev.get("n_users"),
                    "roc_auc": part["metrics"].get("roc_auc"),
                    "brier": part["metrics"].get("brier"),
                    "role": role,
                    "decision": ev.get("decision"),
                }
    return None


@dataclass(frozen=True)
class ModelVersion:
    """One model of the registry as ``retention models`` lists it."""

    model_id: str
    name: str | None
    stage: str
    cutoff: pd.Timestamp | None
    horizon_days: int | None
    created_at: pd.Timestamp | None
    retained_by: str
    params: dict[str, Any]
    artifact: str
    path: str
    backtest: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return json_clean(
            {
                "model_id": self.model_id,
                "name": self.name,
                "stage": self.stage,
                "cutoff": self.cutoff,
                "horizon_days": self.horizon_days,
                "created_at": self.created_at,
                "retained_by": self.retained_by,
                "params": self.params,
                "artifact": self.artifact,
                "path": self.path,
                "backtest": self.backtest,
            }
        )


@dataclass(frozen=True)
class RegistryListing:
    """The registry: every version, newest first, and the stage history."""

    models: list[ModelVersion]
    production: str | None
    history: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``retention models --json``)."""
        hist = self.history.drop(columns=["evidence"], errors="ignore")
        return json_clean(
            {
                "production": self.production,
                "models": [m.to_dict() for m in self.models],
                "history": hist.to_dict("records"),
            }
        )


def list_models(store: Store) -> RegistryListing:
    """Every registered model, newest first, with its stage, cutoff, horizon, creation time,
    whether its artifact is intact, and the latest backtest figures ``promote`` recorded."""
    stages = _stages(store)
    evidence = _evidence_rows(store)
    reg = store.read_rows("models", order_by=["created_at", "model_id"], descending=True)
    models = []
    for mid in reg["model_id"]:
        record = store.model_record(str(mid))
        if record is None:  # pragma: no cover - read just above
            continue
        meta = _metadata(record)
        models.append(
            ModelVersion(
                model_id=record.model_id,
                name=record.registry_name,
                stage=stages.get(record.model_id, "candidate"),
                cutoff=record.cutoff,
                horizon_days=record.horizon_days,
                created_at=record.created_at,
                retained_by=str(meta.get("retained_by", RETAINED_BY_DEFAULT)),
                params=dict(meta.get("model_params") or {}),
                artifact=_artifact_state(record),
                path=str(record.path),
                backtest=_latest_backtest(evidence, record.model_id),
            )
        )
    return RegistryListing(
        models=models, production=production_model_id(store), history=store.model_stage_history()
    )


# -------------------------------------------------------------------------------- promote
def _check_margin(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"margin must be a number between 0 and 1; got {value!r}.")
    m = float(value)
    if not math.isfinite(m) or not 0 <= m < 1:
        raise ConfigError(f"margin must be a number between 0 and 1 (e.g. 0.005); got {value!r}.")
    return m


def _check_reason(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 500:
        raise ConfigError(f"reason must be a text of at most 500 characters; got {value!r}.")
    return value.strip() or None


@dataclass(frozen=True)
class PromoteRequest:
    """Which candidate to promote, and how strict to be.

    Attributes
    ----------
    model_id : str or None
        The candidate (default: the newest candidate).
    margin : float
        The ROC-AUC the candidate must gain over production on the latest backtest
        (default 0.005); the decision is ``difference >= margin``.
    force : bool
        Promote whatever the comparison says (or without one); recorded as forced.
    n_bootstrap : int
        Resamples of the paired bootstrap of the ROC-AUC difference.
    seed : int
        Seed of the bootstrap.
    reason : str or None
        Why, in words, recorded beside the decision.
    min_data : MinData or None
        The least data the backtest learns from (default: the ``RETENTION_MIN_*`` settings,
        as ``retention backtest``).
    """

    model_id: str | None = None
    margin: float = DEFAULT_PROMOTE_MARGIN
    force: bool = False
    n_bootstrap: int = 1000
    seed: int = 0
    reason: str | None = None
    min_data: MinData | None = None

    def __post_init__(self) -> None:
        if self.model_id is not None:
            if not isinstance(self.model_id, str) or not self.model_id.strip():
                raise ConfigError(f"model_id must be a non-empty string; got {self.model_id!r}.")
            object.__setattr__(self, "model_id", self.model_id.strip())
        object.__setattr__(self, "margin", _check_margin(self.margin))
        if not isinstance(self.force, bool):
            raise ConfigError(f"force must be True or False; got {self.force!r}.")
        object.__setattr__(self, "n_bootstrap", check_positive_int(self.n_bootstrap, "n_bootstrap"))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer; got {self.seed!r}.")
        object.__setattr__(self, "reason", _check_reason(self.reason))
        if self.min_data is not None and not isinstance(self.min_data, MinData):
            raise ConfigError(
                f"min_data must be a retention.features.MinData or None; got {self.min_data!r}."
            )


@dataclass(frozen=True)
class PromoteReport:
    """What :func:`promote` decided, and the evidence.

    Attributes
    ----------
    candidate : str
    production : str or None
        The production model before (None for the store's first promotion).
    promoted : bool
        Whether the candidate is production now.
    forced : bool
        Promoted with ``force`` although the evidence did not decide so (or without evidence).
    decision : str
        ``promote`` (beat production by the margin), ``refuse``, ``force`` or ``first`` (no
        production model to compare with).
    message : str
        The decision in words.
    evidence : dict
        Cutoff, horizon, customers, both models' backtest metrics, the difference, its interval,
        the margin (what ``model_stages.evidence`` holds).
    """

    candidate: str
    production: str | None
    promoted: bool
    forced: bool
    decision: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``retention promote --json``)."""
        return json_clean(
            {
                "candidate": self.candidate,
                "production": self.production,
                "promoted": self.promoted,
                "forced": self.forced,
                "decision": self.decision,
                "message": self.message,
                "evidence": self.evidence,
            }
        )


def _record(store: Store, model_id: str, what: str) -> ModelRecord:
    record = store.model_record(model_id)
    if record is None:
        raise ConfigError(
            f"No model {model_id!r} in the registry of store {store.path}: pass the id of a "
            f"registered model (`retention models --db {store.path}`)."
        )
    state = _artifact_state(record)
    if state != "ok":
        why = "no file is there any more" if state == "missing" else "the file changed since"
        raise ModelError(
            f"The {what} model {model_id!r} is registered at {record.path}, but {why}: it cannot "
            "serve. Retrain it with `retention train`, or pick another model."
        )
    return record


def _config(record: ModelRecord) -> dict[str, Any] | None:
    """The model's configuration (name, hyper-parameters, protocol), or None when it does not
    record its name (then it cannot be refit)."""
    meta = _metadata(record)
    name = record.registry_name or meta.get("registry_name")
    if not name:
        return None
    n_train = meta.get("n_train") or len(meta.get("train_cutoffs") or []) or 3
    return {
        "model_id": record.model_id,
        "name": str(name),
        "params": dict(meta.get("model_params") or {}),
        "params_recorded": "model_params" in meta,
        "n_train": int(n_train),
        "horizon_days": record.horizon_days or meta.get("horizon_days"),
        "retained_by": to_retained_by(meta.get("retained_by", RETAINED_BY_DEFAULT)),
    }


def _backtest_configs(
    store: Store, configs: list[dict[str, Any]], progress: Progress, min_data: MinData | None
) -> tuple[dict[str, Any], pd.Series, dict[str, np.ndarray]]:
    """Refit each configuration at the latest cutoff whose label window has passed and score
    it there on the same customers: ``(protocol, labels, {model_id: scores})``."""
    from retention.features import training_frames

    horizon = int(configs[0]["horizon_days"])
    retained_by = str(configs[0]["retained_by"])
    span = data_span(store, retained_by)
    last = last_event_date(store, retained_by)
    cutoff = last - pd.Timedelta(days=horizon)
    scores: dict[str, np.ndarray] = {}
    labels: pd.Series | None = None
    protocol: dict[str, Any] = {}
    frames_by_n: dict[int, Any] = {}
    for cfg in configs:
        n_train = cfg["n_train"]
        if n_train not in frames_by_n:
            with progress.stage(f"building features for the backtest at {cutoff:%Y-%m-%d}"):
                train, valid, test = training_frames(
                    store, cutoff, horizon, n_train=n_train, retained_by=retained_by
                )
            if test.label is None or len(np.unique(np.asarray(test.label))) < 2:
                raise ConfigError(
                    f"The latest backtest cutoff {cutoff:%Y-%m-%d} (the last {retained_by} "
                    f"{last:%Y-%m-%d} minus the {horizon}-day horizon) has no customers of both "
                    "outcomes to compare the models on: ingest more history, or pass --force."
                )
            check_min_data(train, valid, span, min_data, purpose="backtest")
            frames_by_n[n_train] = (train, valid, test)
        train, valid, test = frames_by_n[n_train]
        if labels is None:
            labels = pd.Series(np.asarray(test.label, dtype=int), index=test.users)
            protocol = {
                "cutoff": cutoff,
                "horizon_days": horizon,
                "retained_by": retained_by,
                "label_window_end": cutoff + pd.Timedelta(days=horizon),
                "last_event_date": last,
                "n_users": len(test),
                "base_rate": float(labels.mean()),
            }
        t0 = time.perf_counter()
        with progress.stage(f"refitting {cfg['name']} ({cfg['model_id']}) at {cutoff:%Y-%m-%d}"):
            fitted = get_model(cfg["name"], **cfg["params"]).fit(train, valid)
            p = pd.Series(fitted.predict_proba(test), index=test.users)
        cfg["train_cutoffs"] = [f.cutoff for f in train]
        cfg["valid_cutoff"] = valid.cutoff
        cfg["seconds"] = round(time.perf_counter() - t0, 2)
        scores[cfg["model_id"]] = p.reindex(labels.index).to_numpy(dtype=float)
    assert labels is not None
    return protocol, labels, scores


def _part(cfg: dict[str, Any], y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    return {
        "model_id": cfg["model_id"],
        "name": cfg["name"],
        "params": cfg["params"],
        "params_recorded": cfg["params_recorded"],
        "n_train": cfg["n_train"],
        "train_cutoffs": cfg.get("train_cutoffs"),
        "valid_cutoff": cfg.get("valid_cutoff"),
        "fit_seconds": cfg.get("seconds"),
        "metrics": classification_metrics(y, p),
    }


def promote(
    store: Store, request: PromoteRequest | None = None, *, progress: Progress | None = None
) -> PromoteReport:
    """Make a candidate the production model when it beats production on the latest backtest.

    Both models' configurations are refit at the latest cutoff whose label window has fully
    passed (see the module docstring) and scored on the same customers; the candidate is
    promoted when its ROC-AUC minus production's is at least ``request.margin``, and the
    paired-bootstrap interval of that difference is reported beside it. With no production model
    yet the candidate is promoted without comparison (its own backtest figures are recorded when
    the data allow). The decision, a refusal included, is recorded in ``model_stages`` with the
    evidence; on promotion the former production model is archived, in the same transaction.

    Parameters
    ----------
    store : Store
        Opened for writing.
    request : PromoteRequest, optional
        Candidate, margin, force.
    progress : Progress, optional
        Where to report progress (default: nowhere).

    Returns
    -------
    PromoteReport
        ``promoted`` False when the candidate did not beat production (the CLI exits non-zero).

    Raises
    ------
    ConfigError
        No candidate, a model already in production, models of different horizons or
        activities, or too little data for the backtest.
    ModelError
        An artifact is missing or changed since it was registered.
    """
    request = request if request is not None else PromoteRequest()
    progress = as_progress(progress)
    store.check_writable("promote a model")
    mid = request.model_id or _newest(store, "candidate")
    if mid is None:
        raise ConfigError(
            f"No candidate model in store {store.path} to promote: train one with "
            f"`retention train --db {store.path}`, or pass --model ID."
        )
    stage = _stages(store).get(mid)
    if stage == "production":
        raise ConfigError(f"Model {mid} is already the production model; nothing to promote.")
    cand = _record(store, mid, "candidate")
    prod_id = production_model_id(store)
    cand_cfg = _config(cand)
    evidence: dict[str, Any] = {"margin": request.margin}
    if prod_id is None:
        decision, promoted, forced = "first", True, False
        if cand_cfg is not None:
            try:
                protocol, labels, scores = _backtest_configs(
                    store, [cand_cfg], progress, request.min_data
                )
                y = labels.to_numpy()
                evidence.update(protocol)
                evidence["candidate"] = _part(cand_cfg, y, scores[mid])
            except RetentionError as exc:  # the first model serves anyway; say why no figures
                evidence["backtest_error"] = str(exc)
        auc = (evidence.get("candidate") or {}).get("metrics", {}).get("roc_auc")
        figures = f" (its backtest ROC-AUC {auc:.4f})" if isinstance(auc, float) else ""
        message = (
            f"promoted {mid} to production without comparison: the store had no production "
            f"model yet{figures}"
        )
    else:
        prod = _record(store, prod_id, "production")
        prod_cfg = _config(prod)
        why_not = None
        if cand_cfg is None or prod_cfg is None:
            why_not = "a model does not record its name, so it cannot be refit"
        elif cand_cfg["horizon_days"] != prod_cfg["horizon_days"]:
            why_not = (
                f"the candidate predicts a {cand_cfg['horizon_days']}-day horizon, production "
                f"a {prod_cfg['horizon_days']}-day one"
            )
        elif cand_cfg["retained_by"] != prod_cfg["retained_by"]:
            why_not = (
                f"the candidate counts {cand_cfg['retained_by']} as coming back, production "
                f"{prod_cfg['retained_by']}"
            )
        if why_not is not None:
            if not request.force:
                raise ConfigError(
                    f"Cannot compare candidate {mid} with production {prod_id}: {why_not}. "
                    "Train the candidate like production, or pass --force to promote it anyway."
                )
            decision, promoted, forced = "force", True, True
            evidence["not_compared"] = why_not
            message = f"promoted {mid} to production by --force, without comparison ({why_not})"
        else:
            assert cand_cfg is not None and prod_cfg is not None
            protocol, labels, scores = _backtest_configs(
                store, [cand_cfg, prod_cfg], progress, request.min_data
            )
            y = labels.to_numpy()
            with progress.stage("paired bootstrap of the ROC-AUC difference"):
                gain = paired_auc_bootstrap(
                    y, scores[mid], scores[prod_id], n=request.n_bootstrap, seed=request.seed
                )
            evidence.update(protocol)
            evidence["candidate"] = _part(cand_cfg, y, scores[mid])
            evidence["production"] = _part(prod_cfg, y, scores[prod_id])
            evidence.update(
                {
                    "difference": gain["difference"],
                    "ci_low": gain["low"],
                    "ci_high": gain["high"],
                    "share_below_0": gain["share_below_0"],
                    "resamples": gain["resamples"],
                    "n_bootstrap": request.n_bootstrap,
                }
            )
            beats = gain["difference"] >= request.margin
            figures = (
                f"ROC-AUC {evidence['candidate']['metrics']['roc_auc']:.4f} against "
                f"{evidence['production']['metrics']['roc_auc']:.4f}, difference "
                f"{gain['difference']:+.4f} (95% interval {gain['low']:+.4f} to "
                f"{gain['high']:+.4f}), margin {request.margin:.4f}, at "
                f"{protocol['cutoff']:%Y-%m-%d} on {protocol['n_users']:,} customers"
            )
            if beats:
                decision, promoted, forced = "promote", True, False
                message = f"promoted {mid} to production over {prod_id}: {figures}"
            elif request.force:
                decision, promoted, forced = "force", True, True
                message = (
                    f"promoted {mid} to production over {prod_id} by --force, although it does "
                    f"not beat it by the margin: {figures}"
                )
            else:
                decision, promoted, forced = "refuse", False, False
                message = (
                    f"candidate {mid} does not beat production {prod_id} by the margin: "
                    f"{figures}. Production is unchanged; pass --force to promote it anyway."
                )
    evidence["decision"] = decision
    evidence = json_clean(evidence)
    reason = request.reason or message
    with store.transaction():
        if promoted:
            if prod_id is not None:
                store.record_model_stage(
                    prod_id,
                    "archived",
                    action="archive",
                    reason=f"replaced in production by {mid}",
                )
            store.record_model_stage(
                mid, "production", action="promote", reason=reason, evidence=evidence, forced=forced
            )
        else:
            store.record_model_stage(
                mid, stage or "candidate", action="refuse", reason=reason, evidence=evidence
            )
    return PromoteReport(
        candidate=mid,
        production=prod_id,
        promoted=promoted,
        forced=forced,
        decision=decision,
        message=message,
        evidence=evidence,
    )


# ------------------------------------------------------------------------------- rollback
@dataclass(frozen=True)
class RollbackRequest:
    """Where production goes back to.

    Attributes
    ----------
    to : str or None
        A model that was production before (default: the previous production model).
    reason : str or None
        Why, in words, recorded.
    """

    to: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.to is not None:
            if not isinstance(self.to, str) or not self.to.strip():
                raise ConfigError(f"to must be a non-empty model id; got {self.to!r}.")
            object.__setattr__(self, "to", self.to.strip())
        object.__setattr__(self, "reason", _check_reason(self.reason))


@dataclass(frozen=True)
class RollbackReport:
    """What :func:`rollback` did."""

    rolled_back: str
    production: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "rolled_back": self.rolled_back,
            "production": self.production,
            "message": self.message,
        }


def _previous_productions(store: Store, current: str) -> list[str]:
    """Models that were production before ``current``, the most recent first, leaving out
    those whose last time in production ended in a rollback (a rollback is a verdict)."""
    hist = store.model_stage_history()
    last_exit: dict[str, str] = {}
    for row in hist.to_dict("records"):
        if row["previous_stage"] == "production" and row["stage"] != "production":
            last_exit[str(row["model_id"])] = str(row["action"])
    order: list[str] = []
    for row in reversed(hist.to_dict("records")):
        m = str(row["model_id"])
        if row["stage"] == "production" and m != current and m not in order:
            order.append(m)
    return [m for m in order if last_exit.get(m) != "rollback"]


def rollback(store: Store, request: RollbackRequest | None = None) -> RollbackReport:
    """Give production back to the previous production model (or ``request.to``).

    The current production model is archived (action ``rollback``: it is not offered again by a
    later rollback) and the other one becomes production, in one transaction.

    Raises
    ------
    ConfigError
        No production model, no earlier one, or ``to`` was never in production.
    ModelError
        The target's artifact is missing or changed.
    """
    request = request if request is not None else RollbackRequest()
    store.check_writable("roll back the production model")
    current = production_model_id(store)
    if current is None:
        raise ConfigError(
            f"Store {store.path} has no production model to roll back: promote one first "
            f"(`retention promote --db {store.path}`)."
        )
    earlier = _previous_productions(store, current)
    if request.to is not None:
        target = request.to
        if target == current:
            raise ConfigError(f"Model {target} is the production model already; nothing to do.")
        hist = store.model_stage_history(target)
        if store.model_record(target) is None:
            raise ConfigError(
                f"No model {target!r} in the registry of store {store.path}: pass the id of a "
                f"former production model (`retention models --db {store.path}`)."
            )
        if hist.empty or not (hist["stage"] == "production").any():
            raise ConfigError(
                f"Model {target} was never in production, so production cannot roll back to "
                f"it: promote it instead (`retention promote --db {store.path} --model "
                f"{target}`)."
            )
    elif not earlier:
        raise ConfigError(
            f"Production model {current} has no earlier production model to roll back to: "
            "promote another model instead, or pass --to ID."
        )
    else:
        target = earlier[0]
    _record(store, target, "rollback target")
    message = f"rolled production back from {current} to {target}"
    reason = request.reason or message
    with store.transaction():
        store.record_model_stage(current, "archived", action="rollback", reason=reason)
        store.record_model_stage(
            target,
            "production",
            action="rollback",
            reason=reason,
            evidence={"rolled_back_from": current, "at": str(_now())},
        )
    return RollbackReport(rolled_back=current, production=target, message=message)
