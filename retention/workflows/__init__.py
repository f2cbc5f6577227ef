"""Workflows: ingest, info, datasets, backtest, train, score, explain. The only code the CLI and
the API call.

Every workflow takes an open :class:`~retention.data.Store` first (one per process: the CLI opens
it for the command, the API injects it) and typed arguments (a frozen request dataclass where
there are several), and returns a typed result whose ``to_dict()`` is JSON-ready. None opens the
DuckDB file itself or parses CLI strings. Progress goes to an optional
:class:`retention._progress.Progress`; models are looked up through a :class:`ModelCache`.

(DESIGN.md drew this as one ``workflows.py``; it is a package with one private module per area so
that each area stays small. The public names are re-exported here, imported on first use so that
``retention info`` does not pay for importing the models.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retention._lazy import lazy_getattr

_EXPORTS: dict[str, str] = {
    # _common: the model cache
    "LoadedModel": "retention.workflows._common",
    "ModelCache": "retention.workflows._common",
    "check_output_path": "retention.workflows._common",
    "json_clean": "retention.workflows._common",
    "latest_backtest_cutoff": "retention.workflows._common",
    # _data: ingest and info
    "IngestRequest": "retention.workflows._data",
    "StoreInfo": "retention.workflows._data",
    "info": "retention.workflows._data",
    "ingest_file": "retention.workflows._data",
    # _datasets: bundled datasets
    "DatasetLoad": "retention.workflows._datasets",
    "dataset_info": "retention.workflows._datasets",
    "list_datasets": "retention.workflows._datasets",
    "load_dataset": "retention.workflows._datasets",
    # _predict: backtest, train, score
    "DEFAULT_BACKTEST_MODELS": "retention.workflows._predict",
    "BacktestRequest": "retention.workflows._predict",
    "ScoreReport": "retention.workflows._predict",
    "ScoreRequest": "retention.workflows._predict",
    "TrainReport": "retention.workflows._predict",
    "TrainRequest": "retention.workflows._predict",
    "backtest": "retention.workflows._predict",
    "last_event_date": "retention.workflows._predict",
    "score": "retention.workflows._predict",
    "train": "retention.workflows._predict",
    "write_backtest_json": "retention.workflows._predict",
    # _explain: importance, reasons, selection, fairness
    "REASONS_TABLE": "retention.workflows._explain",
    "ExplainBacktestRequest": "retention.workflows._explain",
    "ExplainReport": "retention.workflows._explain",
    "ExplainUserRequest": "retention.workflows._explain",
    "ReasonsReport": "retention.workflows._explain",
    "StoreReasonsRequest": "retention.workflows._explain",
    "UserExplanation": "retention.workflows._explain",
    "explain_backtest": "retention.workflows._explain",
    "explain_user": "retention.workflows._explain",
    "reasons_table": "retention.workflows._explain",
    "store_reasons": "retention.workflows._explain",
    "write_explain_json": "retention.workflows._explain",
    # _apikeys, _customers, _events, _dashboard: the service and dashboard (issue 15)
    "SCOPES": "retention.workflows._apikeys",
    "ApiKey": "retention.workflows._apikeys",
    "ApiKeyRequest": "retention.workflows._apikeys",
    "KeyRing": "retention.workflows._apikeys",
    "NewApiKey": "retention.workflows._apikeys",
    "create_api_key": "retention.workflows._apikeys",
    "list_api_keys": "retention.workflows._apikeys",
    "revoke_api_key": "retention.workflows._apikeys",
    "scope_allows": "retention.workflows._apikeys",
    "touch_api_keys": "retention.workflows._apikeys",
    "MAX_BATCH_IDS": "retention.workflows._customers",
    "SECTIONS": "retention.workflows._customers",
    "CustomerIndex": "retention.workflows._customers",
    "CustomerRequest": "retention.workflows._customers",
    "CustomerView": "retention.workflows._customers",
    "PlanPage": "retention.workflows._customers",
    "ScoreBatch": "retention.workflows._customers",
    "Section": "retention.workflows._customers",
    "check_user_id": "retention.workflows._customers",
    "current_run": "retention.workflows._customers",
    "customer_view": "retention.workflows._customers",
    "plan_page": "retention.workflows._customers",
    "recommendations_for": "retention.workflows._customers",
    "register_section": "retention.workflows._customers",
    "stored_scores": "retention.workflows._customers",
    "EVENT_FIELDS": "retention.workflows._events",
    "MAX_EVENTS_PER_BATCH": "retention.workflows._events",
    "EventBatchRequest": "retention.workflows._events",
    "ingest_events": "retention.workflows._events",
    "DashboardPart": "retention.workflows._dashboard",
    "dashboard_cohorts": "retention.workflows._dashboard",
    "dashboard_drivers": "retention.workflows._dashboard",
    "dashboard_experiments": "retention.workflows._dashboard",
    "dashboard_models": "retention.workflows._dashboard",
    "dashboard_overview": "retention.workflows._dashboard",
    "dashboard_plan": "retention.workflows._dashboard",
    "dashboard_risk": "retention.workflows._dashboard",
    "latest_model_id": "retention.workflows._dashboard",
    # _experiment: A/B tests and off-policy evaluation (issue 14)
    "AnalyzeCsvRequest": "retention.workflows._experiment",
    "AnalyzeExperimentRequest": "retention.workflows._experiment",
    "AssignReport": "retention.workflows._experiment",
    "AssignRequest": "retention.workflows._experiment",
    "CreateExperimentRequest": "retention.workflows._experiment",
    "DesignRequest": "retention.workflows._experiment",
    "ExperimentRecord": "retention.workflows._experiment",
    "ExperimentReport": "retention.workflows._experiment",
    "ExposureReport": "retention.workflows._experiment",
    "OffPolicyReport": "retention.workflows._experiment",
    "OffPolicyRequest": "retention.workflows._experiment",
    "analyze_csv": "retention.workflows._experiment",
    "analyze_experiment": "retention.workflows._experiment",
    "assign_users": "retention.workflows._experiment",
    "create_experiment": "retention.workflows._experiment",
    "design_experiment": "retention.workflows._experiment",
    "evaluate_offpolicy": "retention.workflows._experiment",
    "get_experiment": "retention.workflows._experiment",
    "list_experiments": "retention.workflows._experiment",
    "log_exposures": "retention.workflows._experiment",
    "measured_uplift": "retention.workflows._experiment",
    "write_experiment_json": "retention.workflows._experiment",
    # _recommend: recommendations (issue 12)
    "DEFAULT_RECOMMENDER": "retention.workflows._recommend",
    "RECOMMENDATIONS_TABLE": "retention.workflows._recommend",
    "RecommendReport": "retention.workflows._recommend",
    "RecommendRequest": "retention.workflows._recommend",
    "recommend": "retention.workflows._recommend",
    "stored_recommendations": "retention.workflows._recommend",
    # _promote, _loyalty, _plan: uplift, loyalty programme, the plan (issue 13)
    "UpliftEvaluateReport": "retention.workflows._promote",
    "UpliftEvaluateRequest": "retention.workflows._promote",
    "UpliftModelRecord": "retention.workflows._promote",
    "UpliftScoreReport": "retention.workflows._promote",
    "UpliftScoreRequest": "retention.workflows._promote",
    "UpliftTrainReport": "retention.workflows._promote",
    "UpliftTrainRequest": "retention.workflows._promote",
    "read_uplift_model": "retention.workflows._promote",
    "uplift_evaluate": "retention.workflows._promote",
    "uplift_score": "retention.workflows._promote",
    "uplift_train": "retention.workflows._promote",
    "write_uplift_json": "retention.workflows._promote",
    "DEFAULT_PROGRAM_TOML": "retention.workflows._loyalty",
    "LoyaltyProgram": "retention.workflows._loyalty",
    "LoyaltyReport": "retention.workflows._loyalty",
    "LoyaltyRunRequest": "retention.workflows._loyalty",
    "latest_scores": "retention.workflows._loyalty",
    "loyalty_run": "retention.workflows._loyalty",
    "write_loyalty_json": "retention.workflows._loyalty",
    "PlanReport": "retention.workflows._plan",
    "PlanRequest": "retention.workflows._plan",
    "plan": "retention.workflows._plan",
    "read_offers": "retention.workflows._plan",
    "write_plan_json": "retention.workflows._plan",
    # _registry: model versions and stages, promote, rollback (issue 16)
    "DEFAULT_PROMOTE_MARGIN": "retention.workflows._registry",
    "ModelChoice": "retention.workflows._registry",
    "ModelVersion": "retention.workflows._registry",
    "PromoteReport": "retention.workflows._registry",
    "PromoteRequest": "retention.workflows._registry",
    "RegistryListing": "retention.workflows._registry",
    "RollbackReport": "retention.workflows._registry",
    "RollbackRequest": "retention.workflows._registry",
    "choose_model": "retention.workflows._registry",
    "list_models": "retention.workflows._registry",
    "production_model_id": "retention.workflows._registry",
    "promote": "retention.workflows._registry",
    "rollback": "retention.workflows._registry",
    "write_registry_json": "retention.workflows._registry",
    # _monitor: drift and decay monitoring, retraining (issue 16)
    "MONITOR_TABLES": "retention.workflows._monitor",
    "MonitorReport": "retention.workflows._monitor",
    "MonitorRequest": "retention.workflows._monitor",
    "MonitorThresholds": "retention.experiments",
    "RetrainReport": "retention.workflows._monitor",
    "RetrainRequest": "retention.workflows._monitor",
    "dashboard_monitor": "retention.workflows._monitor",
    "monitor": "retention.workflows._monitor",
    "monitor_history": "retention.workflows._monitor",
    "retrain": "retention.workflows._monitor",
    "write_monitor_json": "retention.workflows._monitor",
    "write_retrain_json": "retention.workflows._monitor",
    # _tracking: run tracking with MLflow (issue 16)
    "TrackedRun": "retention.workflows._tracking",
    "TrackedRuns": "retention.workflows._tracking",
    "data_fingerprint": "retention.workflows._tracking",
    "list_runs": "retention.workflows._tracking",
    "track_artifact": "retention.workflows._tracking",
    "tracking_location": "retention.workflows._tracking",
    # _tune: hyper-parameter search (issue 16)
    "TuneReport": "retention.workflows._tune",
    "TuneRequest": "retention.workflows._tune",
    "default_study_storage": "retention.workflows._tune",
    "model_params_from": "retention.workflows._tune",
    "read_model_params": "retention.workflows._tune",
    "tune": "retention.workflows._tune",
    "tuned_params": "retention.workflows._tune",
    "write_tune_json": "retention.workflows._tune",
    # _scale: feature tables on DuckDB or Spark, scoring on Spark (issue 17)
    "FeaturesReport": "retention.workflows._scale",
    "FeaturesRequest": "retention.workflows._scale",
    "SparkScoreReport": "retention.workflows._scale",
    "SparkScoreRequest": "retention.workflows._scale",
    "feature_file": "retention.workflows._scale",
    "spark_score": "retention.workflows._scale",
    # what serving needs from the lower stages, re-exported (serving imports workflows only)
    "Mapping": "retention.data",
    "Store": "retention.data",
    "BacktestResult": "retention.models",
    "MinData": "retention.features",
    "to_retained_by": "retention.features",
    "RISK_BANDS": "retention.strategies",
    "cohort_retention": "retention.features",
    "to_cutoff": "retention.features",
    "to_horizon": "retention.features",
    "risk_band": "retention.strategies",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from retention.data import Mapping, Store  # noqa: F401
    from retention.experiments import MonitorThresholds  # noqa: F401
    from retention.features import (  # noqa: F401
        MinData,
        cohort_retention,
        to_cutoff,
        to_horizon,
        to_retained_by,
    )
    from retention.models import BacktestResult  # noqa: F401
    from retention.strategies import RISK_BANDS, risk_band  # noqa: F401
    from retention.workflows._apikeys import (  # noqa: F401
        SCOPES,
        ApiKey,
        ApiKeyRequest,
        KeyRing,
        NewApiKey,
        create_api_key,
        list_api_keys,
        revoke_api_key,
        scope_allows,
        touch_api_keys,
    )
    from retention.workflows._common import (  # noqa: F401
        LoadedModel,
        ModelCache,
        check_output_path,
        json_clean,
        latest_backtest_cutoff,
    )
    from retention.workflows._customers import (  # noqa: F401
        MAX_BATCH_IDS,
        SECTIONS,
        CustomerIndex,
        CustomerRequest,
        CustomerView,
        PlanPage,
        ScoreBatch,
        Section,
        check_user_id,
        current_run,
        customer_view,
        plan_page,
        recommendations_for,
        register_section,
        stored_scores,
    )
    from retention.workflows._dashboard import (  # noqa: F401
        DashboardPart,
        dashboard_cohorts,
        dashboard_drivers,
        dashboard_experiments,
        dashboard_models,
        dashboard_overview,
        dashboard_plan,
        dashboard_risk,
        latest_model_id,
    )
    from retention.workflows._data import IngestRequest, StoreInfo, info, ingest_file  # noqa: F401
    from retention.workflows._datasets import (  # noqa: F401
        DatasetLoad,
        dataset_info,
        list_datasets,
        load_dataset,
    )
    from retention.workflows._events import (  # noqa: F401
        EVENT_FIELDS,
        MAX_EVENTS_PER_BATCH,
        EventBatchRequest,
        ingest_events,
    )
    from retention.workflows._experiment import (  # noqa: F401
        AnalyzeCsvRequest,
        AnalyzeExperimentRequest,
        AssignReport,
        AssignRequest,
        CreateExperimentRequest,
        DesignRequest,
        ExperimentRecord,
        ExperimentReport,
        ExposureReport,
        OffPolicyReport,
        OffPolicyRequest,
        analyze_csv,
        analyze_experiment,
        assign_users,
        create_experiment,
        design_experiment,
        evaluate_offpolicy,
        get_experiment,
        list_experiments,
        log_exposures,
        measured_uplift,
        write_experiment_json,
    )
    from retention.workflows._explain import (  # noqa: F401
        REASONS_TABLE,
        ExplainBacktestRequest,
        ExplainReport,
        ExplainUserRequest,
        ReasonsReport,
        StoreReasonsRequest,
        UserExplanation,
        explain_backtest,
        explain_user,
        reasons_table,
        store_reasons,
        write_explain_json,
    )
    from retention.workflows._loyalty import (  # noqa: F401
        DEFAULT_PROGRAM_TOML,
        LoyaltyProgram,
        LoyaltyReport,
        LoyaltyRunRequest,
        latest_scores,
        loyalty_run,
        write_loyalty_json,
    )
    from retention.workflows._monitor import (  # noqa: F401
        MONITOR_TABLES,
        MonitorReport,
        MonitorRequest,
        RetrainReport,
        RetrainRequest,
        dashboard_monitor,
        monitor,
        monitor_history,
        retrain,
        write_monitor_json,
        write_retrain_json,
    )
    from retention.workflows._plan import (  # noqa: F401
        PlanReport,
        PlanRequest,
        plan,
        read_offers,
        write_plan_json,
    )
    from retention.workflows._predict import (  # noqa: F401
        DEFAULT_BACKTEST_MODELS,
        BacktestRequest,
        ScoreReport,
        ScoreRequest,
        TrainReport,
        TrainRequest,
        backtest,
        last_event_date,
        score,
        train,
        write_backtest_json,
    )
    from retention.workflows._promote import (  # noqa: F401
        UpliftEvaluateReport,
        UpliftEvaluateRequest,
        UpliftModelRecord,
        UpliftScoreReport,
        UpliftScoreRequest,
        UpliftTrainReport,
        UpliftTrainRequest,
        read_uplift_model,
        uplift_evaluate,
        uplift_score,
        uplift_train,
        write_uplift_json,
    )
    from retention.workflows._recommend import (  # noqa: F401
        DEFAULT_RECOMMENDER,
        RECOMMENDATIONS_TABLE,
        RecommendReport,
        RecommendRequest,
        recommend,
        stored_recommendations,
    )
    from retention.workflows._registry import (  # noqa: F401
        DEFAULT_PROMOTE_MARGIN,
        ModelChoice,
        ModelVersion,
        PromoteReport,
        PromoteRequest,
        RegistryListing,
        RollbackReport,
        RollbackRequest,
        choose_model,
        list_models,
        production_model_id,
        promote,
        rollback,
        write_registry_json,
    )
    from retention.workflows._scale import (  # noqa: F401
        FeaturesReport,
        FeaturesRequest,
        SparkScoreReport,
        SparkScoreRequest,
        feature_file,
        spark_score,
    )
    from retention.workflows._tracking import (  # noqa: F401
        TrackedRun,
        TrackedRuns,
        data_fingerprint,
        list_runs,
        track_artifact,
        tracking_location,
    )
    from retention.workflows._tune import (  # noqa: F401
        TuneReport,
        TuneRequest,
        default_study_storage,
        model_params_from,
        read_model_params,
        tune,
        tuned_params,
        write_tune_json,
    )


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__
