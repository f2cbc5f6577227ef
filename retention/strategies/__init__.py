"""Strategies: what to do about each customer (risk bands; recommendations, offers, tiers next)."""

from typing import TYPE_CHECKING

from retention._lazy import lazy_getattr
from retention.strategies._bands import HIGH_RISK_BELOW, RISK_BANDS, risk_band

__all__ = ["HIGH_RISK_BELOW", "RISK_BANDS", "risk_band"]

# Recommendations (issue 12): imported on first use (scikit-learn, and torch for SASRec).
_RECOMMEND = "retention.strategies._recommend"
_RECOMMEND_EXPORTS = {
    "ItemSequences": "retention.strategies._recommend_data",
    "LeaveLastOut": "retention.strategies._recommend_data",
    "leave_last_out": "retention.strategies._recommend_data",
    "read_sequences": "retention.strategies._recommend_data",
    "RankingResult": "retention.strategies._recommend_metrics",
    "evaluate_ranking": "retention.strategies._recommend_metrics",
    "ranking_metrics": "retention.strategies._recommend_metrics",
    "target_ranks": "retention.strategies._recommend_metrics",
    "top_k": "retention.strategies._recommend_metrics",
    "RECOMMENDER_NAMES": _RECOMMEND,
    "ALSRecommender": _RECOMMEND,
    "BlendRecommender": _RECOMMEND,
    "CoOccurrenceRecommender": _RECOMMEND,
    "EASERecommender": _RECOMMEND,
    "PopularityRecommender": _RECOMMEND,
    "Recommender": _RECOMMEND,
    "TextSimilarityRecommender": _RECOMMEND,
    "TransitionRecommender": _RECOMMEND,
    "get_recommender": _RECOMMEND,
    "SASRecRecommender": "retention.strategies._sasrec",
    "RECOMMENDER_FORMAT_VERSION": "retention.strategies._recommend_persist",
    "load_recommender": "retention.strategies._recommend_persist",
    "read_recommender_metadata": "retention.strategies._recommend_persist",
    "recommender_digest": "retention.strategies._recommend_persist",
    "save_recommender": "retention.strategies._recommend_persist",
}
__all__ += list(_RECOMMEND_EXPORTS)

# Promotions by uplift within a budget, loyalty, the plan (issue 13): imported on first use.
_PROMOTE_EXPORTS = {
    name: f"retention.strategies.{module}"
    for module, names in {
        "_uplift": "UPLIFT_LEARNERS SLearner TLearner TransformedOutcome UpliftLearner XLearner "
        "get_uplift_learner uplift_learner_from_state DEFAULT_UPLIFT_MODELS DRLearner "
        "SCategoricalLearner MultiClassTransformation LEARNER_CLASSES SegmentLearner "
        "make_uplift_learner",
        "_uplift_data": "BALANCE_ALPHA FeatureEncoder UpliftData balance_pvalues "
        "check_uplift_frame choose_features design_propensity estimate_propensity",
        "_uplift_metrics": "perfect_score qini_area qini_auc_score qini_curve uplift_area "
        "uplift_at_k uplift_auc_score uplift_curve",
        "_uplift_eval": "UpliftEvaluation difference_in_means evaluate_uplift stratified_split "
        "target_policy POLICY_FOLDS POLICY_SHRINKAGE PolicyRule choose_policy_rule "
        "dr_pseudo_outcomes cross_fit_scores fold_of_units refit_policy_rule STACK",
        "_uplift_rule": "UPLIFT_POLICY_FORMAT UpliftPolicyModel uplift_policy_from_state",
        "_policy": "PolicyComparison dr_contributions evaluate_policies ipw_contributions "
        "one_hot_policy",
        "_budget": "EXACT_MAX_VARS Allocation lagrangian_bound lp_bound optimise_budget "
        "summarise_allocation",
        "_loyalty": "DEFAULT_PROGRAM_TOML CouponRule LoyaltyProgram Tier assign_tiers "
        "holdout_assignment member_costs optimise_thresholds programme_economics "
        "share_thresholds tier_movement",
        "_ledger": "LEDGER_COLUMNS Ledger build_ledger ledger_entry_id",
        "_plan": "Offer explain_actions offer_economics read_offers top_items",
    }.items()
    for name in names.split()
}
__all__ += list(_PROMOTE_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from retention.strategies._budget import (  # noqa: F401
        EXACT_MAX_VARS,
        Allocation,
        lagrangian_bound,
        lp_bound,
        optimise_budget,
        summarise_allocation,
    )
    from retention.strategies._ledger import (  # noqa: F401
        LEDGER_COLUMNS,
        Ledger,
        build_ledger,
        ledger_entry_id,
    )
    from retention.strategies._loyalty import (  # noqa: F401
        DEFAULT_PROGRAM_TOML,
        CouponRule,
        LoyaltyProgram,
        Tier,
        assign_tiers,
        holdout_assignment,
        member_costs,
        optimise_thresholds,
        programme_economics,
        share_thresholds,
        tier_movement,
    )
    from retention.strategies._plan import (  # noqa: F401
        Offer,
        explain_actions,
        offer_economics,
        read_offers,
        top_items,
    )
    from retention.strategies._policy import (  # noqa: F401
        PolicyComparison,
        dr_contributions,
        evaluate_policies,
        ipw_contributions,
        one_hot_policy,
    )
    from retention.strategies._recommend import (  # noqa: F401
        RECOMMENDER_NAMES,
        ALSRecommender,
        BlendRecommender,
        CoOccurrenceRecommender,
        EASERecommender,
        PopularityRecommender,
        Recommender,
        TextSimilarityRecommender,
        TransitionRecommender,
        get_recommender,
    )
    from retention.strategies._recommend_data import (  # noqa: F401
        ItemSequences,
        LeaveLastOut,
        leave_last_out,
        read_sequences,
    )
    from retention.strategies._recommend_metrics import (  # noqa: F401
        RankingResult,
        evaluate_ranking,
        ranking_metrics,
        target_ranks,
        top_k,
    )
    from retention.strategies._recommend_persist import (  # noqa: F401
        RECOMMENDER_FORMAT_VERSION,
        load_recommender,
        read_recommender_metadata,
        recommender_digest,
        save_recommender,
    )
    from retention.strategies._sasrec import SASRecRecommender  # noqa: F401
    from retention.strategies._uplift import (  # noqa: F401
        DEFAULT_UPLIFT_MODELS,
        UPLIFT_LEARNERS,
        DRLearner,
        MultiClassTransformation,
        SCategoricalLearner,
        SLearner,
        TLearner,
        TransformedOutcome,
        UpliftLearner,
        XLearner,
        get_uplift_learner,
        uplift_learner_from_state,
    )
    from retention.strategies._uplift_data import (  # noqa: F401
        BALANCE_ALPHA,
        FeatureEncoder,
        UpliftData,
        balance_pvalues,
        check_uplift_frame,
        choose_features,
        design_propensity,
        estimate_propensity,
    )
    from retention.strategies._uplift_eval import (  # noqa: F401
        POLICY_FOLDS,
        POLICY_SHRINKAGE,
        STACK,
        PolicyRule,
        UpliftEvaluation,
        choose_policy_rule,
        cross_fit_scores,
        difference_in_means,
        dr_pseudo_outcomes,
        evaluate_uplift,
        fold_of_units,
        refit_policy_rule,
        stratified_split,
        target_policy,
    )
    from retention.strategies._uplift_metrics import (  # noqa: F401
        perfect_score,
        qini_area,
        qini_auc_score,
        qini_curve,
        uplift_area,
        uplift_at_k,
        uplift_auc_score,
        uplift_curve,
    )
    from retention.strategies._uplift_rule import (  # noqa: F401
        UPLIFT_POLICY_FORMAT,
        UpliftPolicyModel,
        uplift_policy_from_state,
    )

__getattr__ = lazy_getattr(__name__, {**_RECOMMEND_EXPORTS, **_PROMOTE_EXPORTS})
