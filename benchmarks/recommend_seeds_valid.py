"""Validation-item study for the Beauty recommender: seed averaging and the blend weight.

Fits SASRec on the search sequences (each customer's items before the validation item) with the
given parameters and ``n_seeds`` networks (the first chooses the epoch count on the validation
item, the others train that many epochs), then reports on the validation item only: each network
alone, the average of 2..n networks (log-probabilities, and probabilities), and blends with the
transition model over a grid of weights and softmax temperatures. The test item is never read.
With ``"item_categories": true`` the model reads the bundled items table (brand/category ids).

    python benchmarks/recommend_seeds_valid.py \\
        '{"loss": "sampled", "n_negatives": 2048, "epochs": 16, "patience": null, "n_seeds": 3}'

One JSON line is appended to ``--out`` (default benchmarks/results/recommend_beauty_seeds_valid.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from retention.data import amazon_beauty_items, dataset_path  # noqa: E402
from retention.strategies import (  # noqa: E402
    get_recommender,
    leave_last_out,
    ranking_metrics,
    read_sequences,
    target_ranks,
)

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", help="SASRec parameters as JSON")
    parser.add_argument(
        "--out", type=Path, default=HERE / "results" / "recommend_beauty_seeds_valid.jsonl"
    )
    args = parser.parse_args()
    params = json.loads(args.params)
    path = Path("/work/shared/datasets/amazon_beauty/Beauty.txt")
    if not path.is_file():
        path = dataset_path("amazon_beauty", "amazon_beauty.txt.gz")
    split = leave_last_out(read_sequences(path))
    rows = split.evaluated
    vh = [split.search.history(int(r)) for r in rows]
    vt = split.valid_targets[rows]
    excl = [np.unique(h) for h in vh]
    t0, c0 = time.perf_counter(), time.process_time()
    # the items table (brand/category ids) for a model that reads it
    items = amazon_beauty_items() if params.get("item_categories") else None
    m = get_recommender("sasrec", **params).fit(split.search, split.valid_targets, items=items)
    out = {
        "params": params,
        "best_epoch": m.best_epoch_,
        "wall": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
        "seed_seconds": m.seed_seconds_,
        "load": os.getloadavg(),
        "valid_curve": [h.get("valid_ndcg@10") for h in m.history_],
    }

    def logsm(z: np.ndarray) -> np.ndarray:
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    def metrics(scores: np.ndarray) -> list[float]:
        r = np.concatenate(
            [
                target_ranks(scores[s : s + 2048], vt[s : s + 2048], excl[s : s + 2048])
                for s in range(0, len(vh), 2048)
            ]
        )
        mm = ranking_metrics(r, 10)
        return [round(mm["ndcg@10"], 5), round(mm["hr@10"], 5)]

    logp = []
    for net in m.nets_:
        net.eval()
        blocks = [
            logsm(m._net_logits(net, vh[s : s + 2048]).astype(np.float64))
            for s in range(0, len(vh), 2048)
        ]
        logp.append(np.concatenate(blocks).astype(np.float32))
    res = {f"net{i}": metrics(x) for i, x in enumerate(logp)}
    for n in range(2, len(logp) + 1):
        res[f"logavg{n}"] = metrics(sum(logp[:n]) / n)
        res[f"probavg{n}"] = metrics(sum(np.exp(x) for x in logp[:n]) / n)
    tr = get_recommender("transition").fit(split.search)
    pt = np.concatenate([tr.item_probabilities(vh[s : s + 2048]) for s in range(0, len(vh), 2048)])
    blend: dict[str, list[float]] = {}
    ens = sum(logp) / len(logp)
    for temp in (0.8, 1.0, 1.25):
        ps = np.exp(ens / temp)
        ps /= ps.sum(1, keepdims=True)
        for w in (0.4, 0.5, 0.6, 0.7, 0.8):
            blend[f"T{temp}_w{w}"] = metrics(w * ps + (1 - w) * pt)
    if len(logp) > 1:
        for w in (0.5, 0.6, 0.7):
            blend[f"single_T1_w{w}"] = metrics(w * np.exp(logp[0]) + (1 - w) * pt)
    out["valid"] = res
    out["blend"] = blend
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
