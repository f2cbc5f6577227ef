"""Full-ranking metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retention.exceptions import ConfigError
from retention.strategies import evaluate_ranking, ranking_metrics, target_ranks, top_k


def test_ranks_count_better_items_and_break_ties_by_item_code() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.5], [0.3, 0.3, 0.3, 0.3]])
    # row 0: item 2 has 0.9 above it and item 3 ties after it (higher code): rank 1
    # row 1: all tie; item 2 comes after items 0 and 1
    assert target_ranks(scores, np.array([2, 2])).tolist() == [1, 2]
    assert target_ranks(scores, np.array([3, 0])).tolist() == [2, 0]


def test_excluded_items_leave_the_ranking_and_an_excluded_target_is_a_miss() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.1]])
    assert target_ranks(scores, np.array([2]), [np.array([0])]).tolist() == [1]
    assert target_ranks(scores, np.array([2]), [np.array([2])]).tolist() == [4]
    assert top_k(scores, 2, [np.array([0])]).tolist() == [[1, 2]]


def test_top_k_is_best_first_with_ties_by_code() -> None:
    scores = np.array([[0.2, 0.5, 0.5, 0.5, 0.9]])
    assert top_k(scores, 3).tolist() == [[4, 1, 2]]
    assert top_k(scores, 5).tolist() == [[4, 1, 2, 3, 0]]


def test_hit_rate_ndcg_and_mrr_by_hand() -> None:
    m = ranking_metrics(np.array([0, 1, 20]), k=10)
    assert m["hr@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1.0 / math.log2(3)) / 3)
    assert m["mrr"] == pytest.approx((1.0 + 0.5 + 1.0 / 21) / 3)


def test_evaluate_one_target_per_customer() -> None:
    n_items = 6
    # the "model" scores item i by i (item 5 best), whatever the history
    fn = lambda hist: np.tile(np.arange(n_items, dtype=float), (len(hist), 1))  # noqa: E731
    histories = [np.array([5]), np.array([0]), np.array([], dtype=np.int64)]
    targets = np.array([4, 4, 0])
    res = evaluate_ranking(fn, histories, targets, n_items, k=2)
    # customer 0: 5 excluded, 4 is first (rank 0); customer 1: rank 1; customer 2: rank 5
    assert res.per_user["hit"].tolist() == [1.0, 1.0, 0.0]
    assert res.metrics["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert res.metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 6) / 3)
    # top-2 lists: [4, 3], [5, 4], [5, 4]: items 3, 4, 5 covered
    assert res.metrics["coverage@2"] == pytest.approx(3 / 6)
    unexcluded = evaluate_ranking(fn, histories, targets, n_items, k=2, exclude_seen=False)
    assert unexcluded.per_user["hit"].tolist() == [1.0, 1.0, 0.0]
    assert unexcluded.metrics["mrr"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 6) / 3)
    seg = res.segment("long", np.array([True, True, False]))
    assert seg["hr@2"] == 1.0 and seg["n_users"] == 2


def test_evaluate_several_targets_per_customer() -> None:
    n_items = 5
    fn = lambda hist: np.tile(np.arange(n_items, dtype=float)[::-1], (len(hist), 1))  # noqa: E731
    # ranking 0, 1, 2, 3, 4; targets {1, 4}: ranks 1 and 4
    res = evaluate_ranking(fn, [np.array([], dtype=np.int64)], [np.array([1, 4])], n_items, k=3)
    dcg = 1 / math.log2(3)
    ideal = 1 + 1 / math.log2(3)
    assert res.metrics["ndcg@3"] == pytest.approx(dcg / ideal)
    assert res.metrics["recall@3"] == pytest.approx(0.5)
    assert res.metrics["hr@3"] == 1.0 and res.metrics["mrr"] == pytest.approx(0.5)


def test_evaluate_refuses_bad_input() -> None:
    fn = lambda hist: np.zeros((len(hist), 3))  # noqa: E731
    with pytest.raises(ConfigError, match="k must be"):
        evaluate_ranking(fn, [np.array([0])], np.array([1]), 3, k=0)
    with pytest.raises(ConfigError, match="targets"):
        evaluate_ranking(fn, [np.array([0])], np.array([1, 2]), 3)
    with pytest.raises(ConfigError, match="expected"):
        evaluate_ranking(fn, [np.array([0])], np.array([1]), 4)
