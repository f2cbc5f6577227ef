"""Experiments: design, assignment and analysis of A/B tests; validation by simulation;
off-policy evaluation of recommendation policies.

>>> import pandas as pd
>>> from retention.experiments import analyze_units
>>> units = pd.DataFrame({"arm": ["a", "b"] * 500, "y": ([0, 1] * 250 + [1, 1] * 250)})
>>> result = analyze_units(units, variant="arm", control="a", metrics=["y"])
>>> round(result.comparison("b").difference, 3)
0.25
"""

from retention.experiments._analyze import (
    SEQUENTIAL_DESIGNS,
    SRM_THRESHOLD,
    Comparison,
    ExperimentAnalysis,
    MetricSpec,
    SampleRatio,
    analyze_summaries,
    analyze_units,
    sequential_mode,
    summarize_units,
)
from retention.experiments._assign import HOLDOUT, assign_variants, bucket, buckets, check_weights
from retention.experiments._design import DesignResult, design
from retention.experiments._metrics import (
    EVENT_METRICS,
    RATIO_METRICS,
    ExperimentUnits,
    store_moments,
)
from retention.experiments._offpolicy import (
    ESTIMATORS,
    BanditLog,
    PolicyEstimate,
    bandit_log_from_frame,
    bernoulli_ts_action_dist,
    estimate_policy_value,
    fit_reward_model,
    relative_error_protocol,
    round_values,
)
from retention.experiments._simulate import (
    SimulationResult,
    simulate_aa,
    simulate_coverage,
    simulate_cuped,
    simulate_peeking,
    simulate_srm,
)
from retention.experiments._stats import (
    SPENDING,
    ArmMoments,
    Estimate,
    GroupSequential,
    alpha_spent,
    bayesian,
    classical_boundary,
    confidence_sequence,
    cuped_theta,
    group_sequential_boundaries,
    group_sequential_p_value,
    srm_test,
    welch,
)
from retention.experiments._tuning import (
    SAMPLERS,
    SEARCH_SPACES,
    TUNABLE_MODELS,
    SearchParam,
    TrialRecord,
    TuningResult,
    resolve_search_space,
    stored_best_params,
    study_name,
    tune_model,
)

__all__ = [
    "ESTIMATORS",
    "EVENT_METRICS",
    "HOLDOUT",
    "RATIO_METRICS",
    "SAMPLERS",
    "SEARCH_SPACES",
    "SEQUENTIAL_DESIGNS",
    "SPENDING",
    "SRM_THRESHOLD",
    "TUNABLE_MODELS",
    "ArmMoments",
    "BanditLog",
    "Comparison",
    "DesignResult",
    "Estimate",
    "ExperimentAnalysis",
    "ExperimentUnits",
    "GroupSequential",
    "MetricSpec",
    "PolicyEstimate",
    "SampleRatio",
    "SearchParam",
    "SimulationResult",
    "TrialRecord",
    "TuningResult",
    "alpha_spent",
    "analyze_summaries",
    "analyze_units",
    "assign_variants",
    "bandit_log_from_frame",
    "bayesian",
    "bernoulli_ts_action_dist",
    "bucket",
    "buckets",
    "check_weights",
    "classical_boundary",
    "confidence_sequence",
    "cuped_theta",
    "design",
    "estimate_policy_value",
    "fit_reward_model",
    "group_sequential_boundaries",
    "group_sequential_p_value",
    "relative_error_protocol",
    "resolve_search_space",
    "round_values",
    "sequential_mode",
    "simulate_aa",
    "simulate_coverage",
    "simulate_cuped",
    "simulate_peeking",
    "simulate_srm",
    "srm_test",
    "store_moments",
    "stored_best_params",
    "study_name",
    "summarize_units",
    "tune_model",
    "welch",
]

from retention.experiments._monitor import (
    DECAY,
    ECE_BINS,
    FEATURE_PSI,
    PSI_BINS,
    PSI_EPS,
    SCORE_PSI,
    MonitorThresholds,
    bin_shares,
    drift_table,
    expected_calibration_error,
    ks_test,
    psi,
    psi_edges,
    realised_metrics,
)

__all__ += [
    "DECAY",
    "ECE_BINS",
    "FEATURE_PSI",
    "PSI_BINS",
    "PSI_EPS",
    "SCORE_PSI",
    "MonitorThresholds",
    "bin_shares",
    "drift_table",
    "expected_calibration_error",
    "ks_test",
    "psi",
    "psi_edges",
    "realised_metrics",
]
