"""Sequence-model speed: the old configuration (one token per invoice line) against the new one.

Issue 11, item 6: the sequence transformer trained at 8.8 examples/s (607 s for 5,333 histories in
``benchmarks/results/transformers.json``). This script trains, in one process on the same frames,

- ``old``: ``SequenceTransformerModel(tokens="event", max_events=64, item_embeddings=True,
  batch_size=128, n_threads=None)``, the configuration measured there: one token per line, the
  last 64 lines, the item texts encoded with the pretrained encoder, torch's threads;
- ``new``: ``SequenceTransformerModel()``, the defaults: one token per order (its lines summed),
  the last 50 orders, length-bucketed batches of 256, no text encoder, one torch thread;

on the bundled Online Retail with the backtest design of ``benchmarks/transformers.py`` (test cutoff
2011-09-10, horizon 90 days, three stacked training cutoffs, early stopping on held-out customer
folds of the validation cutoff; the test cutoff only scores). ``new`` runs before and after ``old``,
so a change in the machine's load shows as a difference between its two runs. It prints, per
configuration, the training seconds (wall and CPU), training examples per second (stacked
customer-cutoffs over fit seconds, the unit of ``transformers.json``), seconds per epoch, test
ROC-AUC, and the speed ratios; the item-text encoding the old configuration needs is timed on its
own (its fit then reads the table) and the ratio is given with and without it. ``--profile`` adds
where one epoch of each spends its time (torch.profiler, operators by self CPU time).

    python benchmarks/sequence_speed.py [--old-epochs N] [--profile] [--decompose] [--threads N]

``--old-epochs`` caps the old configuration's epochs (its examples/s then come from those epochs;
its ROC-AUC is that of the capped run, said in the output). ``--decompose`` adds three runs of
``--decompose-epochs`` epochs each (no early stopping) that split the gain between the tokens and
the thread setting: the old configuration on one thread, the new one on one thread and on torch's
threads.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from retention import __version__  # noqa: E402
from retention.data import Store, load_dataset  # noqa: E402
from retention.features import item_embeddings, training_frames  # noqa: E402
from retention.models import classification_metrics, get_model  # noqa: E402


def _transformers_benchmark() -> Any:
    """``benchmarks/transformers.py`` as a module (its name would shadow the library)."""
    spec = importlib.util.spec_from_file_location("_transformers_bench", HERE / "transformers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _transformers_benchmark()
CUTOFF, HORIZON = BENCH.CUTOFF, BENCH.HORIZON
OLD = {
    "tokens": "event",
    "max_events": 64,
    "item_embeddings": True,
    "batch_size": 128,
    "n_threads": None,
}
NEW: dict[str, Any] = {}
TARGET_RATIO = 10.0


def fit_and_score(name: str, params: dict[str, Any], train: list, valid: Any, test: Any) -> dict:
    """Fit one configuration, time it (wall and CPU) and score the test cutoff."""
    model = get_model("sequence", **params)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(train, valid)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    y = test.label.to_numpy(dtype=int)
    n = BENCH.n_train_examples(model, train)
    epochs = len(model.history_)
    row = {
        "params": params,
        **classification_metrics(y, model.predict_proba(test)),
        "train_seconds": round(wall, 2),
        "train_cpu_seconds": round(cpu, 2),
        "train_examples": n,
        "train_examples_per_s": round(n / wall, 1),
        "epochs_run": epochs,
        "best_epoch": model.best_epoch_,
        "seconds_per_epoch": round(wall / epochs, 2),
        "examples_per_s_per_epoch": round(n * epochs / wall, 1),
        "trainable_parameters": BENCH.trainable_parameters(model),
        "valid_roc_auc": [round(h.get("valid_roc_auc", float("nan")), 4) for h in model.history_],
    }
    print(f"{name}: {json.dumps(row)}", flush=True)
    return row


def profile_epoch(params: dict[str, Any], train: list, valid: Any, rows: int = 12) -> list[dict]:
    """Operators of one training epoch (and its validation pass) by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    model = get_model("sequence", **{**params, "epochs": 1})
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.fit(train, valid)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    out = [
        {
            "op": e.key,
            "self_cpu_ms": round(e.self_cpu_time_total / 1000, 1),
            "share": round(e.self_cpu_time_total / total, 3),
            "calls": e.count,
        }
        for e in events[:rows]
    ]
    print(f"profile {params}: total self CPU {total / 1e6:.2f} s", flush=True)
    for e in out:
        print(f"  {e['op']:<60} {e['self_cpu_ms']:>9.1f} ms {e['share']:>6.1%} {e['calls']:>6}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-epochs", type=int, default=None, help="cap the old config's epochs")
    parser.add_argument("--profile", action="store_true", help="profile one epoch of each")
    parser.add_argument("--decompose", action="store_true", help="split the gain (see above)")
    parser.add_argument("--decompose-epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sequence_speed.json")
    args = parser.parse_args()

    import torch
    import torch._dynamo  # imported by the first optimizer: not a model's cost

    if args.threads:
        torch.set_num_threads(args.threads)
    old = {**OLD, **({"epochs": args.old_epochs} if args.old_epochs else {})}
    settings = {
        "test_cutoff": CUTOFF,
        "horizon_days": HORIZON,
        "old": old,
        "new": NEW,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    print("settings:", json.dumps(settings), flush=True)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "online_retail.duckdb") as store:
        load_dataset("online_retail", store)
        train, valid, test = training_frames(store, CUTOFF, HORIZON)
        items = next(f.items for f in [*train, valid] if f.items is not None and len(f.items))
        wall = time.perf_counter()
        table = item_embeddings(items)  # what the old configuration's fit computes first
        encode_s = time.perf_counter() - wall
        print(f"item texts encoded in {encode_s:.1f} s ({len(table)} items)", flush=True)
        rows["encode_item_texts"] = {"seconds": round(encode_s, 2), "items": len(table)}
        for frame in [*train, valid, test]:
            frame.extra["item_embeddings"] = table  # the old fit reads the table, not the encoder

        rows["new"] = fit_and_score("new", NEW, train, valid, test)
        rows["old"] = fit_and_score("old", old, train, valid, test)
        rows["new_again"] = fit_and_score("new (again)", NEW, train, valid, test)
        if args.decompose:
            fixed = {"epochs": args.decompose_epochs, "patience": args.decompose_epochs}
            rows["decompose"] = {
                name: fit_and_score(name, {**params, **fixed}, train, valid, test)
                for name, params in (
                    ("old_one_thread", {**OLD, "n_threads": 1}),
                    ("new_one_thread", NEW),
                    ("new_torch_threads", {**NEW, "n_threads": None}),
                )
            }
        if args.profile:
            rows["profile"] = {
                "old": profile_epoch(old, train, valid),
                "new": profile_epoch(NEW, train, valid),
            }
        settings["load_average_after"] = os.getloadavg()

    new_s = max(rows["new"]["train_seconds"], rows["new_again"]["train_seconds"])  # slower run
    o, n = rows["old"], rows["new"]
    ratios = {
        "examples_per_s": round(o["train_seconds"] / new_s, 2),
        "examples_per_s_with_encoding": round((o["train_seconds"] + encode_s) / new_s, 2),
        "per_epoch": round(
            (o["train_seconds"] / o["epochs_run"])
            / (new_s / max(n["epochs_run"], rows["new_again"]["epochs_run"])),
            2,
        ),
        "cpu": round(
            o["train_cpu_seconds"]
            / max(n["train_cpu_seconds"], rows["new_again"]["train_cpu_seconds"]),
            2,
        ),
    }
    gain = n["roc_auc"] - o["roc_auc"]
    met = ratios["examples_per_s"] >= TARGET_RATIO and gain >= 0
    summary = {
        "ratios": ratios,
        "roc_auc_new_minus_old": round(gain, 4),
        "target": {"speed_ratio": TARGET_RATIO, "roc_auc": "new >= old", "met": met},
        "old_epochs_capped": args.old_epochs is not None,
    }
    print()
    print("| config | ROC-AUC | train s | CPU s | epochs | s / epoch | train ex/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("old", "new", "new_again"):
        r = rows[name]
        print(
            f"| {name} | {r['roc_auc']:.4f} | {r['train_seconds']:.1f} | "
            f"{r['train_cpu_seconds']:.1f} | {r['epochs_run']} | {r['seconds_per_epoch']:.2f} | "
            f"{r['train_examples_per_s']:,.1f} |"
        )
    print(
        f"\nspeed ratio (train examples/s, new's slower run): {ratios['examples_per_s']:.1f}x "
        f"({ratios['examples_per_s_with_encoding']:.1f}x counting the old config's "
        f"{encode_s:.0f} s of item-text encoding; per epoch {ratios['per_epoch']:.1f}x; "
        f"CPU {ratios['cpu']:.1f}x)"
    )
    if args.decompose:
        d = rows["decompose"]
        tokens = d["old_one_thread"]["train_seconds"] / d["new_one_thread"]["train_seconds"]
        threads = d["new_torch_threads"]["train_seconds"] / d["new_one_thread"]["train_seconds"]
        summary["decompose"] = {"tokens_one_thread": round(tokens, 2), "threads": round(threads, 2)}
        print(
            f"over {args.decompose_epochs} epochs: per-order tokens (both on one thread) "
            f"{tokens:.1f}x; one thread instead of torch's {threads:.1f}x (new configuration)"
        )
    if args.old_epochs is not None:
        print(
            f"(old configuration capped at {args.old_epochs} epochs: its ROC-AUC is the capped run's)"
        )
    print(
        f"{'MET   ' if met else 'MISSED'} >= {TARGET_RATIO:.0f}x at equal or better ROC-AUC: "
        f"new {n['roc_auc']:.4f} vs old {o['roc_auc']:.4f} ({gain:+.4f})"
    )
    meta = {
        "retention": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "settings": settings,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {"meta": meta, "summary": summary, "runs": rows}
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
