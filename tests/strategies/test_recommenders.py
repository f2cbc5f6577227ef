"""Every recommender through the shared estimator check, and what each must do.

The data is a real slice: the first 150 customers of the bundled Amazon Beauty sequences.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from test_check_estimator import Case, check_estimator

from retention.data import amazon_beauty_items, dataset_path
from retention.exceptions import ConfigError, IncompatibleModelError, ModelError
from retention.strategies import (
    RECOMMENDER_NAMES,
    BlendRecommender,
    ItemSequences,
    SASRecRecommender,
    TransitionRecommender,
    get_recommender,
    leave_last_out,
    load_recommender,
    read_recommender_metadata,
    read_sequences,
    recommender_digest,
    save_recommender,
)

TINY_SASREC = {
    "d_model": 8,
    "n_blocks": 1,
    "max_length": 10,
    "epochs": 2,
    "batch_size": 64,
    "n_threads": 1,
}
FAST: dict[str, dict[str, Any]] = {
    "als": {"factors": 8, "iterations": 3},
    "ease": {"max_items": 400},
    "sasrec": TINY_SASREC,
    "blend": {"members": ("transition", "cooccurrence")},
}
INVALID: dict[str, dict[str, Any]] = {
    "popularity": {"window_days": -1},
    "cooccurrence": {"n_last": 0},
    "transition": {"weights": ()},
    "ease": {"l2": -1.0},
    "als": {"factors": 0},
    "sasrec": {"dropout": 1.5},
    "blend": {"grid_step": 0},
}


@pytest.fixture(scope="module")
def beauty() -> ItemSequences:
    seqs = read_sequences(dataset_path("amazon_beauty", "amazon_beauty.txt.gz"))
    return seqs.take(np.arange(150))


@pytest.fixture(scope="module")
def split(beauty: ItemSequences) -> Any:
    return leave_last_out(beauty)


def _case(name: str, split: Any) -> Case:
    rows = split.evaluated[:50]
    hist = [split.refit.history(int(r)) for r in rows]
    return Case(
        make=lambda **kw: get_recommender(name, **{**FAST.get(name, {}), **kw}),
        fit=lambda m: m.fit(split.search, split.valid_targets),
        predict=lambda m: m.score_histories(hist)[:, :50].ravel(),
        inputs=lambda: [
            split.search.codes,
            split.search.indptr,
            split.search.users,
            split.valid_targets,
            hist,
        ],
        n_out=len(rows) * 50,
        invalid=INVALID[name],
        proba=False,
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[pytest.mark.slow] if n == "sasrec" else [])
        for n in RECOMMENDER_NAMES
        if n != "text"
    ],
)
def test_check_estimator(name: str, split: Any, tmp_path: Path) -> None:
    check_estimator(_case(name, split), tmp_path)


def test_transition_scores_follow_the_last_three_items_by_hand() -> None:
    seqs = ItemSequences.from_lists(
        {
            "u1": ["a", "x"],
            "u2": ["b", "y"],
            "u3": ["c", "z"],
            "u4": ["c", "z"],
            "me": ["c", "b", "a"],
        }
    )
    rec = TransitionRecommender(window_days=None).fit(seqs)
    code = {i: n for n, i in enumerate(seqs.items)}
    scores = rec.score_histories([seqs.history(4)])[0]
    # a (last) -> x weight 1; b -> y (and b -> a) 1/2; c -> z twice and c -> b once, 1/3
    assert scores[code["x"]] == pytest.approx(1.0, abs=1e-5)
    assert scores[code["y"]] == pytest.approx(0.5, abs=1e-5)
    assert scores[code["z"]] == pytest.approx(2 / 3, abs=1e-5)
    top = rec.recommend(["me"], k=3)
    assert top["item_id"].tolist() == ["x", "z", "y"]  # seen items a, b, c are left out
    assert top["reason"].tolist()[0] == "often bought after item a"
    repeats = rec.recommend(["me"], k=6, exclude_seen=False)["item_id"].tolist()
    assert set(repeats) >= {"a", "b"}


def test_the_test_item_never_reaches_training() -> None:
    # every customer's last item is one of their own that nobody else has: if it reached any
    # fitted state, popularity or the transitions would know it
    hist = {f"u{i}": ["a", "b", "c", "d", f"test{i}"] for i in range(30)}
    seqs = ItemSequences.from_lists(hist)
    split = leave_last_out(seqs)
    test_codes = np.unique(split.test_targets[split.test_targets >= 0])
    assert len(test_codes) == 30
    for name in ("popularity", "transition", "cooccurrence", "ease"):
        for fitted in (
            get_recommender(name).fit(split.search, split.valid_targets),
            get_recommender(name).fit(split.refit),
        ):
            assert not np.isin(fitted.codes_, test_codes).any(), name
            assert (fitted.popularity_[test_codes] == 0).all(), name
    model = TransitionRecommender().fit(split.refit)
    assert model.matrix_[:, test_codes].nnz == 0


def test_the_test_item_never_reaches_sasrec_training(monkeypatch: pytest.MonkeyPatch) -> None:
    hist = {f"u{i}": ["a", "b", "c", "d", f"test{i}"] for i in range(30)}
    split = leave_last_out(ItemSequences.from_lists(hist))
    test_codes = np.unique(split.test_targets[split.test_targets >= 0])
    seen: list[np.ndarray] = []
    original = SASRecRecommender._epoch

    def spy(self: Any, net: Any, opt: Any, inputs: np.ndarray, targets: np.ndarray, *a: Any) -> Any:
        seen.extend([inputs[inputs > 0] - 1, targets[targets >= 0]])
        return original(self, net, opt, inputs, targets, *a)

    monkeypatch.setattr(SASRecRecommender, "_epoch", spy)
    params = {**TINY_SASREC, "n_seeds": 2}
    search = get_recommender("sasrec", **params).fit(split.search, split.valid_targets)
    type(search)(**search.frozen_params()).fit(split.refit)
    assert len(seen) == 2 * (len(search.history_) + 3 * search.best_epoch_)
    trained = np.concatenate(seen)
    assert len(trained) and not np.isin(trained, test_codes).any()


@pytest.mark.slow
def test_sasrec_is_seeded(split: Any) -> None:
    rows = split.evaluated[:20]
    hist = [split.refit.history(int(r)) for r in rows]

    def scores(seed: int) -> np.ndarray:
        m = get_recommender("sasrec", **{**TINY_SASREC, "random_state": seed})
        return m.fit(split.search, split.valid_targets).score_histories(hist)

    a, b, c = scores(0), scores(0), scores(1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.slow
def test_sasrec_early_stopping_and_frozen_refit(split: Any) -> None:
    m = get_recommender("sasrec", **{**TINY_SASREC, "epochs": 4, "patience": 1})
    m.fit(split.search, split.valid_targets)
    assert 1 <= m.best_epoch_ <= len(m.history_) <= 4
    assert all("valid_ndcg@10" in h for h in m.history_)
    frozen = m.frozen_params()
    assert frozen["epochs"] == m.best_epoch_ and frozen["patience"] is None
    refit = type(m)(**frozen).fit(split.refit)
    assert len(refit.history_) == m.best_epoch_


@pytest.mark.slow
def test_sampled_softmax_trains(split: Any) -> None:
    m = get_recommender("sasrec", **{**TINY_SASREC, "loss": "sampled", "n_negatives": 32})
    m.fit(split.search)
    assert np.isfinite([h["loss"] for h in m.history_]).all()


@pytest.mark.slow
def test_seed_averaging_searches_once_and_averages_the_seeds(split: Any) -> None:
    params = {**TINY_SASREC, "epochs": 3, "patience": 1}
    one = get_recommender("sasrec", **params).fit(split.search, split.valid_targets)
    three = get_recommender("sasrec", **params, n_seeds=3).fit(split.search, split.valid_targets)
    # the first network is the single model's own; it alone chose the epoch count
    assert three.best_epoch_ == one.best_epoch_ and len(three.nets_) == 3

    def strip(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert strip(three.history_) == strip(one.history_)
    hist = [split.refit.history(int(r)) for r in split.evaluated[:20]]
    z = [three._net_logits(net, hist).astype(np.float64) for net in three.nets_]
    np.testing.assert_array_equal(z[0], one._net_logits(one.net_, hist))
    assert not np.allclose(z[0], z[1])  # another seed, another network
    logsm = [x - x.max(1, keepdims=True) for x in z]
    logsm = [x - np.log(np.exp(x).sum(1, keepdims=True)) for x in logsm]
    np.testing.assert_allclose(
        three.score_histories(hist), np.mean(logsm, axis=0).astype(np.float32), rtol=1e-6
    )
    again = get_recommender("sasrec", **params, n_seeds=3).fit(split.search, split.valid_targets)
    np.testing.assert_array_equal(again.score_histories(hist), three.score_histories(hist))
    # the refit trains every seed for the epoch count found, and never validates
    refit = type(three)(**three.frozen_params()).fit(split.refit)
    assert len(refit.nets_) == 3 and len(refit.history_) == three.best_epoch_
    assert all("valid_ndcg@10" not in h for h in refit.history_)


@pytest.mark.slow
def test_seed_averaged_sasrec_round_trip(split: Any, tmp_path: Path) -> None:
    rec = get_recommender("sasrec", **TINY_SASREC, n_seeds=2).fit(split.search)
    loaded = load_recommender(save_recommender(rec, tmp_path / "s.recommender"))
    assert len(loaded.nets_) == 2
    hist = [split.refit.history(int(r)) for r in split.evaluated[:10]]
    np.testing.assert_array_equal(loaded.score_histories(hist), rec.score_histories(hist))


@pytest.mark.slow
def test_label_smoothing_changes_the_training(split: Any) -> None:
    hist = [split.refit.history(int(r)) for r in split.evaluated[:20]]
    plain = get_recommender("sasrec", **TINY_SASREC).fit(split.search)
    smooth = get_recommender("sasrec", **TINY_SASREC, label_smoothing=0.2).fit(split.search)
    # the same seed and batches: only the smoothed targets differ
    assert not np.allclose(plain.score_histories(hist), smooth.score_histories(hist))
    with pytest.raises(ConfigError, match="label_smoothing must be a number in"):
        get_recommender("sasrec", label_smoothing=1.0).fit(split.search)
    with pytest.raises(ConfigError, match="n_seeds"):
        get_recommender("sasrec", n_seeds=0).fit(split.search)


@pytest.mark.slow
def test_item_categories_tie_items_of_one_category(split: Any, tmp_path: Path) -> None:
    items = amazon_beauty_items()
    hist = [split.refit.history(int(r)) for r in split.evaluated[:20]]
    params = {**TINY_SASREC, "item_categories": True}
    rec = get_recommender("sasrec", **params).fit(split.search, items=items)
    # every item of the slice has brand/category ids: each row holds its own tokens
    vocab = split.search.items
    row = 1 + int(np.flatnonzero(vocab == vocab[0])[0])
    own = items.set_index("item_id").loc[str(vocab[0]), "category"].split()
    names = [rec.category_tokens_[t - 1] for t in rec.item_tokens_[row] if t > 0]
    assert sorted(names) == sorted(own) and rec.item_tokens_[0].sum() == 0
    # two items with the same tokens and untrained (zero) ids get the same embedding
    net = rec.net_
    with torch_no_grad():
        net.item.weight.zero_()
        table = net.table().numpy()
    same = [i for i in range(1, len(table)) if (rec.item_tokens_[i] == rec.item_tokens_[row]).all()]
    assert np.allclose(table[same], table[row]) and np.abs(table[row]).sum() > 0
    # round trip, and a model without the items table is the plain model
    fresh = get_recommender("sasrec", **params).fit(split.search, items=items)
    loaded = load_recommender(save_recommender(fresh, tmp_path / "c.recommender"))
    np.testing.assert_array_equal(loaded.score_histories(hist), fresh.score_histories(hist))
    assert loaded.category_tokens_ == fresh.category_tokens_
    plain = get_recommender("sasrec", **TINY_SASREC).fit(split.search)
    alone = get_recommender("sasrec", **params).fit(split.search)
    assert alone.item_tokens_ is None
    np.testing.assert_array_equal(alone.score_histories(hist), plain.score_histories(hist))
    assert not np.allclose(fresh.score_histories(hist), plain.score_histories(hist))
    with pytest.raises(ConfigError, match="item_categories must be True or False"):
        get_recommender("sasrec", item_categories="yes").fit(split.search)


def test_category_tokens_split_paths_and_skip_items_without_one() -> None:
    from retention.strategies._sasrec import _category_tokens

    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "a"],
            "category": ["Home > Kitchen > Mugs", None, "home|garden", "ignored duplicate"],
        }
    )
    names, tokens = _category_tokens(items, pd.Index(["c", "a", "b", "z"], dtype=object))
    assert names == ["garden", "home", "kitchen", "mugs"]
    rows = [sorted(names[t - 1] for t in r if t > 0) for r in tokens]
    assert rows == [[], ["garden", "home"], ["home", "kitchen", "mugs"], [], []]
    assert _category_tokens(items.drop(columns="category"), pd.Index(["a"])) == ([], None)
    assert _category_tokens(None, pd.Index(["a"])) == ([], None)


def torch_no_grad() -> Any:
    import torch

    return torch.no_grad()


def test_blend_chooses_weights_on_validation_and_refits_with_them(split: Any) -> None:
    a = get_recommender("transition").fit(split.search)
    b = get_recommender("popularity").fit(split.search)
    blend = BlendRecommender(members=[("t", a), ("p", b)], prefit=True, grid_step=0.5)
    blend.fit(split.search, split.valid_targets)
    assert blend.members_[0][1] is a  # prefit: used as given
    assert sum(blend.weights_) == pytest.approx(1.0) and len(blend.weights_) == 2
    frozen = blend.frozen_params()
    assert frozen["weights"] == blend.weights_ and frozen["prefit"] is False
    refit = BlendRecommender(**frozen).fit(split.refit)
    assert refit.weights_ == blend.weights_
    probs = refit.item_probabilities([split.refit.history(0)])
    assert probs.shape == (1, split.refit.n_items) and probs.sum() == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ConfigError, match="weights must be 2 numbers"):
        BlendRecommender(members=["transition", "popularity"], weights=[1.0]).fit(split.search)


def test_unknown_customer_gets_popular_items_said_as_such(split: Any) -> None:
    rec = get_recommender("transition").fit(split.refit)
    out = rec.recommend(["nobody"], k=5)
    assert len(out) == 5 and out["rank"].tolist() == [1, 2, 3, 4, 5]
    assert out["reason"].str.contains("new customer").all()
    popular = np.argsort(-rec.popularity_, kind="stable")[:5]
    assert out["item_id"].tolist() == [str(rec.items_[c]) for c in popular]


def test_candidates_limit_what_is_recommended(split: Any) -> None:
    rec = get_recommender("transition").fit(split.refit)
    allowed = [str(i) for i in split.refit.items[:40]]
    user = str(split.refit.users[0])
    out = rec.recommend([user], k=10, candidates=allowed)
    assert set(out["item_id"]) <= set(allowed) and len(out) > 0


def test_unknown_recommender_and_bad_fit_input() -> None:
    with pytest.raises(ConfigError, match="Unknown recommender 'nope'"):
        get_recommender("nope")
    with pytest.raises(ConfigError, match="ItemSequences"):
        get_recommender("transition").fit(pd.DataFrame())


# ------------------------------------------------------------------------------------ artifacts
@pytest.mark.parametrize("name", ["transition", "ease", "als", "sasrec", "blend"])
def test_save_and_load_round_trip(name: str, split: Any, tmp_path: Path) -> None:
    rec = get_recommender(name, **FAST.get(name, {})).fit(split.search, split.valid_targets)
    path = save_recommender(rec, tmp_path / "r.recommender", {"cutoff": pd.Timestamp("2011-01-01")})
    loaded = load_recommender(path)
    hist = [split.refit.history(int(r)) for r in split.evaluated[:10]]
    np.testing.assert_array_equal(loaded.score_histories(hist), rec.score_histories(hist))
    users = [str(u) for u in split.search.users[:3]]
    pd.testing.assert_frame_equal(loaded.recommend(users, k=3), rec.recommend(users, k=3))
    meta = read_recommender_metadata(path)
    assert meta["model_id"] == recommender_digest(rec) and meta["kind"] == "recommender"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert not any(n.endswith((".pkl", ".pickle")) for n in names)


def test_a_changed_or_foreign_artifact_is_refused(split: Any, tmp_path: Path) -> None:
    rec = get_recommender("transition").fit(split.search)
    path = save_recommender(rec, tmp_path / "r.recommender")
    # change one payload file: its hash no longer matches
    bad = tmp_path / "bad.recommender"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item.endswith("popularity_.npy"):
                data = data[:-8] + bytes(b ^ 0xFF for b in data[-8:])
            dst.writestr(item, data)
    with pytest.raises(ModelError, match="does not match its SHA-256"):
        load_recommender(bad)
    # an artifact of another version is refused as incompatible
    old = tmp_path / "old.recommender"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "metadata.json":
                data = data.replace(b'"format_version": 1', b'"format_version": 99')
            dst.writestr(item, data)
    with pytest.raises(IncompatibleModelError, match="cannot load it"):
        load_recommender(old)
    other = tmp_path / "x.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("metadata.json", '{"format_version": 2}')
    with pytest.raises(ModelError, match="not a recommender artifact"):
        load_recommender(other)
    with pytest.raises(ModelError, match="No recommender file"):
        load_recommender(tmp_path / "missing.recommender")


# ---------------------------------------------------------------------------------- cold start
COLD_ITEMS = pd.DataFrame(
    {
        "item_id": ["w1", "w2", "g1", "g2", "k1", "new"],
        "title": [
            "red wine glass",
            "white wine glass",
            "garden hose reel",
            "lawn mower blade",
            "kitchen knife set",
            "crystal wine glasses, set of 4",
        ],
    }
)


@pytest.fixture(scope="module")
def cold() -> tuple[ItemSequences, Any]:
    # nobody has bought "new" yet: it is in the catalogue (the items table) only
    seqs = ItemSequences.from_lists(
        {"a": ["g1", "g2"], "b": ["g2", "g1", "k1"], "c": ["w2", "k1"]},
        items=COLD_ITEMS["item_id"].tolist(),
    )
    rec = get_recommender("text", window_days=None).fit(seqs, items=COLD_ITEMS)
    return seqs, rec


@pytest.mark.slow
def test_cold_start_recommends_an_item_nobody_bought(cold: tuple[ItemSequences, Any]) -> None:
    _, rec = cold
    out = rec.recommend(["someone"], k=2, histories={"someone": ["w1"]})
    assert len(out) == 2
    assert set(out["item_id"]) == {"w2", "new"}  # the wine glasses, the unsold one included
    assert out["reason"].iloc[0] == "similar to red wine glass you bought"


@pytest.mark.slow
def test_cold_start_gives_k_items_to_a_customer_it_never_saw(
    cold: tuple[ItemSequences, Any],
) -> None:
    _, rec = cold
    out = rec.recommend(["stranger"], k=4)
    assert len(out) == 4 and out["reason"].str.contains("new customer").all()
    one_event = rec.recommend(["once"], k=4, histories={"once": ["g1"]})
    assert len(one_event) == 4 and one_event["item_id"].iloc[0] == "g2"


@pytest.mark.slow
def test_text_recommender_round_trip(cold: tuple[ItemSequences, Any], tmp_path: Path) -> None:
    seqs, rec = cold
    loaded = load_recommender(save_recommender(rec, tmp_path / "t.recommender"))
    hist = seqs.histories()
    np.testing.assert_array_equal(loaded.score_histories(hist), rec.score_histories(hist))


def test_text_recommender_needs_items() -> None:
    seqs = ItemSequences.from_lists({"a": ["x", "y"]})
    with pytest.raises(ConfigError, match="items side table"):
        get_recommender("text").fit(seqs)
