"""BG/NBD fit time and parameters: retention vs lifetimes 0.11.3, measured in one run.

    nice .venv/bin/python benchmarks/btyd.py [--repeats 5]

1. CDNOW master (23,570 customers of the 1997 Q1 cohort, bundled), calibration period to
   1997-09-30 (cutoff 1997-10-01), weeks, same-day purchases merged: both libraries fit the
   BG/NBD on the same RFM summary; best-of-N wall time, ratio and both parameter sets.
2. Online Retail at cutoff 2011-09-10 (weeks): what lifetimes' BetaGeoFitter and
   ParetoNBDFitter do there, and what ours do.

lifetimes is a benchmark-only dependency (``pip install retention[bench]``). Both libraries run
with single-threaded BLAS (set below) so that neither pays thread start-up on small vectors.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import retention.data  # noqa: E402
from retention.models import BetaGeo, ParetoNBD, rfm_summary  # noqa: E402

FILES = Path(retention.data.__file__).parent / "files"


def cdnow_master_summary() -> pd.DataFrame:
    raw = pd.read_csv(FILES / "cdnow_master.csv.gz", dtype={"customer_id": str, "date": str})
    ev = pd.DataFrame(
        {
            "user_id": raw["customer_id"],
            "ts": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "event_type": "purchase",
            "amount": raw["dollars"].astype(float),
        }
    )
    return rfm_summary(ev, "1997-10-01", unit_days=7.0)


def online_retail_summary() -> pd.DataFrame:
    raw = pd.read_parquet(FILES / "online_retail.parquet")
    raw = raw[raw["CustomerID"].notna() & ~raw["InvoiceNo"].astype(str).str.startswith("C")]
    amount = raw["Quantity"] * raw["UnitPrice"]
    raw, amount = raw[amount > 0], amount[amount > 0]
    ev = pd.DataFrame(
        {
            "user_id": raw["CustomerID"].astype("int64").astype(str),
            "ts": pd.to_datetime(raw["InvoiceDate"]),
            "event_type": "purchase",
            "amount": amount.astype(float),
        }
    )
    return rfm_summary(ev, "2011-09-10", unit_days=7.0)


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def fmt(params: dict) -> str:
    return ", ".join(f"{k}={float(v):.4f}" for k, v in params.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from lifetimes import BetaGeoFitter, ParetoNBDFitter
    except Exception as exc:  # pragma: no cover - depends on the environment
        BetaGeoFitter = ParetoNBDFitter = None
        print(f"lifetimes cannot run here ({type(exc).__name__}: {exc}); timing ours only.")

    s = cdnow_master_summary()
    f, r, T = (s[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    print(f"CDNOW master: {len(s)} customers, calibration to 1997-09-30, weeks")

    t_ours, ours = best_time(lambda: BetaGeo().fit(f, r, T), args.repeats)
    print(
        f"  retention BetaGeo       best of {args.repeats}: {t_ours:8.3f} s   {fmt(ours.params_)}"
    )
    print(f"      log-likelihood {ours.log_likelihood_:.2f}, converged {ours.converged_}")
    if BetaGeoFitter is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reps = max(1, min(args.repeats, 3))
            t_lt, lt = best_time(lambda: BetaGeoFitter().fit(f, r, T), reps)
        lt_params = {k: float(lt.params_[k]) for k in ("r", "alpha", "a", "b")}
        print(f"  lifetimes BetaGeoFitter best of {reps}: {t_lt:8.3f} s   {fmt(lt_params)}")
        # lifetimes' fit also computes an autograd Hessian (for standard errors); time the
        # optimisation alone too, so the speed-up is not just that step
        import lifetimes.fitters as lt_fitters

        saved = lt_fitters.hessian
        lt_fitters.hessian = lambda fun: lambda x, *a: np.eye(len(x))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_lt_opt, _ = best_time(lambda: BetaGeoFitter().fit(f, r, T), reps)
        finally:
            lt_fitters.hessian = saved
        print(f"  lifetimes BetaGeoFitter without its Hessian step: {t_lt_opt:8.3f} s")
        same = all(round(ours.params_[k], 3) == round(v, 3) for k, v in lt_params.items())
        diff = max(abs(ours.params_[k] - v) for k, v in lt_params.items())
        print(
            f"  speed-up {t_lt / t_ours:.1f}x (optimisation alone {t_lt_opt / t_ours:.1f}x); "
            f"same parameters to 3 decimals: {same} (largest difference {diff:.1e})"
        )

    s = online_retail_summary()
    f, r, T = (s[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    print(
        f"\nOnline Retail at 2011-09-10: {len(s)} customers, {int((f > 0).sum())} repeaters, weeks"
    )
    for name, ours_cls, lt_cls in (
        ("BG/NBD", BetaGeo, BetaGeoFitter),
        ("Pareto/NBD", ParetoNBD, ParetoNBDFitter),
    ):
        t0 = time.perf_counter()
        est = ours_cls().fit(f, r, T)
        dt = time.perf_counter() - t0
        pa = est.conditional_probability_alive(f, r, T)
        e = est.conditional_expected_purchases(13.0, f, r, T)
        finite = bool(np.isfinite(pa).all() and np.isfinite(e).all())
        print(f"  retention {name:10s} {dt:6.2f} s  {fmt(est.params_)}")
        print(
            f"      converged {est.converged_}, degenerate {est.degenerate_}, finite predictions "
            f"{finite}, mean P(alive) {pa.mean():.4f}, mean E[purchases, 13 weeks] {e.mean():.4f}"
        )
        if lt_cls is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # it prints scipy's result
                    lt = lt_cls().fit(f, r, T)
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                print(
                    f"  lifetimes {name:10s} {time.perf_counter() - t0:6.2f} s  "
                    f"{type(exc).__name__}: {first}"
                )
                continue
            dt = time.perf_counter() - t0
            pa = np.asarray(lt.conditional_probability_alive(f, r, T), dtype=float)
            e = np.asarray(
                lt.conditional_expected_number_of_purchases_up_to_time(13.0, f, r, T), dtype=float
            )
        bad = int((~np.isfinite(pa)).sum() + (~np.isfinite(e)).sum())
        print(f"  lifetimes {name:10s} {dt:6.2f} s  {fmt(lt.params_.to_dict())}")
        print(f"      non-finite predictions: {bad}")


if __name__ == "__main__":
    main()
