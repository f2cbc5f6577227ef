"""Recommendation benchmark: every recommender, full ranking over the catalogue.

Two protocols:

* **leave-last-out** (Amazon Beauty, or any file with ``--sequences FILE``, one line per customer
  ``user item1 item2 ...`` in time order): each customer's last item is the test item, the one
  before the validation item. Choices (SASRec's epoch count by early stopping, the blend's
  weights and members) are made on the validation item only; the final model is then refitted
  on every item up to the test item (the validation item included) with those choices, and so is
  every baseline ("refit", what the published anchors do). The "strict" figures use the model
  fitted without the validation item (it is only read as history). The test item never reaches
  training or any choice.
* **temporal** (Online Retail, bundled): fit on purchases before 2011-09-10, test on each
  customer's purchases in the next 90 days; SASRec's epochs and the blend are chosen on the 90
  days before the cutoff (a model fitted before 2011-06-12), then everything is refitted on all
  purchases before the cutoff. Reported with items already bought excluded from the ranking and
  from the targets ("excluded"), and without ("all").

Metrics over the full catalogue, never sampled negatives: HR@10, NDCG@10, MRR, catalogue
coverage@10, training seconds (search + refit), milliseconds per customer to rank the catalogue;
the same split by history length (short: at most the median, long: above) and for cold customers
(at most one item before). Items of a customer's history are removed from the ranking (RecBole's
and RecTools' convention); ``all`` / ``unexcluded`` repeat the figures without that.

    python benchmarks/recommend.py                       # Beauty + Online Retail, table, JSON file
    python benchmarks/recommend.py --sequences FILE      # JSON on stdout (other tools read it)
    python benchmarks/recommend.py --models transition,sasrec --max-users 3000
    python benchmarks/recommend.py --models transition,sasrec,blend --skip-online-retail \
        --params '{"sasrec": {"average_last": 3}}' --refit-params '{"sasrec": {"n_seeds": 3}}'
    python benchmarks/recommend.py --models transition,sasrec_categories,blend \
        --skip-online-retail --refit-params '{"sasrec_categories": {"n_seeds": 3}}' \
        --params '{"sasrec_categories": {"average_last": 3, "patience": 5, "d_model": 128}}'

``sasrec_categories`` is SASRec with each item's category tokens added to its embedding
(``item_categories=True``): on Beauty the bundled brand/category ids (S3-Rec's
``item2attributes``), with ``--sequences FILE`` those of ``--items FILE`` (a CSV with
``item_id`` and ``category``).

Published on the same Beauty splits (full ranking, refit protocol; HR@10 / NDCG@10): SASRec with
sampled softmax, 256 negatives 0.0921 / 0.0531; eSASRec 0.0928 / 0.0523; DuoRec 0.0845 / 0.0443;
SASRec as first published (BCE, one negative) 0.0605 / 0.0318. Target: the best model at
NDCG@10 >= 0.065 and HR@10 >= 0.100 under the refit protocol, training within 30 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# benchmarks/transformers.py is named like the library: keep this folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

# torch's OpenMP threads spin while they wait: on a shared machine that costs more than it gains
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from retention import __version__  # noqa: E402
from retention.exceptions import RetentionError  # noqa: E402
from retention.strategies import (  # noqa: E402
    BlendRecommender,
    ItemSequences,
    get_recommender,
    leave_last_out,
    read_sequences,
)
from retention.workflows import json_clean  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = "popularity,cooccurrence,transition,ease,als,sasrec_sampled,sasrec,blend"
#: the variants the benchmark runs: registry name and the parameters that differ from defaults
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "popularity": ("popularity", {}),
    "cooccurrence": ("cooccurrence", {}),
    "transition": ("transition", {}),
    "ease": ("ease", {}),
    "als": ("als", {}),
    "text": ("text", {}),
    "sasrec": ("sasrec", {}),  # full softmax cross-entropy (the default)
    # the same, with each item's category tokens (the items table) added to its embedding
    "sasrec_categories": ("sasrec", {"item_categories": True}),
    "sasrec_sampled": ("sasrec", {"loss": "sampled", "n_negatives": 256, "n_blocks": 1}),
}
ANCHORS = {
    "SASRec, sampled softmax 256 negatives (published)": {"hr@10": 0.0921, "ndcg@10": 0.0531},
    "eSASRec (published)": {"hr@10": 0.0928, "ndcg@10": 0.0523},
    "DuoRec (published)": {"hr@10": 0.0845, "ndcg@10": 0.0443},
    "SASRec, BCE one negative (published)": {"hr@10": 0.0605, "ndcg@10": 0.0318},
}
TARGET = {"ndcg@10": 0.065, "hr@10": 0.100, "train_seconds": 1800.0}
OR_CUTOFF, OR_HORIZON = pd.Timestamp("2011-09-10"), 90


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (round(v, 5) if isinstance(v, float) else rounded(v) if isinstance(v, dict) else v)
        for k, v in d.items()
    }


def segments(result: Any, lengths: np.ndarray) -> dict[str, Any]:
    median = float(np.median(lengths)) if len(lengths) else 0.0
    result.segment(f"short (<= {median:g} items)", lengths <= median)
    result.segment(f"long (> {median:g} items)", lengths > median)
    result.segment("cold (<= 1 item)", lengths <= 1)
    return dict(result.segments)


def make(name: str, overrides: dict[str, Any]) -> Any:
    base, params = VARIANTS[name]
    return get_recommender(base, **{**params, **overrides.get(name, {}), **overrides.get("*", {})})


# ------------------------------------------------------------------------------ leave-last-out
def leave_last_out_run(
    seqs: ItemSequences,
    names: list[str],
    overrides: dict[str, Any],
    k: int = 10,
    refit_overrides: dict[str, Any] | None = None,
    items: pd.DataFrame | None = None,
) -> dict[str, Any]:
    split = leave_last_out(seqs)
    rows = split.evaluated
    valid_hist = [split.search.history(int(r)) for r in rows]
    test_hist = [split.refit.history(int(r)) for r in rows]
    lengths = np.array([len(h) for h in test_hist])
    valid_t, test_t = split.valid_targets[rows], split.test_targets[rows]
    out: dict[str, Any] = {}
    search_models: dict[str, Any] = {}
    refit_models: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    for name in [n for n in names if n != "blend"]:
        log(f"[{name}] search fit on {len(seqs):,} customers, {seqs.n_items:,} items")
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            search = make(name, overrides).fit(split.search, split.valid_targets, items=items)
        except RetentionError as exc:  # e.g. text similarity on a file without item text
            out[name] = {"error": str(exc)}
            log(f"[{name}] skipped: {exc}")
            continue
        t_search, c_search = time.perf_counter() - t0, time.process_time() - c0
        valid = search.evaluate(valid_hist, valid_t, k=k)
        strict = search.evaluate(test_hist, test_t, k=k)
        t0, c0 = time.perf_counter(), time.process_time()
        # the refit takes the search's choices (epoch count, ...) and any --refit-params
        frozen = {**search.frozen_params(), **(refit_overrides or {}).get(name, {})}
        refit = type(search)(**frozen).fit(split.refit, items=items)
        t_refit, c_refit = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        test = refit.evaluate(test_hist, test_t, k=k)
        ms = 1000.0 * (time.perf_counter() - t0) / max(len(rows), 1)
        unexcluded = refit.evaluate(test_hist, test_t, k=k, exclude_seen=False)
        seconds[name] = t_search + t_refit
        cpu_seconds[name] = c_search + c_refit
        entry = {
            **test.metrics,
            "train_seconds": t_search + t_refit,
            "search_seconds": t_search,
            "refit_seconds": t_refit,
            "train_cpu_seconds": c_search + c_refit,
            "load_average_after": os.getloadavg(),
            "ms_per_user": ms,
            "valid": valid.metrics,
            "strict": strict.metrics,
            "unexcluded": unexcluded.metrics,
            "segments": segments(test, lengths),
        }
        if hasattr(search, "best_epoch_"):
            entry["epochs"] = int(search.best_epoch_)
            entry["epoch_seconds"] = float(np.mean([h["seconds"] for h in search.history_]))
            entry["valid_curve"] = [
                round(h.get("valid_ndcg@10", np.nan), 5) for h in search.history_
            ]
        if hasattr(search, "seed_seconds_"):
            entry["seed_seconds"] = {"search": search.seed_seconds_, "refit": refit.seed_seconds_}
        out[name] = entry
        search_models[name], refit_models[name] = search, refit
        log(
            f"[{name}] refit {rounded(test.metrics)} strict ndcg@10 {strict.metrics['ndcg@10']:.4f}"
        )
    ranked = sorted(
        (n for n in search_models if n != "popularity"),
        key=lambda n: -out[n]["valid"][f"ndcg@{k}"],
    )[:2]
    if "blend" in names and len(ranked) == 2:
        # the two best on the validation item (popularity aside), weights chosen there too
        t0, c0 = time.perf_counter(), time.process_time()
        blend = BlendRecommender(members=[(n, search_models[n]) for n in ranked], prefit=True).fit(
            split.search, split.valid_targets
        )
        refit_blend = BlendRecommender(
            members=[(n, refit_models[n]) for n in ranked], prefit=True, weights=blend.weights_
        ).fit(split.refit)
        t_blend, c_blend = time.perf_counter() - t0, time.process_time() - c0
        valid = blend.evaluate(valid_hist, valid_t, k=k)
        strict = blend.evaluate(test_hist, test_t, k=k)
        t0 = time.perf_counter()
        test = refit_blend.evaluate(test_hist, test_t, k=k)
        ms = 1000.0 * (time.perf_counter() - t0) / max(len(rows), 1)
        unexcluded = refit_blend.evaluate(test_hist, test_t, k=k, exclude_seen=False)
        out["blend"] = {
            **test.metrics,
            "train_seconds": t_blend + sum(seconds[n] for n in ranked),
            "train_cpu_seconds": c_blend + sum(cpu_seconds[n] for n in ranked),
            "ms_per_user": ms,
            "members": ranked,
            "weights": blend.weights_,
            "valid": valid.metrics,
            "strict": strict.metrics,
            "unexcluded": unexcluded.metrics,
            "segments": segments(test, lengths),
        }
        log(f"[blend {ranked} {blend.weights_}] refit {rounded(test.metrics)}")
    return {
        "protocol": "leave-last-out, full ranking, seen items excluded; headline figures refit "
        "on train+valid with choices made on the validation item; 'strict' without the refit",
        "n_users": len(seqs),
        "n_evaluated": len(rows),
        "n_items": seqs.n_items,
        "n_interactions": len(seqs.codes),
        "models": {n: rounded(v) for n, v in out.items()},
    }


# --------------------------------------------------------------------------------- temporal
def online_retail_run(names: list[str], overrides: dict[str, Any], k: int = 10) -> dict[str, Any]:
    from retention.data import Store, load_dataset

    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "or.duckdb") as store:
        load_dataset("online_retail", store)
        events = store.events_df(columns=("user_id", "ts", "event_type", "item_id"))
        items = store.table_df("items")
    events = events[events["event_type"] == "purchase"]
    vocab = pd.Index(items["item_id"].astype(str).unique(), dtype=object)
    valid_cut = OR_CUTOFF - pd.Timedelta(days=OR_HORIZON)
    end = OR_CUTOFF + pd.Timedelta(days=OR_HORIZON)

    def seqs_before(cut: pd.Timestamp, users: pd.Index | None = None) -> ItemSequences:
        return ItemSequences.from_events(
            events[events["ts"] < cut], event_types=None, items=vocab, users=users
        )

    def targets(lo: pd.Timestamp, hi: pd.Timestamp, users: pd.Index) -> list[np.ndarray]:
        win = events[(events["ts"] >= lo) & (events["ts"] < hi)]
        codes = vocab.get_indexer(pd.Index(win["item_id"].astype(str), dtype=object))
        frame = pd.DataFrame({"u": win["user_id"].astype(str).to_numpy(), "c": codes})
        frame = frame[frame["c"] >= 0]
        groups = frame.groupby("u")["c"].apply(lambda s: np.unique(s.to_numpy()))
        return [groups.get(u, np.zeros(0, dtype=np.int64)) for u in users]

    test_users = pd.Index(
        np.unique(
            events.loc[(events["ts"] >= OR_CUTOFF) & (events["ts"] < end), "user_id"].astype(str)
        ),
        dtype=object,
    )
    valid_users = pd.Index(
        np.unique(
            events.loc[(events["ts"] >= valid_cut) & (events["ts"] < OR_CUTOFF), "user_id"].astype(
                str
            )
        ),
        dtype=object,
    )
    search_seqs = seqs_before(valid_cut)
    refit_seqs = seqs_before(OR_CUTOFF)
    # validation targets in the rows of the search sequences (customers known then)
    v_users = search_seqs.users
    v_t = targets(valid_cut, OR_CUTOFF, v_users)
    valid_next = np.array(
        [
            next((c for c in t if c not in set(h.tolist())), -1) if len(t) else -1
            for t, h in zip(v_t, search_seqs.histories(), strict=True)
        ],
        dtype=np.int64,
    )
    hist_test = seqs_before(OR_CUTOFF, users=test_users)
    test_hist = hist_test.histories()
    t_all = targets(OR_CUTOFF, end, test_users)
    t_new = [np.setdiff1d(t, h) for t, h in zip(t_all, test_hist, strict=True)]
    keep_new = np.array([len(t) > 0 for t in t_new])
    lengths = np.array([len(np.unique(h)) for h in test_hist])
    out: dict[str, Any] = {}
    for name in [n for n in names if n != "blend"]:
        log(f"[online retail: {name}]")
        t0 = time.perf_counter()
        try:
            search = make(name, overrides).fit(search_seqs, valid_next, items=items)
            refit = type(search)(**search.frozen_params()).fit(refit_seqs, items=items)
        except RetentionError as exc:
            out[name] = {"error": str(exc)}
            continue
        secs = time.perf_counter() - t0
        t0 = time.perf_counter()
        excl = refit.evaluate(
            [test_hist[i] for i in np.flatnonzero(keep_new)],
            [t_new[i] for i in np.flatnonzero(keep_new)],
            k=k,
        )
        ms = 1000.0 * (time.perf_counter() - t0) / max(int(keep_new.sum()), 1)
        allv = refit.evaluate(test_hist, t_all, k=k, exclude_seen=False)
        out[name] = {
            "excluded": {**excl.metrics, "segments": segments(excl, lengths[keep_new])},
            "all": {**allv.metrics, "segments": segments(allv, lengths)},
            "ndcg@10": excl.metrics["ndcg@10"],
            "hr@10": excl.metrics["hr@10"],
            "train_seconds": secs,
            "ms_per_user": ms,
        }
        log(f"[online retail: {name}] excluded {rounded(excl.metrics)}")
    return {
        "protocol": f"temporal: fit before {OR_CUTOFF:%Y-%m-%d}, test on each customer's purchases "
        f"in the next {OR_HORIZON} days; 'excluded': items bought before removed from ranking and "
        "targets; 'all': nothing removed",
        "n_test_users": len(test_users),
        "n_valid_users": len(valid_users),
        "n_items": len(vocab),
        "models": {n: rounded(v) for n, v in out.items()},
    }


# ------------------------------------------------------------------------------------- main
def table(title: str, models: dict[str, Any]) -> str:
    lines = [
        f"**{title}**",
        "",
        "| model | HR@10 | NDCG@10 | MRR | coverage@10 | strict HR@10 | strict NDCG@10 | train s | ms/user |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in models.items():
        if "error" in m:
            lines.append(f"| {name} | {m['error']} |")
            continue
        body = m.get("excluded", m)
        strict = m.get("strict", {})
        lines.append(
            f"| {name} | {body['hr@10']:.4f} | {body['ndcg@10']:.4f} | {body['mrr']:.4f} | "
            f"{body['coverage@10']:.3f} | {strict.get('hr@10', float('nan')):.4f} | "
            f"{strict.get('ndcg@10', float('nan')):.4f} | {m['train_seconds']:.0f} | "
            f"{m['ms_per_user']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sequences", type=Path, help="leave-last-out on this file; JSON on stdout"
    )
    parser.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help=f"comma-separated ({', '.join([*VARIANTS, 'blend'])})",
    )
    parser.add_argument(
        "--max-users", type=int, default=None, help="first N customers only (development)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="most SASRec epochs (default: the model's)"
    )
    parser.add_argument(
        "--params", default="{}", help='JSON overrides, e.g. {"sasrec": {"dropout": 0.3}}'
    )
    parser.add_argument(
        "--refit-params",
        default="{}",
        help="JSON overrides of the refit only (leave-last-out), e.g. "
        '{"sasrec": {"n_seeds": 3}}: seed averaging at the epoch count the search found',
    )
    parser.add_argument(
        "--items",
        type=Path,
        help="with --sequences: an items CSV (item_id, category: tokens such as brand and "
        "category ids, space separated) for the models that read it (sasrec_categories); "
        "Amazon Beauty uses its bundled brand/category ids",
    )
    parser.add_argument("--skip-online-retail", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "recommend.json")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS and n != "blend"]
    if unknown:
        print(
            f"error: unknown model(s) {', '.join(unknown)}; choose from {', '.join([*VARIANTS, 'blend'])}",
            file=sys.stderr,
        )
        return 2
    try:
        overrides: dict[str, Any] = json.loads(args.params)
        refit_overrides: dict[str, Any] = json.loads(args.refit_params)
    except ValueError as exc:
        print(f"error: --params or --refit-params is not JSON ({exc})", file=sys.stderr)
        return 2
    if args.epochs is not None:
        for n in ("sasrec", "sasrec_sampled"):
            overrides.setdefault(n, {})["epochs"] = args.epochs
    try:
        if args.sequences is not None:
            seqs = read_sequences(args.sequences)
            if args.max_users:
                seqs = seqs.take(np.arange(min(args.max_users, len(seqs))))
            items = None
            if args.items is not None:
                if not args.items.is_file():
                    print(f"error: --items {args.items}: no such file", file=sys.stderr)
                    return 2
                items = pd.read_csv(args.items, dtype=str, keep_default_na=False)
                if not {"item_id", "category"} <= set(items.columns):
                    print(
                        f"error: {args.items} needs the columns item_id and category; it has "
                        f"{', '.join(items.columns)}",
                        file=sys.stderr,
                    )
                    return 2
            result = leave_last_out_run(
                seqs, names, overrides, refit_overrides=refit_overrides, items=items
            )
            result.update({"file": str(args.sequences), "retention": __version__})
            # strict JSON (NaN, say of a segment with no user, is null), as other tools parse it
            print(json.dumps(json_clean(result), indent=2, allow_nan=False))
            return 0
        from retention.data import amazon_beauty_items, dataset_path

        beauty_file = Path("/work/shared/datasets/amazon_beauty/Beauty.txt")
        if not beauty_file.is_file():
            beauty_file = dataset_path("amazon_beauty", "amazon_beauty.txt.gz")
        load_start = os.getloadavg()
        seqs = read_sequences(beauty_file)
        if args.max_users:
            seqs = seqs.take(np.arange(min(args.max_users, len(seqs))))
        t0, c0 = time.perf_counter(), time.process_time()
        beauty = leave_last_out_run(
            seqs, names, overrides, refit_overrides=refit_overrides, items=amazon_beauty_items()
        )
        beauty["seconds"] = time.perf_counter() - t0
        beauty["cpu_seconds"] = time.process_time() - c0
        report: dict[str, Any] = {
            "retention": __version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg(),
            "amazon_beauty": beauty,
            "anchors_amazon_beauty": ANCHORS,
            "target": TARGET,
            "params": overrides,
            "refit_params": refit_overrides,
        }
        scored = {n: m for n, m in beauty["models"].items() if "error" not in m}
        best_name = max(scored, key=lambda n: scored[n]["ndcg@10"])
        best = beauty["models"][best_name]
        transition = beauty["models"].get("transition")
        report["best"] = {
            "model": best_name,
            "ndcg@10": best["ndcg@10"],
            "hr@10": best["hr@10"],
            "train_seconds": best["train_seconds"],
            "train_cpu_seconds": best.get("train_cpu_seconds"),
            "ndcg_ratio_to_transition": best["ndcg@10"] / transition["ndcg@10"]
            if transition
            else None,
            "target_met": bool(
                best["ndcg@10"] >= TARGET["ndcg@10"]
                and best["hr@10"] >= TARGET["hr@10"]
                and best["train_seconds"] <= TARGET["train_seconds"]
                and not args.max_users
            ),
        }
        if not args.skip_online_retail:
            report["online_retail"] = online_retail_run(names, overrides)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(json_clean(report), indent=2, allow_nan=False) + "\n")
        print(
            table(
                f"Amazon Beauty, leave-last-out ({beauty['n_users']:,} users, {beauty['n_items']:,} items)",
                beauty["models"],
            )
        )
        print()
        print("| published anchor (same splits, refit) | HR@10 | NDCG@10 |\n|---|---|---|")
        for name, m in ANCHORS.items():
            print(f"| {name} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} |")
        if "online_retail" in report:
            print()
            print(
                table(
                    "Online Retail, temporal (seen items excluded)",
                    report["online_retail"]["models"],
                )
            )
        print()
        print(f"best: {json.dumps(rounded(report['best']))}")
        print(f"written: {args.out}")
    except RetentionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
