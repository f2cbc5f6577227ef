"""The model cache and the store's model registry."""

from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import synthetic_store

import retention.models
from retention import workflows
from retention._progress import NullProgress, Progress
from retention.data import Store
from retention.exceptions import ConfigError, ModelError
from retention.features import MinData

#: 120 customers on purpose (these tests are about the cache, not the model): below the default
#: thin-data rule (issue 11), lowered explicitly
SMALL = MinData(customers=20, retained=5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, workflows.TrainReport]:
    folder = tmp_path_factory.mktemp("cache")
    db = synthetic_store(folder / "s.duckdb", n_users=120, seed=2)
    with Store(db) as store:
        report = workflows.train(
            store,
            workflows.TrainRequest(
                out=folder / "bg.retention", model="bgnbd", horizon_days=45, min_data=SMALL
            ),
        )
    return db, report


@pytest.fixture
def loads(monkeypatch) -> list[Path]:
    """The artifacts ``retention.models.load_model`` is asked to load."""
    seen: list[Path] = []
    real = retention.models.load_model

    def counting(path):
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(retention.models, "load_model", counting)
    return seen


def test_a_second_lookup_loads_nothing(trained, loads) -> None:
    db, report = trained
    cache = workflows.ModelCache()
    with Store(db, read_only=True) as store:
        first = cache.get(store, report.model_id)
        again = cache.get(store, report.model_id)
        by_path = cache.from_path(report.path)
    assert first.model is again.model is by_path.model
    assert loads == [report.path.resolve()] and cache.n_loaded == 1
    assert first.model_id == report.model_id and first.horizon_days == 45
    assert report.model_id in cache and len(cache) == 1


def test_an_unregistered_artifact_loads_by_path(trained, tmp_path, loads) -> None:
    _, report = trained
    copy = tmp_path / "copy.retention"
    shutil.copy(report.path, copy)
    cache = workflows.ModelCache()
    assert cache.from_path(copy).model is cache.from_path(copy).model
    assert loads == [copy]


def test_the_registry_refuses_unknown_ids_and_changed_files(trained, tmp_path, loads) -> None:
    db, report = trained
    copy_db = tmp_path / "s.duckdb"
    shutil.copy(db, copy_db)
    with (
        Store(copy_db, read_only=True) as store,
        pytest.raises(ConfigError, match="No model 'nope' in the registry"),
    ):
        workflows.ModelCache().get(store, "nope")
    artifact = tmp_path / "bg.retention"
    shutil.copy(report.path, artifact)
    with Store(copy_db) as store:
        record = store.model_record(report.model_id)
        assert record is not None
        store.register_model(type(record)(**{**record.__dict__, "path": artifact}))
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with Store(copy_db, read_only=True) as store:
        with pytest.raises(ModelError, match="changed since it was registered"):
            workflows.ModelCache().get(store, report.model_id)
        artifact.unlink()
        with pytest.raises(ModelError, match="no file is there"):
            workflows.ModelCache().get(store, report.model_id)
    assert loads == []  # nothing was loaded from a file the registry does not vouch for


def test_the_cache_keeps_the_most_recently_used(trained, tmp_path) -> None:
    db, report = trained
    with Store(db) as store:
        other = workflows.train(
            store,
            workflows.TrainRequest(
                out=tmp_path / "bg30.retention", model="bgnbd", horizon_days=30, min_data=SMALL
            ),
        )
    assert other.model_id != report.model_id
    cache = workflows.ModelCache(max_models=1)
    cache.from_path(report.path)
    cache.from_path(other.path)
    assert report.model_id not in cache and other.model_id in cache
    cache.from_path(other.path)
    assert cache.n_loaded == 2
    cache.from_path(report.path)  # evicted: loaded again
    assert cache.n_loaded == 3
    with pytest.raises(ConfigError, match="max_models"):
        workflows.ModelCache(max_models=0)


class _Recorder:
    """A Progress that records what a workflow reported."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.tasks: list[list] = []  # [description, total, steps advanced]

    @contextmanager
    def stage(self, message: str):
        self.stages.append(message)
        yield

    @contextmanager
    def task(self, description: str, total: int | None = None):
        record = [description, total, 0]
        self.tasks.append(record)

        class _Task:
            def advance(self, steps: int = 1) -> None:
                record[2] += steps

        yield _Task()


def test_workflows_report_progress_through_the_protocol(trained, tmp_path) -> None:
    db, report = trained
    recorder = _Recorder()
    assert isinstance(recorder, Progress) and isinstance(NullProgress(), Progress)
    copy_db = tmp_path / "s.duckdb"
    shutil.copy(db, copy_db)
    with Store(copy_db) as store:
        workflows.score(store, workflows.ScoreRequest(model_path=report.path), progress=recorder)
    assert "building features" in recorder.stages
    assert any(s.startswith("scoring") for s in recorder.stages)


def test_backtest_advances_one_task_step_per_model(trained) -> None:
    db, _ = trained
    recorder = _Recorder()
    request = workflows.BacktestRequest(
        cutoff="2021-04-25", horizon_days=45, models="bgnbd,paretonbd", min_data=SMALL
    )
    with Store(db, read_only=True) as store:
        workflows.backtest(store, request, progress=recorder)
    assert recorder.tasks == [["scoring the test cutoff", 2, 2]]
    assert recorder.stages[:3] == ["building features", "fitting bgnbd", "fitting paretonbd"]
    with NullProgress().task("nothing", total=1) as task:
        task.advance()  # the default progress accepts every call


def test_rich_progress_draws_stages_and_tasks(monkeypatch, capsys) -> None:
    from retention._progress import RichProgress

    monkeypatch.setenv("RETENTION_PROGRESS", "1")
    progress = RichProgress()
    assert isinstance(progress, Progress)
    with progress.task("fitting", total=2) as task:
        with progress.stage("inside a task"):  # a spinner inside a bar does not fail
            task.advance()
        task.advance()
    assert capsys.readouterr().out == ""  # bars go to stderr, never into printed results
