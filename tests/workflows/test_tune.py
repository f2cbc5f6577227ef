"""The tune workflow: learning cutoffs only (never the test cutoff), resumable study, params
that train reads back."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import START, synthetic_store

from retention import workflows
from retention.data import Store
from retention.exceptions import ConfigError
from retention.features import MinData
from retention.models import load_model
from retention.workflows import _tune

HORIZON = 45
CUTOFF = START + pd.Timedelta(days=480)
FAST = {"n_estimators": 150, "early_stopping_rounds": 20}
#: 300 synthetic customers: inside the thin-data rule's warning zone, lowered (as test_predict)
SMALL = MinData(customers=20, retained=5)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("tune") / "synth.duckdb", n_users=300)


def _copy(db: Path, folder: Path, name: str = "copy.duckdb") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    shutil.copy(db, path)
    return path


def _request(**kw) -> workflows.TuneRequest:
    base = {
        "n_trials": 2,
        "n_train": 1,
        "sampler": "random",
        "cutoff": CUTOFF,
        "horizon_days": HORIZON,
        "fixed_params": FAST,
        "min_data": SMALL,
    }
    return workflows.TuneRequest(**{**base, **kw})


def test_request_checks() -> None:
    with pytest.raises(ConfigError, match="Unknown sampler 'bayes'; choose one of: tpe, random"):
        _request(sampler="bayes")
    with pytest.raises(ConfigError, match="Unknown model 'ensemble'; choose one of: gbdt"):
        _request(model="ensemble")
    for bad in (0, -1, 2.0, True, "5"):
        with pytest.raises(ConfigError, match="trials must be a whole number >= 1"):
            _request(n_trials=bad)
    with pytest.raises(ConfigError, match="fixed_params must be a JSON object"):
        _request(fixed_params=[1, 2])
    with pytest.raises(ConfigError, match="time of day"):
        _request(cutoff="2021-04-25 10:00")
    assert _request(cutoff="2021-04-25").cutoff == pd.Timestamp("2021-04-25")
    with pytest.raises(ConfigError, match="seed must be a whole number >= 0"):
        _request(seed=-1)
    with pytest.raises(ConfigError, match=r"in-memory store .* pass storage="):
        workflows.default_study_storage(":memory:")
    assert workflows.default_study_storage("a/b.duckdb") == Path("a/b.duckdb.optuna.sqlite3")


@pytest.mark.slow
def test_the_test_cutoff_never_reaches_a_trial(db: Path, tmp_path: Path, monkeypatch) -> None:
    """Events at and after the cutoff changed (removed, and new ones added) change no trial's
    value or parameters; every frame the tuning builds ends its label window by the cutoff."""
    built: list[pd.Timestamp] = []
    real = _tune.make_frame

    def recording(store, cutoff, horizon_days, **kw):
        built.append(pd.Timestamp(cutoff))
        return real(store, cutoff, horizon_days, **kw)

    monkeypatch.setattr(_tune, "make_frame", recording)
    original = _copy(db, tmp_path / "a")
    with Store(original, read_only=True) as store:
        before = workflows.tune(store, _request())
    assert built and all(c + pd.Timedelta(days=HORIZON) <= CUTOFF for c in built)
    assert before.valid_cutoff == CUTOFF - pd.Timedelta(days=HORIZON)

    changed = _copy(db, tmp_path / "b")
    with Store(changed) as store:
        n_after = store.con.execute(
            "SELECT count(*) FROM events WHERE ts >= ?", [CUTOFF]
        ).fetchall()
        assert n_after[0][0] > 0
        # the future turned upside down: who came back does not, who did not does
        store.con.execute(
            "CREATE TEMP TABLE later AS SELECT DISTINCT user_id FROM events WHERE ts >= ?",
            [CUTOFF],
        )
        store.con.execute("DELETE FROM events WHERE ts >= ?", [CUTOFF])
        store.con.execute(
            "INSERT INTO events (event_id, user_id, ts, event_type, amount) "
            "SELECT 'new' || user_id, user_id, ? + INTERVAL 3 DAY, 'purchase', 10 "
            "FROM (SELECT DISTINCT user_id FROM events) WHERE user_id NOT IN (SELECT * FROM later)",
            [CUTOFF],
        )
    with Store(changed, read_only=True) as store:
        after = workflows.tune(store, _request())
    values = [(t.params, t.value) for t in before.result.trials]
    assert values == [(t.params, t.value) for t in after.result.trials]
    assert before.result.best_value == after.result.best_value

    # ...whereas the data the tuning does learn from changes the values
    with Store(changed) as store:
        store.con.execute("DELETE FROM events WHERE user_id IN ('u0001', 'u0002', 'u0003')")
    with Store(changed, read_only=True) as store:
        moved = workflows.tune(store, _request(n_trials=1, storage=tmp_path / "other.sqlite3"))
    assert moved.result.trials[0].value != before.result.trials[0].value
    # and resuming the first study on that other data is refused
    with Store(changed, read_only=True) as store, pytest.raises(ConfigError, match="learning"):
        workflows.tune(store, _request(storage=before.result.storage))


@pytest.mark.slow
def test_a_second_call_resumes_the_study_next_to_the_store(db: Path, tmp_path: Path) -> None:
    path = _copy(db, tmp_path)
    with Store(path, read_only=True) as store:
        first = workflows.tune(store, _request(n_trials=2))
        second = workflows.tune(store, _request(n_trials=1))
    storage = workflows.default_study_storage(path)
    assert storage == Path(str(path) + ".optuna.sqlite3") and storage.is_file()
    assert first.result.storage == second.result.storage == storage
    assert len(first.result.trials) == 2 and second.result.n_trials_run == 1
    assert [t.number for t in second.result.trials] == [0, 1, 2]
    assert second.result.trials[:2] == first.result.trials
    assert second.result.study_name == f"gbdt-{CUTOFF:%Y-%m-%d}-h{HORIZON}"
    payload = json.loads(json.dumps(second.to_dict(), allow_nan=False))
    assert payload["n_trials"] == 3 and payload["n_trials_run"] == 1
    assert payload["cutoff"] == f"{CUTOFF:%Y-%m-%d}"
    assert payload["valid_cutoff"] == f"{CUTOFF - pd.Timedelta(days=HORIZON):%Y-%m-%d}"
    # another horizon is another study in the same file
    with Store(path, read_only=True) as store:
        other = workflows.tune(store, _request(n_trials=1, horizon_days=30))
    assert other.result.study_name.endswith("-h30") and len(other.result.trials) == 1


@pytest.mark.slow
def test_train_with_the_tuned_parameters(db: Path, tmp_path: Path) -> None:
    path = _copy(db, tmp_path)
    with Store(path) as store:
        with pytest.raises(ConfigError, match="No study file"):
            workflows.tuned_params(store, "gbdt", cutoff=CUTOFF, horizon_days=HORIZON)
        report = workflows.tune(store, _request(n_trials=2))
        params = workflows.tuned_params(store, "gbdt", cutoff=CUTOFF, horizon_days=HORIZON)
        assert params == report.params == {**FAST, **report.result.best_params}
        with pytest.raises(ConfigError, match=r"holds no study 'gbdt-.*-h30'"):
            workflows.tuned_params(store, "gbdt", cutoff=CUTOFF, horizon_days=30)
        trained = workflows.train(
            store,
            workflows.TrainRequest(
                out=tmp_path / "m.retention",
                model="gbdt",
                cutoff=CUTOFF,
                horizon_days=HORIZON,
                n_train=1,
                model_params=params,
                min_data=SMALL,
            ),
        )
    model = load_model(trained.path)
    for name, value in report.result.best_params.items():
        assert getattr(model, name) == pytest.approx(value)
    # the tune JSON is what `train --params FILE` reads back
    out = workflows.write_tune_json(report, tmp_path / "tune.json")
    assert workflows.read_model_params(out, "gbdt") == params
    with pytest.raises(ConfigError, match="tuned for 'gbdt'; got --model sequence"):
        workflows.read_model_params(out, "sequence")
    plain = tmp_path / "plain.json"
    plain.write_text('{"num_leaves": 8}')
    assert workflows.read_model_params(plain, "gbdt") == {"num_leaves": 8}
    plain.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must be a JSON object of hyper-parameters"):
        workflows.read_model_params(plain, "gbdt")
    plain.write_text("{oops")
    with pytest.raises(ConfigError, match="is not JSON"):
        workflows.read_model_params(plain, "gbdt")
    with pytest.raises(ConfigError, match="Cannot read --params"):
        workflows.read_model_params(tmp_path / "none.json", "gbdt")


def test_progress_shows_a_bar_per_trial_with_the_best_so_far(db: Path, tmp_path: Path) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.tasks: list[tuple[str, int | None]] = []
            self.steps = 0

        def stage(self, message):
            from contextlib import nullcontext

            return nullcontext()

        def task(self, description, total=None):
            from contextlib import contextmanager

            self.tasks.append((description, total))

            @contextmanager
            def cm():
                outer = self

                class T:
                    def advance(self, steps: int = 1) -> None:
                        outer.steps += steps

                yield T()

            return cm()

    rec = Recorder()
    with Store(_copy(db, tmp_path), read_only=True) as store:
        report = workflows.tune(store, _request(n_trials=2), progress=rec)
    assert [d.split(" (")[0] for d, _ in rec.tasks] == ["trial 1/2", "trial 2/2"]
    assert rec.tasks[0][0].endswith("best so far -")
    first = report.result.trials[0].value
    assert rec.tasks[1][0].endswith(f"best so far {first:.4f}")
    assert rec.steps > 0


def test_storage_in_a_missing_folder_fails_before_the_work(db: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with Store(db, read_only=True) as store, pytest.raises(ConfigError, match="--storage"):
        workflows.tune(store, _request(storage=blocker / "study.sqlite3"))
    assert np.isfinite(HORIZON)
