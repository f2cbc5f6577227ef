"""Hyper-parameter search (retention.experiments tuning): spaces, objective, pruning, storage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import synthetic_frames

from retention.exceptions import ConfigError
from retention.experiments import (
    SEARCH_SPACES,
    SearchParam,
    _tuning,
    resolve_search_space,
    stored_best_params,
    study_name,
    tune_model,
)
from retention.models import customer_folds, get_model, out_of_fold_proba

#: a quick gbdt: at most 120 rounds (intermediate values every 10)
FAST = {"n_estimators": 120, "early_stopping_rounds": 20}


@pytest.fixture(scope="module")
def frames():
    train, valid, _test = synthetic_frames(n_users=300, horizon_days=45)
    return train, valid


def _mean_auc(frames, preds) -> float:
    return float(
        np.mean(
            [
                roc_auc_score(np.asarray(f.label, dtype=int), p)
                for f, p in zip(frames, preds, strict=True)
            ]
        )
    )


def test_search_space_follows_the_models_parameters(monkeypatch) -> None:
    space, skipped = resolve_search_space("gbdt", {"num_leaves": 8})
    assert "num_leaves" not in space and "learning_rate" in space and skipped == []
    assert set(space) <= set(get_model("gbdt").get_params())
    # a parameter the model does not have (any more) drops out of the space, named as skipped
    extra = SearchParam(("no_such_knob", "nor_this"), "int", 1, 4)
    monkeypatch.setitem(SEARCH_SPACES, "gbdt", (*SEARCH_SPACES["gbdt"], extra))
    space, skipped = resolve_search_space("gbdt")
    assert skipped == ["no_such_knob"] and "no_such_knob" not in space
    # the first name the model knows is used
    alias = SearchParam(("width", "num_leaves"), "int", 2, 8)
    monkeypatch.setitem(SEARCH_SPACES, "gbdt", (alias,))
    assert list(resolve_search_space("gbdt")[0]) == ["num_leaves"]
    # the transformer spaces resolve against the models as they are now
    for name in ("sequence", "text_lm_lora"):
        space, _ = resolve_search_space(name)
        assert space and set(space) <= set(get_model(name).get_params())


def test_bad_model_sampler_trials_and_params_are_config_errors(frames) -> None:
    train, valid = frames
    with pytest.raises(ConfigError, match="Cannot tune model 'bgnbd'; choose one of: gbdt"):
        tune_model("bgnbd", train, valid, n_trials=1)
    with pytest.raises(ConfigError, match="Unknown sampler 'cmaes'"):
        tune_model("gbdt", train, valid, n_trials=1, sampler="cmaes")
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match="trials must be a whole number >= 1"):
            tune_model("gbdt", train, valid, n_trials=bad)
    with pytest.raises(ConfigError, match="has no parameter 'nope'"):
        tune_model("gbdt", train, valid, n_trials=1, fixed_params={"nope": 1})
    fixed = {n: get_model("gbdt").get_params()[n] for n in resolve_search_space("gbdt")[0]}
    with pytest.raises(ConfigError, match="Nothing is left to search"):
        tune_model("gbdt", train, valid, n_trials=1, fixed_params=fixed)
    with pytest.raises(ConfigError, match="do not fix cv_folds=None"):
        tune_model("gbdt", train, valid, n_trials=1, fixed_params={**FAST, "cv_folds": None})


def test_gbdt_objective_is_the_out_of_fold_auc_of_the_defaults_first(frames) -> None:
    train, valid = frames
    result = tune_model("gbdt", train, valid, n_trials=3, sampler="random", fixed_params=FAST)
    assert [t.state for t in result.trials] == ["COMPLETE"] * 3 and result.n_trials_run == 3
    # trial 0 runs the model's defaults: its value is the customer-grouped out-of-fold ROC-AUC
    # of a plain fit with those parameters, averaged over the learning cutoffs
    defaults = get_model("gbdt").get_params()
    assert result.trials[0].params == {n: defaults[n] for n in result.space}
    model = get_model("gbdt", **FAST).fit(train, valid)
    learning = [*train, valid]
    preds = []
    for f in learning:
        rows = model.oof_[model.oof_["cutoff"] == np.datetime64(f.cutoff, "ns")]
        preds.append(rows.set_index("user_id")["p"].reindex(f.users).to_numpy())
    assert result.default_value == pytest.approx(_mean_auc(learning, preds), abs=1e-12)
    assert result.trials[0].value == result.default_value
    assert result.best_value == max(t.value for t in result.trials)
    assert result.params == {**FAST, **result.best_params}
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["n_complete"] == 3 and payload["objective"].startswith("mean ROC-AUC")
    assert [c["cutoff"] for c in payload["learning"]] == [f"{f.cutoff:%Y-%m-%d}" for f in learning]


def test_fold_objective_matches_out_of_fold_proba(frames, monkeypatch) -> None:
    """A model without its own cross-validation is fitted per fold of customers: the trial's
    value is the ROC-AUC of ``out_of_fold_proba``, and each fold is an intermediate value."""
    train, valid = frames
    monkeypatch.setattr(_tuning, "_supports_round_callbacks", lambda model: False)
    fixed = {**FAST, "cv_folds": None, "n_estimators": 30}
    result = tune_model("gbdt", train, valid, n_trials=1, fixed_params=fixed, n_folds=3)
    learning = [*train, valid]
    expected = out_of_fold_proba(get_model("gbdt", **fixed), learning, n_folds=3)
    assert result.best_value == pytest.approx(_mean_auc(learning, expected), abs=1e-12)
    assert result.trials[0].step == 1  # folds 0 and 1 reported, the last is the value


def test_pruning_stops_trials_early(frames, monkeypatch) -> None:
    train, valid = frames
    # a pruner that prunes every trial from round 30 on: the boosting stops there
    monkeypatch.setattr(
        _tuning,
        "_pruner",
        lambda round_based, prune: optuna.pruners.ThresholdPruner(lower=0.0, n_warmup_steps=30),
    )
    fixed = {**FAST, "n_estimators": 2000, "early_stopping_rounds": 2000}
    result = tune_model("gbdt", train, valid, n_trials=2, sampler="random", fixed_params=fixed)
    assert [t.state for t in result.trials] == ["PRUNED", "PRUNED"]
    assert all(t.step == 30 and "pruned at step 30" in (t.note or "") for t in result.trials)
    assert result.best_value is None and result.best_params == {} and result.params == fixed
    # the median pruner acts on rounds (from 100) for gbdt and on folds otherwise
    monkeypatch.undo()
    assert isinstance(_tuning._pruner(True, True), optuna.pruners.MedianPruner)
    assert isinstance(_tuning._pruner(False, False), optuna.pruners.NopPruner)


def test_grid_sampler_tries_each_point_once_then_stops(frames) -> None:
    train, valid = frames
    space, _ = resolve_search_space("gbdt")
    grid_of = {n: p.grid for n, p in space.items()}
    fixed = {**FAST, **{n: g[0] for n, g in grid_of.items() if n != "num_leaves"}}
    result = tune_model("gbdt", train, valid, n_trials=10, sampler="grid", fixed_params=fixed)
    leaves = sorted(t.params["num_leaves"] for t in result.trials)
    assert leaves == sorted(grid_of["num_leaves"]) and result.n_trials_run == len(leaves)


def test_file_storage_resumes_with_new_points_and_refuses_other_settings(
    frames, tmp_path: Path
) -> None:
    train, valid = frames
    storage = tmp_path / "study.sqlite3"
    kw = {"sampler": "random", "storage": storage, "fixed_params": FAST}
    first = tune_model("gbdt", train, valid, n_trials=2, **kw)
    second = tune_model("gbdt", train, valid, n_trials=2, **kw)
    assert first.study_name == second.study_name == study_name("gbdt", "2021-04-25", 45)
    assert [t.number for t in second.trials] == [0, 1, 2, 3] and second.n_trials_run == 2
    assert second.trials[:2] == first.trials  # kept as they were
    points = [tuple(sorted(t.params.items())) for t in second.trials]
    assert len(set(points)) == 4  # the resumed sampler draws new points
    assert stored_best_params(storage, second.study_name) == second.params
    with pytest.raises(ConfigError, match=r"was run with other settings.*fixed_params"):
        tune_model("gbdt", train, valid, n_trials=1, sampler="random", storage=storage)
    with pytest.raises(ConfigError, match="holds no study 'nope'"):
        stored_best_params(storage, "nope")
    with pytest.raises(ConfigError, match="No study file"):
        stored_best_params(tmp_path / "missing.sqlite3", "x")
    bad = tmp_path / "not_a_db.sqlite3"
    bad.write_text("hello")
    with pytest.raises(ConfigError, match=r"Cannot open .* as an Optuna study file"):
        tune_model("gbdt", train, valid, n_trials=1, storage=bad)


def test_optuna_logs_nothing_and_its_verbosity_is_restored(frames, capsys, caplog) -> None:
    train, valid = frames
    before = optuna.logging.get_verbosity()
    tune_model("gbdt", train, valid, n_trials=1, fixed_params=FAST)
    captured = capsys.readouterr()
    assert "Trial 0 finished" not in captured.err + captured.out + caplog.text
    assert optuna.logging.get_verbosity() == before


def test_folds_are_customer_groups(frames) -> None:
    """Every learning cutoff of a customer is in the same fold (what the objective relies on)."""
    train, valid = frames
    folds = {}
    for f in [*train, valid]:
        for user, k in zip(f.users, customer_folds(f.users), strict=True):
            assert folds.setdefault(user, k) == k


@pytest.mark.slow
def test_sequence_model_tunes_over_folds(frames) -> None:
    train, valid = frames
    fixed = {"epochs": 1, "max_events": 16, "batch_size": 64, "d_model": 16, "n_heads": 2}
    result = tune_model("sequence", train, valid, n_trials=1, n_folds=2, fixed_params=fixed)
    assert result.trials[0].state == "COMPLETE" and 0.0 < result.best_value <= 1.0
    assert set(result.best_params) == set(result.space) and "d_model" not in result.space
