"""Small synthetic purchase logs and CutoffFrames for the model tests (seconds, no store).

Customers buy at their own Poisson rate until they drop out (a BG/NBD-like process), so recency
and frequency carry real signal about the next horizon, and a trained model must beat chance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from retention.features import CutoffFrame

START = pd.Timestamp("2020-01-01")


def synthetic_events(n_users: int = 400, days: int = 540, seed: int = 0) -> pd.DataFrame:
    """Purchase events with the contract's columns, sorted by user_id, ts."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, pd.Timestamp, float]] = []
    for u in range(n_users):
        rate = rng.gamma(0.8, 1 / 25)  # purchases per day
        p_drop = rng.beta(1.0, 6.0)
        first = rng.uniform(0, days * 0.6)
        t = first
        spend = rng.lognormal(3.0, 0.5)
        while t < days:
            rows.append((f"u{u:04d}", START + pd.Timedelta(days=float(t)), float(spend)))
            if rng.uniform() < p_drop:
                break
            t += rng.exponential(1 / max(rate, 1e-3))
    ev = pd.DataFrame(rows, columns=["user_id", "ts", "amount"])
    ev["ts"] = ev["ts"].astype("datetime64[ns]").dt.floor("s")
    ev["event_type"] = "purchase"
    ev["item_id"] = "i" + (np.arange(len(ev)) % 7).astype(str)
    ev["order_id"] = "o" + np.arange(len(ev)).astype(str)
    ev["quantity"] = 1.0
    ev["rating"] = np.nan
    ev["text"] = None
    ev["event_id"] = "e" + np.arange(len(ev)).astype(str)
    cols = ["event_id", "user_id", "ts", "event_type", "item_id", "order_id", "quantity"]
    ev = ev[[*cols, "amount", "rating", "text"]]
    return ev.sort_values(["user_id", "ts"], kind="mergesort").reset_index(drop=True)


def frame_at(
    events: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int = 60, with_label: bool = True
) -> CutoffFrame:
    """A CutoffFrame with simple RFM-style features computed from ``events``."""
    before = events[events["ts"] < cutoff]
    g = before.groupby("user_id")
    last = g["ts"].max()
    first = g["ts"].min()
    feats = pd.DataFrame(
        {
            "recency_days": (cutoff - last).dt.total_seconds() / 86400,
            "frequency_orders": g.size().astype(float),
            "monetary_mean": g["amount"].mean(),
            "tenure_days": (cutoff - first).dt.total_seconds() / 86400,
            "w90d_orders": before[before["ts"] >= cutoff - pd.Timedelta(days=90)]
            .groupby("user_id")
            .size()
            .reindex(last.index, fill_value=0)
            .astype(float),
        }
    )
    feats["gap_mean_days"] = (feats["tenure_days"] - feats["recency_days"]) / feats[
        "frequency_orders"
    ].clip(lower=1)
    feats.index = feats.index.astype(str)
    feats.index.name = "user_id"
    label = None
    if with_label:
        end = cutoff + pd.Timedelta(days=horizon_days)
        window = events[(events["ts"] >= cutoff) & (events["ts"] < end)]
        label = (
            pd.Series(1, index=window["user_id"].unique())
            .reindex(feats.index, fill_value=0)
            .astype(int)
        )
        label.name = "label"
    return CutoffFrame(
        cutoff=cutoff,
        horizon_days=horizon_days,
        features=feats,
        label=label,
        events=before[before["user_id"].isin(feats.index)].reset_index(drop=True),
    )


def synthetic_frames(
    n_users: int = 400, seed: int = 0, horizon_days: int = 60
) -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    """(train frames, valid frame, test frame) at cutoffs spaced like ``backtest_cutoffs``."""
    ev = synthetic_events(n_users=n_users, seed=seed)
    test = START + pd.Timedelta(days=480)
    valid = test - pd.Timedelta(days=horizon_days)
    step = horizon_days // 3
    train = [valid - pd.Timedelta(days=k * step) for k in (3, 2, 1)]
    return (
        [frame_at(ev, c, horizon_days) for c in train],
        frame_at(ev, valid, horizon_days),
        frame_at(ev, test, horizon_days),
    )


def synthetic_store(path, n_users: int = 300, seed: int = 0):
    """A DuckDB store at ``path`` holding :func:`synthetic_events` (returns the path)."""
    from retention.data import Store

    ev = synthetic_events(n_users=n_users, seed=seed)
    with Store(path) as store:
        store.con.register("_synth_events", ev)
        store.con.execute(
            "INSERT INTO events (event_id, user_id, ts, event_type, item_id, order_id, quantity, "
            "amount, rating, text) SELECT event_id, user_id, ts, event_type, item_id, order_id, "
            "quantity, CAST(amount AS DECIMAL(18,2)), rating, text FROM _synth_events"
        )
        store.con.unregister("_synth_events")
    return path


def tiny_bert(folder):
    """A 2-layer, 32-wide BERT with a character vocabulary and random weights, saved in
    ``folder`` (returns it): a :class:`~retention.features.TextEncoder` name that loads in
    milliseconds, for tests of code that encodes or fine-tunes text."""
    import string

    import torch
    from transformers import BertConfig, BertModel, BertTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    chars = list(string.ascii_lowercase + string.digits + ".,:;/-\"'")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(str(folder))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
        BertModel(config).save_pretrained(str(folder))
    return folder
