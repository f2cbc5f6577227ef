"""BTYD estimators: published CDNOW values, closed forms, consistency, odd inputs, errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import hyp2f1

import retention.data
from retention.exceptions import (
    ConfigError,
    DataError,
    NotFittedError,
    RetentionWarning,
    SchemaError,
)
from retention.models import BetaGeo, GammaGamma, ModifiedBetaGeo, ParetoNBD, rfm_summary
from retention.models._btyd import (
    MIN_REPEAT_CUSTOMERS,
    _bgnbd_loglik,
    _mbgnbd_loglik,
    _pareto_loglik,
)

FILES = Path(retention.data.__file__).parent / "files"
DATA = Path(__file__).parent / "data"


def cdnow_sample_events() -> pd.DataFrame:
    raw = pd.read_csv(FILES / "cdnow_sample.csv.gz", dtype={"id": str, "date": str})
    return pd.DataFrame(
        {
            "user_id": raw["id"],
            "ts": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "event_type": "purchase",
            "amount": raw["dollars"].astype(float),
        }
    )


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """FHL calibration: 39 weeks to 1997-09-30 inclusive (cutoff 1997-10-01), in weeks."""
    return rfm_summary(cdnow_sample_events(), "1997-10-01", unit_days=7.0)


@pytest.fixture(scope="module")
def bg_cdnow(cdnow: pd.DataFrame) -> BetaGeo:
    return BetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture(scope="module")
def pnbd_cdnow(cdnow: pd.DataFrame) -> ParetoNBD:
    return ParetoNBD().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture(scope="module")
def retail() -> pd.DataFrame:
    return pd.read_csv(DATA / "online_retail_rfm_2011-09-10.csv", dtype={"user_id": str})


def _rfm(s: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        s["frequency"].to_numpy(float),
        s["recency"].to_numpy(float),
        s["T"].to_numpy(float),
    )


# ------------------------------------------------------------------ rfm_summary


def test_rfm_summary_conventions() -> None:
    ev = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "c"],
            "ts": pd.to_datetime(
                [
                    "2024-01-01 09:00",
                    "2024-01-01 18:00",  # same day: merged, amounts summed
                    "2024-01-15 00:00",
                    "2024-02-01 00:00",  # at the cutoff: excluded
                    "2024-01-10 00:00",
                    "2024-01-20 00:00",  # a view, not a purchase
                    "2024-02-03 00:00",  # after the cutoff only: not in the population
                ]
            ),
            "event_type": ["purchase"] * 5 + ["view", "purchase"],
            "amount": [10.0, 5.0, 30.0, 99.0, 7.0, 1.0, 3.0],
        }
    )
    s = rfm_summary(ev, "2024-02-01", unit_days=7.0)
    assert list(s.index) == ["a", "b"]
    assert s.loc["a", "frequency"] == 1 and s.loc["b", "frequency"] == 0
    assert s.loc["a", "recency"] == pytest.approx(14 / 7)
    # the period's last day is 2024-01-31: T = 30 days for a, 21 for b
    assert s.loc["a", "T"] == pytest.approx(30 / 7) and s.loc["b", "T"] == pytest.approx(21 / 7)
    assert s.loc["a", "monetary_value"] == 30.0 and s.loc["b", "monetary_value"] == 0.0
    assert rfm_summary(ev, "2024-02-01", monetary="mean_all").loc["a", "monetary_value"] == 22.5
    exact = rfm_summary(ev, "2024-02-01", merge_same_day=False)
    assert exact.loc["a", "frequency"] == 2
    assert exact.loc["a", "T"] == pytest.approx(30 + 15 / 24)  # to the cutoff itself
    assert rfm_summary(ev, "2024-02-01", event_type=None).loc["b", "frequency"] == 1
    assert rfm_summary(ev, "2023-01-01").empty


def test_rfm_summary_errors() -> None:
    with pytest.raises(SchemaError, match="user_id and ts"):
        rfm_summary(pd.DataFrame({"user_id": ["a"]}), "2024-01-01")
    ev = pd.DataFrame({"user_id": ["a"], "ts": pd.to_datetime(["2024-01-01"])})
    with pytest.raises(ConfigError, match="not a date"):
        rfm_summary(ev, "yesterday-ish")
    with pytest.raises(ConfigError, match="unit_days"):
        rfm_summary(ev, "2024-02-01", unit_days=0)


def test_rfm_summary_warns_about_unreadable_amounts_counted_as_zero() -> None:
    ev = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-09", "2024-01-02"]),
            "event_type": "purchase",
            "amount": ["10.5", "n/a", None, "abc"],
        }
    )
    match = r"2 of 4 purchase amounts before cutoff 2024-02-01 cannot be read .*'n/a'.* as 0"
    with pytest.warns(RetentionWarning, match=match):
        s = rfm_summary(ev, "2024-02-01", monetary="mean_all")
    # 'n/a' and 'abc' count as 0, and so does the missing amount (silently: it is documented)
    assert s.loc["a", "monetary_value"] == pytest.approx(10.5 / 3)
    assert s.loc["b", "monetary_value"] == 0.0
    # only amounts the summary uses count: before 2024-01-02 every amount is readable, so no
    # warning (filterwarnings = error would turn one into a failure)
    assert rfm_summary(ev, "2024-01-02", monetary="mean_all").loc["a", "monetary_value"] == 10.5


# ------------------------------------------------------------------ published values


def test_bgnbd_reproduces_fader_hardie_lee_2005(cdnow: pd.DataFrame, bg_cdnow: BetaGeo) -> None:
    assert len(cdnow) == 2357
    p = bg_cdnow.params_
    assert p is not None
    got = {k: round(v, 3) for k, v in p.items()}
    assert got == {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    assert round(bg_cdnow.log_likelihood_, 1) == -9582.4
    assert bg_cdnow.converged_ and not bg_cdnow.degenerate_


def test_paretonbd_reproduces_fader_hardie_lee_2005(pnbd_cdnow: ParetoNBD) -> None:
    p = pnbd_cdnow.params_
    assert p is not None
    got = {k: round(v, 3) for k, v in p.items()}
    assert got == {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
    assert pnbd_cdnow.converged_


def test_gamma_gamma_matches_fader_hardie(cdnow: pd.DataFrame) -> None:
    """Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value" (and FHL 2005b): on the
    946 CDNOW-sample customers with repeat purchases in the 39 calibration weeks, with the mean
    value of the repeat purchases, p = 6.25, q = 3.74, gamma = 15.44 (published to 2 decimals;
    we compare to 0.01)."""
    gg = GammaGamma().fit(cdnow["frequency"], cdnow["monetary_value"])
    assert gg.n_customers_ == 946
    assert gg.params_ is not None
    assert gg.params_["p"] == pytest.approx(6.25, abs=0.01)
    assert gg.params_["q"] == pytest.approx(3.74, abs=0.01)
    assert gg.params_["v"] == pytest.approx(15.44, abs=0.01)
    # expected spend shrinks each customer's mean towards the population mean
    pop = gg.population_mean()
    e = gg.conditional_expected_average_profit([0, 1, 10, 1], [0.0, 100.0, 100.0, 5.0])
    assert e[0] == pytest.approx(pop)
    assert pop < e[1] < e[2] < 100.0 and 5.0 < e[3] < pop


# ------------------------------------------------------------------ closed forms and consistency


def test_bgnbd_predictions_match_closed_forms(cdnow: pd.DataFrame, bg_cdnow: BetaGeo) -> None:
    """FHL (2005a) eq. (10) and (11), written with 2F1, at the fitted parameters."""
    assert bg_cdnow.params_ is not None
    r, alpha, a, b = bg_cdnow.params_.values()
    x, tx, T = _rfm(cdnow.iloc[::7])
    t = 13.0
    delta = (x > 0).astype(float)
    ratio = a / np.maximum(b + x - 1, 1e-12) * ((alpha + T) / (alpha + tx)) ** (r + x)
    p_alive = 1.0 / (1.0 + delta * ratio)
    np.testing.assert_allclose(
        bg_cdnow.conditional_probability_alive(x, tx, T), p_alive, rtol=1e-10
    )
    z = t / (alpha + T + t)
    num = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    expected = (a + b + x - 1) / (a - 1) * num * p_alive
    np.testing.assert_allclose(
        bg_cdnow.conditional_expected_purchases(t, x, tx, T), expected, rtol=1e-7
    )
    ts = np.array([1.0, 13.0, 39.0, 78.0])
    pop = (
        (a + b - 1)
        / (a - 1)
        * (1 - (alpha / (alpha + ts)) ** r * hyp2f1(r, b, a + b - 1, ts / (alpha + ts)))
    )
    np.testing.assert_allclose(bg_cdnow.expected_purchases(ts), pop, rtol=1e-7)


def test_paretonbd_p_alive_matches_hypergeometric_form(
    cdnow: pd.DataFrame, pnbd_cdnow: ParetoNBD
) -> None:
    """Fader & Hardie (2005), "A Note on Implementing the Pareto/NBD Model in MATLAB", eq. (2)."""
    assert pnbd_cdnow.params_ is not None
    r, alpha, s, beta = pnbd_cdnow.params_.values()
    x, tx, T = _rfm(cdnow.iloc[::5])
    k = r + s + x
    if alpha >= beta:
        c1, c2, big = alpha - beta, s + 1, alpha
    else:
        c1, c2, big = beta - alpha, r + x, beta
    a0 = (
        hyp2f1(k, c2, k + 1, c1 / (big + tx)) / (big + tx) ** k
        - hyp2f1(k, c2, k + 1, c1 / (big + T)) / (big + T) ** k
    )
    p_alive = 1.0 / (1.0 + s / k * (alpha + T) ** (r + x) * (beta + T) ** s * a0)
    np.testing.assert_allclose(
        pnbd_cdnow.conditional_probability_alive(x, tx, T), p_alive, rtol=1e-6
    )


@pytest.mark.parametrize("model", ["bg", "pnbd"])
def test_no_purchase_probability_is_a_likelihood_ratio(
    model: str, cdnow: pd.DataFrame, bg_cdnow: BetaGeo, pnbd_cdnow: ParetoNBD
) -> None:
    """P(no purchase in (T, T+t] | x, t_x, T) = L(x, t_x, T + t) / L(x, t_x, T)."""
    est = bg_cdnow if model == "bg" else pnbd_cdnow
    loglik = _bgnbd_loglik if model == "bg" else _pareto_loglik
    assert est.params_ is not None
    params = np.array(list(est.params_.values()))
    x, tx, T = _rfm(cdnow.iloc[::11])
    for t in (0.5, 13.0, 200.0):
        ratio = np.exp(loglik(params, x, tx, T + t)[0] - loglik(params, x, tx, T)[0])
        np.testing.assert_allclose(est.probability_no_purchase(t, x, tx, T), ratio, rtol=1e-5)
    pa = est.conditional_probability_alive(x, tx, T)
    p1 = est.probability_of_purchase(13.0, x, tx, T)
    e1 = est.conditional_expected_purchases(13.0, x, tx, T)
    assert (p1 <= pa + 1e-12).all() and (p1 <= e1 + 1e-12).all()  # P(N >= 1) <= E[N]


@pytest.mark.parametrize("cls", [BetaGeo, ParetoNBD])
def test_gradient_matches_finite_differences(cls: type, cdnow: pd.DataFrame) -> None:
    x, tx, T = _rfm(cdnow.iloc[::13])
    loglik = _bgnbd_loglik if cls is BetaGeo else _pareto_loglik
    params = np.array([0.4, 6.0, 0.9, 3.0] if cls is BetaGeo else [0.5, 9.0, 0.7, 13.0])
    _, grad = loglik(params, x, tx, T)
    for j in range(4):
        h = 1e-6 * params[j]
        up, dn = params.copy(), params.copy()
        up[j] += h
        dn[j] -= h
        fd = (loglik(up, x, tx, T)[0].sum() - loglik(dn, x, tx, T)[0].sum()) / (2 * h)
        assert grad[j].sum() == pytest.approx(fd, rel=1e-5)


def test_clv_and_discounting(cdnow: pd.DataFrame, bg_cdnow: BetaGeo) -> None:
    gg = GammaGamma().fit(cdnow["frequency"], cdnow["monetary_value"])
    x, tx, T = _rfm(cdnow.iloc[:50])
    m = cdnow["monetary_value"].to_numpy()[:50]
    clv = gg.customer_lifetime_value(bg_cdnow, x, tx, T, m, 52.0)
    expected = bg_cdnow.conditional_expected_purchases(52.0, x, tx, T)
    np.testing.assert_allclose(clv, expected * gg.conditional_expected_average_profit(x, m))
    disc = gg.customer_lifetime_value(bg_cdnow, x, tx, T, m, 52.0, discount_rate=0.01)
    assert (disc < clv).all() and (disc > clv / 1.01**52).all()
    longer = gg.customer_lifetime_value(bg_cdnow, x, tx, T, m, 104.0, discount_rate=0.01)
    assert (longer > disc).all()


# ------------------------------------------------------------------ Online Retail


@pytest.mark.parametrize("cls", [BetaGeo, ParetoNBD])
def test_converges_on_online_retail(cls: type, retail: pd.DataFrame) -> None:
    """lifetimes 0.11.3 raises ConvergenceError here (BG/NBD): the maximum lies on the edge of
    the parameter space (nobody seems to drop out), which we reach and report."""
    x, tx, T = _rfm(retail)
    dropout = r"a=\S+ \(towards its lower bound 1e-08\)" if cls is BetaGeo else r"s=\S+ \(towards"
    with pytest.warns(RetentionWarning, match=f"degenerate.*{dropout}.*nobody seems to drop out"):
        est = cls().fit(x, tx, T)
    assert est.converged_ and est.degenerate_
    params = np.array(list(est.params_.values()))
    assert np.isfinite(params).all() and (params > 0).all()
    assert np.isfinite(est.log_likelihood_)
    pa = est.conditional_probability_alive(x, tx, T)
    e = est.conditional_expected_purchases(13.0, x, tx, T)
    p = est.probability_of_purchase(13.0, x, tx, T)
    for v in (pa, e, p):
        assert np.isfinite(v).all()
    assert ((pa > 0) & (pa <= 1)).all()
    assert ((p > 0) & (p < 1)).all() and (e > 0).all()
    # more repeat purchases at the same recency and age: more expected purchases
    assert np.corrcoef(x, e)[0, 1] > 0.5
    if cls is BetaGeo:
        pen = cls(penalizer=0.01).fit(x, tx, T)  # inside the bounds: no warning (would raise)
    else:
        with pytest.warns(RetentionWarning, match="penalizer=0.01 did not keep them inside"):
            pen = cls(penalizer=0.01).fit(x, tx, T)
    assert np.isfinite(list(pen.params_.values())).all()
    if cls is BetaGeo:
        # a small penalty keeps the BG/NBD fit inside: P(alive) strictly in (0, 1) for repeaters
        assert not pen.degenerate_
        pa_pen = pen.conditional_probability_alive(x, tx, T)[x > 0]
        assert ((pa_pen > 0) & (pa_pen < 1)).all() and pa_pen.min() < 0.5


def test_gamma_gamma_on_online_retail(retail: pd.DataFrame) -> None:
    gg = GammaGamma().fit(retail["frequency"], retail["monetary_value"])
    assert gg.converged_ and gg.params_ is not None
    assert np.isfinite(list(gg.params_.values())).all() and gg.params_["q"] > 1
    e = gg.conditional_expected_average_profit(retail["frequency"], retail["monetary_value"])
    assert np.isfinite(e).all() and (e > 0).all()


# ------------------------------------------------------------------ odd inputs


@st.composite
def rfm_data(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 6))
    big = draw(st.sampled_from([1.0, 50.0, 1e4, 1e9]))
    T = np.array(draw(st.lists(st.floats(0.0, big), min_size=n, max_size=n)))
    zero = draw(st.booleans())
    x = np.array(draw(st.lists(st.integers(0, 0 if zero else 60), min_size=n, max_size=n)))
    frac = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
    tx = np.where(x > 0, T * frac, 0.0)
    return x.astype(float), tx, T


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(data=rfm_data(), t=st.sampled_from([0.0, 1.0, 52.0, 1e6]))
def test_odd_inputs_give_finite_fits_and_predictions(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], t: float
) -> None:
    """One customer, nobody repeating, huge T, T = 0: finite parameters and predictions."""
    x, tx, T = data
    for cls in (BetaGeo, ParetoNBD):
        # at most 6 customers: always thin data, often degenerate too
        with pytest.warns(RetentionWarning, match="thin data|degenerate"):
            est = cls().fit(x, tx, T)
        assert est.params_ is not None
        assert np.isfinite(list(est.params_.values())).all()
        assert np.isfinite(est.log_likelihood_)
        pa = est.conditional_probability_alive(x, tx, T)
        p = est.probability_of_purchase(t, x, tx, T)
        e = est.conditional_expected_purchases(t, x, tx, T)
        for v in (pa, p, e, est.probability_no_purchase(t, x, tx, T), est.expected_purchases(t)):
            assert np.isfinite(v).all()
        assert ((pa >= 0) & (pa <= 1) & (p >= 0) & (p <= 1) & (e >= 0)).all()


def test_all_zero_repeaters_documented_behaviour() -> None:
    """Nobody repeated: the likelihood pushes the purchase rate to zero; the fit is flagged
    degenerate, every customer is 'alive' (no repeat purchase, no evidence of dropout) and
    expected purchases are close to 0."""
    x, tx, T = np.zeros(5), np.zeros(5), np.array([3.0, 10.0, 20.0, 30.0, 39.0])
    with pytest.warns(RetentionWarning) as record:
        bg = BetaGeo().fit(x, tx, T)
    messages = [str(w.message) for w in record]
    assert any("0 of 5 customers have a repeat purchase" in m for m in messages)
    assert any(
        "degenerate" in m and "purchase rates Gamma(r, alpha) collapse to 0" in m for m in messages
    )
    assert bg.degenerate_
    np.testing.assert_allclose(bg.conditional_probability_alive(x, tx, T), 1.0)
    assert (bg.conditional_expected_purchases(13.0, x, tx, T) < 1e-3).all()


@pytest.mark.parametrize("cls", [BetaGeo, ParetoNBD])
def test_thin_data_warns_below_the_documented_number_of_repeat_customers(
    cls: type, cdnow: pd.DataFrame
) -> None:
    repeaters = cdnow[cdnow["frequency"] > 0]
    others = cdnow[cdnow["frequency"] == 0].iloc[:40]

    def thin_warnings(n_repeat: int) -> list[str]:
        s = pd.concat([repeaters.iloc[:n_repeat], others])
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            cls().fit(s["frequency"], s["recency"], s["T"])
        return [str(w.message) for w in record if "thin data" in str(w.message)]

    assert thin_warnings(MIN_REPEAT_CUSTOMERS) == []
    (message,) = thin_warnings(MIN_REPEAT_CUSTOMERS - 1)
    assert f"{MIN_REPEAT_CUSTOMERS - 1} of {MIN_REPEAT_CUSTOMERS + 39} customers" in message
    assert f"fewer than {MIN_REPEAT_CUSTOMERS}" in message


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("f", "r", "T", "match"),
    [
        ([1, -1], [1.0, 0.0], [2.0, 2.0], "negative"),
        ([1, np.nan], [1.0, 0.0], [2.0, 2.0], "missing or infinite"),
        ([1, 2], [3.0, 1.0], [2.0, 2.0], "recency greater than T"),
        ([1.5, 2], [1.0, 1.0], [2.0, 2.0], "whole repeat purchases"),
        ([0, 2], [1.0, 1.0], [2.0, 2.0], "frequency 0 but recency > 0"),
        ([1, 2, 3], [1.0, 1.0], [2.0, 2.0], "same length"),
        ([], [], [], "No customers"),
    ],
)
@pytest.mark.parametrize("cls", [BetaGeo, ParetoNBD])
def test_bad_input_raises_data_error(cls: type, f: list, r: list, T: list, match: str) -> None:
    with pytest.raises(DataError, match=match):
        cls().fit(f, r, T)


def test_other_errors(bg_cdnow: BetaGeo) -> None:
    with pytest.raises(NotFittedError):
        BetaGeo().conditional_probability_alive(1, 1.0, 2.0)
    with pytest.raises(NotFittedError):
        GammaGamma().population_mean()
    bad = ParetoNBD(penalizer=-1)  # stored as given; checked in fit
    with pytest.raises(ConfigError, match="penalizer must be a number >= 0; got -1"):
        bad.fit([1], [1.0], [2.0])
    with pytest.raises(DataError, match="recency greater than T"):
        bg_cdnow.conditional_expected_purchases(1.0, [2], [5.0], [4.0])
    with pytest.raises(DataError, match="negative"):
        bg_cdnow.probability_no_purchase(-1.0, [2], [3.0], [4.0])
    with pytest.raises(DataError, match="at least two customers"):
        GammaGamma().fit([0, 0, 1], [0.0, 0.0, 3.0])


def test_penalizer_shrinks_parameters(cdnow: pd.DataFrame, bg_cdnow: BetaGeo) -> None:
    pen = BetaGeo(penalizer=0.1).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert pen.params_ is not None and bg_cdnow.params_ is not None
    norm = sum(v**2 for v in pen.params_.values())
    assert norm < sum(v**2 for v in bg_cdnow.params_.values())
    assert pen.log_likelihood_ < bg_cdnow.log_likelihood_


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.integers(0, 200), st.floats(0.0, 1e7)),
        min_size=2,
        max_size=8,
    ).filter(lambda rows: sum(1 for x, m in rows if x > 0 and m > 0) >= 2)
)
def test_gamma_gamma_odd_inputs_are_finite(rows: list[tuple[int, float]]) -> None:
    x = np.array([r[0] for r in rows], dtype=float)
    m = np.where(x > 0, [r[1] for r in rows], 0.0)
    with pytest.warns(RetentionWarning, match="Gamma-Gamma model is fitted on thin data"):
        gg = GammaGamma().fit(x, m)  # at most 8 customers
    assert gg.params_ is not None and np.isfinite(list(gg.params_.values())).all()
    assert gg.params_["q"] > 1
    e = gg.conditional_expected_average_profit(x, m)
    assert np.isfinite(e).all() and (e >= 0).all() and np.isfinite(gg.population_mean())


def test_pareto_integral_matches_adaptive_quadrature() -> None:
    """The log-space quadrature of the Pareto/NBD 'died in (t_x, T]' integral, against QUADPACK
    on cases from smooth to sharply decaying (x = 300) and with alpha << beta or alpha >> beta."""
    from scipy.integrate import quad

    from retention.models._btyd import _log_power_integral

    cases = [
        (10.6, 11.7, 0.55, 1.6, 0.0, 39.0),
        (10.6, 11.7, 300.55, 1.6, 30.0, 39.0),
        (0.01, 500.0, 3.2, 1.05, 2.0, 300.0),
        (800.0, 0.3, 1.2, 2.5, 0.0, 1e4),
        (5.0, 5.0, 0.3, 1.01, 1.0, 2.0),
    ]
    arr = [np.array([c[i] for c in cases]) for i in range(6)]
    got, tau, q = _log_power_integral(*arr)
    for (A, B, P, Q, lo, hi), g in zip(cases, got, strict=True):

        def logg(t: float, A: float = A, B: float = B, P: float = P, Q: float = Q) -> float:
            return float(-P * np.log(A + t) - Q * np.log(B + t))

        val, _ = quad(
            lambda t, lo=lo, logg=logg: np.exp(logg(t) - logg(lo)),  # scaled: no underflow
            lo,
            hi,
            epsabs=0,
            epsrel=1e-12,
            limit=200,
            points=[lo + (hi - lo) * f for f in (1e-4, 1e-3, 1e-2, 0.1)],
        )
        assert g == pytest.approx(np.log(val) + logg(lo), abs=1e-7)
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    assert ((tau >= arr[4][:, None]) & (tau <= arr[5][:, None])).all()
    empty, _, _ = _log_power_integral(*(a[:1] for a in arr[:4]), np.array([3.0]), np.array([3.0]))
    assert empty[0] == -np.inf


# ------------------------------------------------------------------ MBG/NBD


@pytest.fixture(scope="module")
def mbg_cdnow(cdnow: pd.DataFrame) -> ModifiedBetaGeo:
    return ModifiedBetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def test_mbgnbd_matches_batislam_and_wagner_hoppe_closed_forms(
    cdnow: pd.DataFrame, mbg_cdnow: ModifiedBetaGeo
) -> None:
    """Batislam et al. (2007) P(alive) and the conditional expectation of Wagner & Hoppe (2008),
    written with 2F1 (valid for a > 1: checked at parameters where it is, and at the fit)."""
    x, tx, T = _rfm(cdnow.iloc[::7])
    t = 13.0
    assert not mbg_cdnow.degenerate_ and mbg_cdnow.converged_
    for params in (dict(mbg_cdnow.params_), {"r": 0.5, "alpha": 7.0, "a": 2.5, "b": 4.0}):
        est = ModifiedBetaGeo()
        est.params_ = params
        r, alpha, a, b = params.values()
        p_alive = 1 / (1 + a / (b + x) * ((alpha + T) / (alpha + tx)) ** (r + x))
        np.testing.assert_allclose(est.conditional_probability_alive(x, tx, T), p_alive, rtol=1e-10)
        assert (p_alive[x == 0] < 1).all()  # drop-out possible right after the first purchase
        p_buy = p_alive * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x))
        np.testing.assert_allclose(est.probability_of_purchase(t, x, tx, T), p_buy, rtol=1e-10)
        if a > 1:
            z = t / (alpha + T + t)
            h = hyp2f1(r + x, b + x + 1, a + b + x, z)
            expected = (a + b + x) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * h)
            np.testing.assert_allclose(
                est.conditional_expected_purchases(t, x, tx, T), expected * p_alive, rtol=1e-6
            )
            ts = np.array([1.0, 13.0, 39.0])
            pop = (
                b
                / (a - 1)
                * (1 - hyp2f1(r, b + 1, a + b, ts / (alpha + ts)) * (alpha / (alpha + ts)) ** r)
            )
            np.testing.assert_allclose(est.expected_purchases(ts), pop, rtol=1e-6)


def test_mbgnbd_gradient_and_no_purchase_ratio(
    cdnow: pd.DataFrame, mbg_cdnow: ModifiedBetaGeo
) -> None:
    x, tx, T = _rfm(cdnow.iloc[::13])
    params = np.array([0.6, 8.0, 0.5, 1.2])
    _, grad = _mbgnbd_loglik(params, x, tx, T)
    for j in range(4):
        h = 1e-6 * params[j]
        up, dn = params.copy(), params.copy()
        up[j] += h
        dn[j] -= h
        fd = (_mbgnbd_loglik(up, x, tx, T)[0].sum() - _mbgnbd_loglik(dn, x, tx, T)[0].sum()) / (
            2 * h
        )
        assert grad[j].sum() == pytest.approx(fd, rel=1e-5)
    fitted = np.array(list(mbg_cdnow.params_.values()))
    for t in (0.5, 13.0, 200.0):
        ratio = np.exp(
            _mbgnbd_loglik(fitted, x, tx, T + t)[0] - _mbgnbd_loglik(fitted, x, tx, T)[0]
        )
        np.testing.assert_allclose(mbg_cdnow.probability_no_purchase(t, x, tx, T), ratio, rtol=1e-6)


def test_mbgnbd_recovers_simulated_parameters() -> None:
    """Customers simulated from the MBG/NBD process: the fit finds its parameters again."""
    rng = np.random.default_rng(11)
    r, alpha, a, b = 0.8, 5.0, 1.5, 3.0
    n, T_end = 6000, 52.0
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    x = np.zeros(n)
    tx = np.zeros(n)
    for i in range(n):
        if rng.uniform() < p[i]:
            continue  # gone right after the first purchase
        t = rng.exponential(1 / lam[i])
        while t < T_end:
            x[i] += 1
            tx[i] = t
            if rng.uniform() < p[i]:
                break
            t += rng.exponential(1 / lam[i])
    est = ModifiedBetaGeo().fit(x, tx, np.full(n, T_end))
    got = est.params_
    assert got["r"] == pytest.approx(r, rel=0.15) and got["a"] == pytest.approx(a, rel=0.3)
    assert got["b"] == pytest.approx(b, rel=0.35) and got["alpha"] == pytest.approx(alpha, rel=0.2)
    assert not est.degenerate_ and est.degenerate_reason() is None and not est.is_nbd()


def test_mbgnbd_degenerate_on_online_retail(retail: pd.DataFrame) -> None:
    """On Online Retail at 2011-09-10 MBG/NBD collapses to the NBD too: flagged, and why."""
    x, tx, T = _rfm(retail)
    with pytest.warns(
        RetentionWarning, match="MBG/NBD fit is degenerate.*nobody seems to drop out"
    ):
        est = ModifiedBetaGeo().fit(x, tx, T)
    assert est.degenerate_ and est.is_nbd()
    assert "collapse to 0" in est.degenerate_reason()
