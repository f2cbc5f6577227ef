"""BG/NBD and Pareto/NBD as RetentionModels on small CutoffFrames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import retention.data
from retention.exceptions import ConfigError, DataError, NotFittedError, RetentionWarning
from retention.features import CutoffFrame
from retention.models import BetaGeo, BGNBDModel, ParetoNBDModel, get_model, rfm_summary

FILES = Path(retention.data.__file__).parent / "files"


def _events(rows: list[tuple[str, str, float]], event_type: str = "purchase") -> pd.DataFrame:
    ev = pd.DataFrame(rows, columns=["user_id", "ts", "amount"])
    ev["ts"] = pd.to_datetime(ev["ts"])
    ev["event_type"] = event_type
    return ev.sort_values(["user_id", "ts"]).reset_index(drop=True)


TINY = _events(
    [
        ("a", "2024-01-02", 10.0),
        ("a", "2024-01-20", 12.0),
        ("a", "2024-02-10", 11.0),
        ("a", "2024-03-05", 13.0),
        ("b", "2024-01-10", 50.0),
        ("c", "2024-01-05", 20.0),
        ("c", "2024-01-25", 30.0),
        ("d", "2024-01-03", 5.0),
        ("d", "2024-01-04", 7.0),
        ("e", "2024-02-20", 40.0),
        ("e", "2024-03-01", 60.0),
    ]
)


#: TINY has five customers: every fit on it is thin data, and degenerate too (the warnings say
#: so; they are asserted in test_tiny_frame_contract and in test_btyd.py). The tests marked with
#: this check other things on it, so they filter those warnings locally.
TINY_DATA = pytest.mark.filterwarnings("ignore::retention.exceptions.RetentionWarning")


def tiny_frame(cutoff: str = "2024-03-15", events: pd.DataFrame = TINY) -> CutoffFrame:
    cut = pd.Timestamp(cutoff)
    before = events[events["ts"] < cut].reset_index(drop=True)
    users = pd.Index(sorted(before["user_id"].unique()), name="user_id")
    return CutoffFrame(cut, 28, pd.DataFrame(index=users), None, before)


@TINY_DATA
@pytest.mark.parametrize("name", ["bgnbd", "paretonbd"])
def test_tiny_frame_contract(name: str) -> None:
    frame = tiny_frame()
    model = get_model(name)
    with pytest.raises(NotFittedError):
        model.predict_proba(frame)
    label = "BG/NBD" if name == "bgnbd" else "Pareto/NBD"
    with pytest.warns(RetentionWarning, match=f"The {label} model is fitted on thin data: 4 of 5"):
        assert model.fit([frame]) is model
    assert model.params_ is not None and np.isfinite(list(model.params_.values())).all()
    p = model.predict_proba(frame)
    assert p.shape == (5,) and np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    d = model.predict_details(frame)
    assert list(d.columns) == ["p_retained", "p_alive", "expected_purchases", "monetary", "clv"]
    assert d.index.equals(frame.users)
    np.testing.assert_allclose(d["p_retained"], p)
    report = model.fit_report(frame)
    # five customers: the fit is degenerate, so P(alive) is unknown rather than a number
    assert report["degenerate"] and report["p_alive"] == "unavailable" and report["reason"]
    assert d["p_alive"].isna().all()
    assert np.isfinite(d.drop(columns="p_alive").to_numpy()).all()
    assert (d["p_retained"] <= d["expected_purchases"] + 1e-12).all()
    np.testing.assert_allclose(d["clv"], d["expected_purchases"] * d["monetary"])
    # the most active recent buyer is the likeliest to come back; the one-off buyer of
    # mid-January is less likely than a, who bought four times up to early March
    assert p[0] > p[1]


@TINY_DATA
def test_matches_estimator_and_population_order() -> None:
    frame = tiny_frame()
    model = BGNBDModel(unit_days=7.0).fit([frame])
    s = rfm_summary(frame.events, frame.cutoff, unit_days=7.0)
    bg = BetaGeo().fit(s["frequency"], s["recency"], s["T"])
    assert model.params_ == pytest.approx(bg.params_)
    expected = 1 - bg.probability_no_purchase(4.0, s["frequency"], s["recency"], s["T"])
    np.testing.assert_allclose(model.predict_proba(frame), expected, rtol=1e-12)
    # the population's order, not the events', fixes the output order
    order = ["e", "c", "a", "d", "b"]
    shuffled = CutoffFrame(
        frame.cutoff, 28, pd.DataFrame(index=pd.Index(order)), None, frame.events
    )
    p = pd.Series(model.predict_proba(frame), index=frame.users)
    np.testing.assert_allclose(model.predict_proba(shuffled), p[order].to_numpy())


@TINY_DATA
def test_fit_uses_latest_frame_and_refit_on_predict() -> None:
    early, late = tiny_frame("2024-02-15"), tiny_frame("2024-03-15")
    m = BGNBDModel().fit([late, early])
    assert m.cutoff_ == late.cutoff and m.train_cutoffs_ == ["2024-03-15", "2024-02-15"]
    m_valid = BGNBDModel().fit([early], valid=late)
    assert m_valid.params_ == pytest.approx(m.params_)
    # refit on the scored frame's history vs reuse the parameters learned at the early cutoff
    fixed = BGNBDModel(refit_on_predict=False).fit([early])
    refit = BGNBDModel(refit_on_predict=True).fit([early])
    assert not np.allclose(fixed.predict_proba(late), refit.predict_proba(late))
    np.testing.assert_allclose(refit.predict_proba(late), m.predict_proba(late))


@TINY_DATA
def test_events_after_cutoff_do_not_leak() -> None:
    frame = tiny_frame()
    future = _events([("b", "2024-03-20", 99.0), ("a", "2024-03-15", 5.0)])
    leaky = CutoffFrame(frame.cutoff, 28, frame.features, None, pd.concat([frame.events, future]))
    m = BGNBDModel().fit([frame])
    np.testing.assert_allclose(m.predict_proba(leaky), m.predict_proba(frame))


@TINY_DATA
def test_customer_without_events_and_discounting() -> None:
    frame = tiny_frame()
    users = pd.Index([*frame.users, "new"])
    with_new = CutoffFrame(frame.cutoff, 28, pd.DataFrame(index=users), None, frame.events)
    m = BGNBDModel(discount_rate=0.05).fit([frame])
    d = m.predict_details(with_new)
    assert np.isfinite(d.drop(columns="p_alive").to_numpy()).all()
    assert m.fit_report(with_new)["degenerate"] and d["p_alive"].isna().all()
    alive = m._details(with_new, mask_degenerate=False)["p_alive"]
    assert alive["new"] == 1.0  # a customer new at the cutoff
    plain = BGNBDModel().fit([frame]).predict_details(frame)
    assert (d.loc[frame.users, "clv"] < plain["clv"]).all()


@TINY_DATA
def test_monetary_falls_back_without_two_positive_net_values() -> None:
    ev = _events([("a", "2024-01-02", 10.0), ("a", "2024-02-01", 30.0), ("b", "2024-01-10", 5.0)])
    ev = pd.concat([ev, _events([("b", "2024-01-12", 5.0)], event_type="return")])
    frame = tiny_frame("2024-03-01", ev.sort_values(["user_id", "ts"]).reset_index(drop=True))
    with pytest.warns(RetentionWarning, match=r"Gamma-Gamma spend model could not be fitted"):
        m = ParetoNBDModel().fit([frame])
    assert m.gamma_gamma_ is None
    d = m.predict_details(frame)
    # b returned everything: only a has a positive net value, 20 per purchase day, for everyone
    np.testing.assert_allclose(d["monetary"], 20.0)


@TINY_DATA
def test_errors() -> None:
    frame = tiny_frame()
    with pytest.raises(ConfigError, match="unit_days"):
        BGNBDModel(unit_days=0).fit([frame])
    with pytest.raises(ConfigError, match="penalizer must be a number >= 0; got -1"):
        BGNBDModel(penalizer=-1).fit([frame])
    with pytest.raises(ConfigError, match="discount_rate"):
        BGNBDModel(discount_rate=-0.1).fit([frame])
    with pytest.raises(ConfigError, match="at least one CutoffFrame"):
        BGNBDModel().fit([])
    views = CutoffFrame(frame.cutoff, 28, frame.features, None, TINY.assign(event_type="view"))
    with pytest.raises(DataError, match="No purchase events"):
        BGNBDModel().fit([views])


@pytest.mark.parametrize("cls", [BGNBDModel, ParetoNBDModel])
def test_ranks_cdnow_holdout_purchases(cls: type) -> None:
    """CDNOW sample, calibration to 1997-09-30, label: any purchase in the next 26 weeks."""
    raw = pd.read_csv(FILES / "cdnow_sample.csv.gz", dtype={"id": str, "date": str})
    ev = pd.DataFrame(
        {
            "user_id": raw["id"],
            "ts": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "event_type": "purchase",
            "amount": raw["dollars"].astype(float),
        }
    )
    cut, horizon = pd.Timestamp("1997-10-01"), 182
    before = ev[ev["ts"] < cut].reset_index(drop=True)
    users = pd.Index(sorted(before["user_id"].unique()))
    window = ev[(ev["ts"] >= cut) & (ev["ts"] < cut + pd.Timedelta(days=horizon))]
    label = users.isin(window["user_id"]).astype(int)
    frame = CutoffFrame(cut, horizon, pd.DataFrame(index=users), None, before)
    p = cls().fit([frame]).predict_proba(frame)
    assert roc_auc_score(label, p) > 0.75
    # roughly calibrated on average (observed 25.1%; BG/NBD predicts 22.0%, Pareto/NBD 19.6%:
    # both under-forecast this holdout a little, as their expected purchase counts do)
    assert 0.75 * label.mean() < p.mean() < 1.1 * label.mean()


def _log(n: int, seed: int, p_drop: tuple[float, float] | None) -> pd.DataFrame:
    """Purchases of ``n`` customers over a year: Poisson buyers (rate ~ Gamma(1, 1/20) a day)
    who drop out after a purchase with p ~ Beta(*p_drop), or never (``p_drop=None``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        rate = rng.gamma(1.0, 1 / 20)
        drop = rng.beta(*p_drop) if p_drop else 0.0
        t = rng.uniform(0, 120)
        while t < 365:
            rows.append((f"u{u}", pd.Timestamp("2023-01-01") + pd.Timedelta(days=t), 20.0))
            if rng.uniform() < drop:
                break
            t += rng.exponential(1 / rate)
    return _events([(u, str(ts), a) for u, ts, a in rows])


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "paretonbd"])
def test_degenerate_fit_detected_on_a_log_where_nobody_drops_out(name: str) -> None:
    frame = tiny_frame("2024-01-01", _log(600, seed=1, p_drop=None))
    model = get_model(name)
    with pytest.warns(RetentionWarning, match="degenerate.*nobody seems to drop out"):
        model.fit([frame])
    report = model.fit_report(frame)
    assert report["degenerate"] and report["nbd"] and report["p_alive"] == "unavailable"
    assert "collapse to 0" in report["reason"]
    d = model.predict_details(frame)
    assert d["p_alive"].isna().all() and d["p_retained"].between(0, 1).all()


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "paretonbd"])
def test_fit_not_degenerate_where_customers_drop_out(name: str) -> None:
    frame = tiny_frame("2024-01-01", _log(600, seed=2, p_drop=(1.0, 3.0)))
    model = get_model(name).fit([frame])  # no warning: filterwarnings = error
    report = model.fit_report(frame)
    assert not report["degenerate"] and not report["nbd"] and report["reason"] is None
    p_alive = model.predict_details(frame)["p_alive"]
    assert p_alive.between(0, 1).all() and p_alive.min() < 0.5


def test_mbgnbd_one_time_buyers_can_be_gone() -> None:
    frame = tiny_frame("2024-01-01", _log(600, seed=2, p_drop=(1.0, 3.0)))
    s = rfm_summary(frame.events, frame.cutoff, unit_days=7.0)
    bg = get_model("bgnbd").fit([frame]).predict_details(frame)["p_alive"]
    mbg = get_model("mbgnbd").fit([frame]).predict_details(frame)["p_alive"]
    once = s.index[s["frequency"] == 0]
    assert (bg[once] == 1.0).all()  # BG/NBD: a one-time buyer is alive by construction
    assert mbg[once].median() < 0.9
    # the longer a one-time buyer has been silent, the likelier gone
    t = s.loc[once, "T"]
    assert mbg[t.idxmax()] < mbg[t.idxmin()]


def test_clv_is_net_of_returns_and_not_floored_at_the_population_mean() -> None:
    log = _log(300, seed=3, p_drop=(1.0, 3.0))
    rng = np.random.default_rng(0)
    log["amount"] = rng.lognormal(3.0, 0.8, len(log)).round(2)
    extra = _events(
        [
            ("whale", "2023-03-01", 5000.0),  # bought once, big, and returned it all
            ("small", "2023-03-01", 2.0),  # bought once, very little
        ]
    )
    back = _events([("whale", "2023-03-03", 5000.0)], event_type="return")
    ev = pd.concat([log, extra, back]).sort_values(["user_id", "ts"]).reset_index(drop=True)
    frame = tiny_frame("2024-01-01", ev)
    m = get_model("mbgnbd").fit([frame])
    d = m.predict_details(frame)
    gg = m.gamma_gamma_
    population_mean = gg.population_mean()
    # the whale's 5,000 were returned: its value is below the population mean, far below what
    # its gross spend would give; the small one-time buyer is not floored at the mean
    gross = gg.conditional_expected_average_profit(1, 5000.0)
    assert d.loc["whale", "monetary"] < min(population_mean, 0.1 * float(gross))
    assert d.loc["small", "monetary"] < population_mean
    np.testing.assert_allclose(d["clv"], d["expected_purchases"] * d["monetary"])
    # the same history without the return is worth more
    kept = tiny_frame("2024-01-01", pd.concat([log, extra]).sort_values(["user_id", "ts"]))
    d_kept = get_model("mbgnbd").fit([kept]).predict_details(kept)
    assert d.loc["whale", "clv"] < 0.1 * d_kept.loc["whale", "clv"]
