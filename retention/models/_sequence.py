"""A transformer over each customer's last orders (PyTorch), predicting retention at the horizon.

Each customer is a sequence of tokens (:func:`retention.features.event_sequences`): a summary token,
then the last ``max_events`` orders (``tokens="order"``, the default: the lines of an invoice
summed into one token) or events (``tokens="event"``: one token per line), each the sum of
embeddings of its event type, its items (hashed learned embeddings, averaged over the order's
largest lines, plus a projection of the items' text embeddings when asked for), its
``log1p(amount)`` (and, per order, its lines, units and share of returns), its time-gap buckets (to
the cutoff and to the previous token) and its recency position. A pre-norm transformer encoder with
a key-padding mask reads them; a masked mean pool, joined with a small dense branch on per-customer
summaries (counts, spend, tenure, recency), feeds a sigmoid head. Training stacks the training
cutoffs in batches of similar length, uses AdamW with weight decay and dropout, and stops early on
the validation cutoff's ROC-AUC over customers it never trained on (whole folds of
``customer_folds``, the grouping of ``models/_oof.py``). Everything is seeded; scores do not depend
on the batch a customer is scored in.

Where the time went (``benchmarks/sequence_speed.py``): one token per invoice line made sequences
of 38 tokens on average (capped at 64) for customers with a median of 2 invoices, so attention and
the feed-forward layers ran on 7x more tokens than orders, and encoding every item's text with the
pretrained encoder took about as long as the training itself.

torch is imported by this module only; ``import retention.models`` does not import it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F

from retention._progress import progress_bar
from retention.exceptions import ConfigError, ModelError
from retention.features import (
    CONTEXT_COLUMNS,
    N_GAP_BUCKETS,
    ORDER_NUMERIC_COLUMNS,
    TOKEN_UNITS,
    CutoffFrame,
    EventSequences,
    event_sequences,
)
from retention.models._base import RetentionModel, check_is_fitted
from retention.models._oof import N_FOLDS, customer_folds

__all__ = ["SequenceTransformerModel"]

_MAX_EVENT_TYPES = 16
_SCORE_BATCH = 1024


class _Block(nn.Module):
    """A pre-norm transformer encoder layer.

    Attention goes through ``scaled_dot_product_attention`` without attention dropout (dropout acts
    on the residual branches), which keeps the fused CPU kernel and avoids sampling a dropout mask
    over every (query, key) pair.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, length, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, length, d)))
        out: torch.Tensor = x + self.drop(self.ff(self.norm2(x)))
        return out


class _SequenceNet(nn.Module):
    """Token embeddings -> TransformerEncoder -> masked mean pool (+ context) -> logit."""

    def __init__(
        self,
        *,
        n_event_types: int,
        n_item_buckets: int,
        max_events: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        dropout: float,
        n_context: int,
        text_dim: int,
        n_text_items: int,
        n_numeric: int = 0,
    ) -> None:
        super().__init__()
        self.type_emb = nn.Embedding(n_event_types, d_model, padding_idx=0)
        self.item_emb = nn.Embedding(n_item_buckets + 1, d_model, padding_idx=0)
        self.text_dim = text_dim
        if text_dim:
            self.register_buffer("text_table", torch.zeros(n_text_items + 1, text_dim))
            self.text_proj = nn.Linear(text_dim, d_model, bias=False)
        self.n_numeric = n_numeric
        self.amount_proj = nn.Linear(2 + n_numeric, d_model)
        self.gap_cut_emb = nn.Embedding(N_GAP_BUCKETS + 1, d_model, padding_idx=0)
        self.gap_prev_emb = nn.Embedding(N_GAP_BUCKETS + 1, d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(max_events + 1, d_model)
        self.emb_norm = nn.LayerNorm(d_model)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.context = nn.Sequential(nn.Linear(n_context, d_model), nn.GELU())
        self.head = nn.Sequential(
            nn.Linear(2 * d_model, d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(d_model, 1),
        )
        # small embeddings (BERT's 0.02): an item or bucket never trained on stays near zero
        # instead of adding a large random vector at scoring time
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()

    def _items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The token's item embedding: one item per event, the mean over an order's items."""
        buckets = batch["item_bucket"]
        if buckets.dim() == 2:  # one item per token
            x = self.item_emb(buckets)
            if self.text_dim:
                x = x + self.text_proj(self.text_table[batch["item_index"]])
            return x
        known = (buckets != 0).to(torch.float32)
        share = (known / known.sum(dim=-1, keepdim=True).clamp(min=1.0)).unsqueeze(-1)
        x = (self.item_emb(buckets) * share).sum(dim=2)
        if self.text_dim:
            # project the table once (rows << tokens x items), then pick the rows
            projected = self.text_proj(self.text_table)
            index = batch["item_index"]
            found = (index != 0).to(torch.float32)
            weight = (found / found.sum(dim=-1, keepdim=True).clamp(min=1.0)).unsqueeze(-1)
            x = x + (projected[index] * weight).sum(dim=2)
        return x

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["mask"]
        amount = batch["amount"].unsqueeze(-1)
        numbers = [amount, (amount != 0).to(amount.dtype)]
        if self.n_numeric:
            numbers.append(batch["numeric"])
        x = (
            self.type_emb(batch["event_type"])
            + self._items(batch)
            + self.amount_proj(torch.cat(numbers, dim=-1))
            + self.gap_cut_emb(batch["gap_cutoff"])
            + self.gap_prev_emb(batch["gap_prev"])
            + self.pos_emb(batch["position"])
        )
        x = self.emb_drop(self.emb_norm(x))
        attend = mask[:, None, None, :]  # (batch, 1, 1, keys): True where a key is real
        for block in self.blocks:
            x = block(x, attend)
        h = self.final_norm(x)
        weights = mask.to(h.dtype).unsqueeze(-1)
        pooled = (h * weights).sum(dim=1) / weights.sum(dim=1)
        out = self.head(torch.cat([pooled, self.context(batch["context"])], dim=-1))
        logits: torch.Tensor = out.squeeze(-1)
        return logits


def _as_tensors(seq: EventSequences, context_mean: np.ndarray, context_std: np.ndarray) -> dict:
    ints = ("event_type", "item_bucket", "item_index", "gap_cutoff", "gap_prev", "position")
    batch = {name: torch.from_numpy(np.ascontiguousarray(getattr(seq, name))) for name in ints}
    batch["amount"] = torch.from_numpy(np.ascontiguousarray(seq.amount, dtype=np.float32) / 5.0)
    batch["mask"] = torch.from_numpy(np.ascontiguousarray(seq.mask))
    if seq.numeric is not None:
        batch["numeric"] = torch.from_numpy(np.ascontiguousarray(seq.numeric, dtype=np.float32))
    ctx = (seq.context - context_mean) / context_std
    batch["context"] = torch.from_numpy(np.ascontiguousarray(ctx, dtype=np.float32))
    return batch


def _concat(parts: list[EventSequences]) -> EventSequences:
    width = max(p.length for p in parts)
    parts = [p.padded(width) for p in parts]
    fields = {
        name: np.concatenate([getattr(p, name) for p in parts])
        for name in (*parts[0].token_fields, "context")
    }
    users = pd.Index(np.concatenate([p.users.to_numpy(dtype=object) for p in parts]))
    return EventSequences(users=users, **fields)


def _item_table(frames: Sequence[CutoffFrame], enabled: bool) -> tuple[pd.Index, np.ndarray] | None:
    """Text embeddings of items: ``frame.extra["item_embeddings"]`` (a DataFrame indexed by
    item_id) when a frame carries them, else computed from ``frame.items`` with the pretrained
    encoder (:func:`retention.features.item_embeddings`); None without item texts."""
    if not enabled:
        return None
    for frame in frames:
        table = frame.extra.get("item_embeddings")
        if isinstance(table, pd.DataFrame) and len(table):
            return pd.Index(table.index.astype(str)), table.to_numpy(dtype=np.float32)
    items = next((f.items for f in frames if f.items is not None and len(f.items)), None)
    if items is None or not ({"title", "description"} & set(items.columns)):
        return None
    from retention.features import item_embeddings  # imports the encoder only now

    cache = next(
        (f.extra["embedding_cache"] for f in frames if f.extra.get("embedding_cache") is not None),
        None,
    )
    table = item_embeddings(items, cache=cache)
    if not len(table):
        return None
    return pd.Index(table.index.astype(str)), table.to_numpy(dtype=np.float32)


def _held_out_folds(users: pd.Index, share: float) -> np.ndarray:
    """The folds of ``customer_folds`` kept out of training for early stopping.

    ``round(share * N_FOLDS)`` folds (at least one when ``share > 0``), the lowest-numbered folds
    among ``users``: inside ``out_of_fold_proba`` a fold is missing from the learning frames, and
    the next one is held out instead.
    """
    if share <= 0:
        return np.empty(0, dtype=np.int64)
    n_held = max(1, round(share * N_FOLDS))
    present = np.unique(customer_folds(users))
    return present[:n_held] if len(present) > n_held else np.empty(0, dtype=np.int64)


def _held_out(users: pd.Index, folds: np.ndarray) -> np.ndarray:
    """True for the customers of ``users`` in one of ``folds`` (the same at every cutoff)."""
    if not len(folds):
        return np.zeros(len(users), dtype=bool)
    return np.isin(customer_folds(users), folds)


@contextmanager
def _torch_threads(n_threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n_threads`` inside the block (None: unchanged)."""
    before = torch.get_num_threads()
    if n_threads is not None and n_threads != before:
        torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _length_batches(
    lengths: np.ndarray, batch_size: int, generator: torch.Generator
) -> list[np.ndarray]:
    """Shuffled batches of rows of similar length (less padding to compute on).

    Rows are shuffled, cut into pools of 32 batches, sorted by length inside each pool, cut into
    batches, and the batches shuffled again; everything is drawn from ``generator``.
    """
    order = torch.randperm(len(lengths), generator=generator).numpy()
    pool = 32 * batch_size
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).numpy()
    return [batches[i] for i in shuffle]


class SequenceTransformerModel(RetentionModel):
    """Transformer encoder over each customer's last orders, predicting P(retained).

    Parameters
    ----------
    max_events : int
        Tokens (orders, or events with ``tokens="event"``) per customer the model reads (the most
        recent ones).
    d_model, n_heads, n_layers : int
        Width, attention heads and layers of the encoder (``d_model % n_heads == 0``).
    dropout : float
        Dropout in the embeddings, the encoder and the head.
    weight_decay, learning_rate : float
        AdamW settings.
    epochs : int
        Most passes over the stacked training cutoffs.
    batch_size : int
        Customers per training step (of similar length: batches are cut from length-sorted pools).
        An order sequence is several times shorter than the line sequence it replaces, so a batch
        of 256 holds fewer tokens than one of 128 per line did.
    patience : int
        Epochs without a better validation ROC-AUC before stopping (needs ``valid``).
    item_embeddings : bool
        Add a projection of the item's text embedding (``frame.extra["item_embeddings"]`` or the
        text stage) to the hashed item embedding. Items without text keep the hashed one only.
        Without a precomputed table this encodes every item's text with the pretrained encoder
        first (on Online Retail about as long as the training itself), hence off by default.
    random_state : int
        Seed of the initial weights, the batch order and dropout.
    valid_customer_share : float
        Share of customers kept out of training and used, at the validation cutoff, for early
        stopping: ``round(share * N_FOLDS)`` whole folds of ``customer_folds`` (the customer
        grouping of every model's out-of-fold validation; 0.2 is one fold of five), the same
        customers at every cutoff. The training cutoffs' label windows overlap the validation
        cutoff's, so on customers it trained on the network can look better at the validation
        cutoff by remembering them; held-out customers give an honest stopping signal. 0 uses
        every customer for both.
    n_item_buckets : int
        Hash buckets of the learned item-id embedding.
    tokens : {"order", "event"}
        What one token is: an order (its lines summed: amount, lines, units, share of returns,
        its largest items; lines without an order id grouped by day) or one event (one line).
    items_per_token : int
        Items of an order token the model reads (its lines of largest amount); ``tokens="order"``.
    n_threads : int or None
        torch intra-op threads while fitting and predicting (restored afterwards); None keeps
        torch's setting. The matrices are small (64 wide, a few tokens per customer), so a second
        thread adds little, and on a busy machine its synchronisation at every operation costs
        more than it gains.

    Attributes
    ----------
    net_ : torch.nn.Module
        The trained network (the weights of the best validation epoch).
    event_types_ : tuple of str
        Event-type vocabulary learned from the training events.
    history_ : list of dict
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_roc_auc``.
    best_epoch_ : int
        Epoch (1-based) whose weights were kept.
    n_trainable_parameters_ : int
        Trainable parameters of ``net_``.
    train_seconds_, n_train_examples_ : float, int
        Training time and number of stacked training rows (customer-cutoffs).

    Examples
    --------
    >>> model = SequenceTransformerModel(epochs=3)  # doctest: +SKIP
    >>> model.fit(train_frames, valid_frame).predict_proba(test_frame)[:3]  # doctest: +SKIP
    array([0.71, 0.12, 0.45])
    """

    name: ClassVar[str] = "sequence"

    def __init__(
        self,
        max_events: int = 50,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        dropout: float = 0.1,
        weight_decay: float = 0.01,
        learning_rate: float = 1e-3,
        epochs: int = 30,
        batch_size: int = 256,
        patience: int = 4,
        item_embeddings: bool = False,
        random_state: int = 0,
        n_item_buckets: int = 4096,
        valid_customer_share: float = 0.2,
        tokens: str = "order",
        items_per_token: int = 4,
        n_threads: int | None = 1,
    ) -> None:
        self.max_events = max_events
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.item_embeddings = item_embeddings
        self.random_state = random_state
        self.n_item_buckets = n_item_buckets
        self.valid_customer_share = valid_customer_share
        self.tokens = tokens
        self.items_per_token = items_per_token
        self.n_threads = n_threads

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        positive = ("max_events", "d_model", "n_heads", "n_layers", "epochs", "batch_size")
        if self.tokens not in TOKEN_UNITS:
            raise ConfigError(
                f"tokens must be one of {TOKEN_UNITS} (what one token is), received "
                f"{self.tokens!r}."
            )
        threads = self.n_threads
        if threads is not None and (
            not isinstance(threads, int | np.integer) or isinstance(threads, bool) or threads < 1
        ):
            raise ConfigError(
                f"n_threads must be a positive integer or None (torch's setting), received "
                f"{threads!r}."
            )
        for name in (*positive, "n_item_buckets", "items_per_token"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, received {value!r}.")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads}); "
                "change one of them."
            )
        if not 0.0 <= float(self.valid_customer_share) < 1.0:
            raise ConfigError(
                f"valid_customer_share must be in [0, 1), received {self.valid_customer_share!r}."
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), received {self.dropout!r}.")
        for name in ("learning_rate", "weight_decay"):
            if float(getattr(self, name)) < 0 or (
                name == "learning_rate" and not self.learning_rate
            ):
                raise ConfigError(f"{name} must be positive, received {getattr(self, name)!r}.")
        if not isinstance(self.patience, int | np.integer) or self.patience < 0:
            raise ConfigError(
                f"patience must be a non-negative integer, received {self.patience!r}."
            )

    @staticmethod
    def _labels(frame: CutoffFrame) -> np.ndarray:
        if frame.label is None:
            raise ModelError(
                f"The frame at cutoff {pd.Timestamp(frame.cutoff).date()} has no label. Pass "
                "training and validation frames built with labels (with_label=True)."
            )
        y = frame.label.reindex(frame.users)
        if y.isna().any():
            raise ModelError(
                f"{int(y.isna().sum())} customers of the frame at cutoff "
                f"{pd.Timestamp(frame.cutoff).date()} have no label; pass a label for every "
                "customer of frame.features."
            )
        return y.to_numpy(dtype=np.float32)

    # ------------------------------------------------------------------ tokens
    def _sequences(self, frame: CutoffFrame, users: pd.Index | None = None) -> EventSequences:
        seq = event_sequences(
            frame.events,
            frame.users if users is None else users,
            frame.cutoff,
            max_events=int(self.max_events),
            event_types=self.event_types_,
            item_vocabulary=self.item_vocabulary_,
            n_item_buckets=int(self.n_item_buckets),
            per=str(getattr(self, "tokens", "event")),
            items_per_order=int(getattr(self, "items_per_token", 4)),
        )
        # Later cutoffs have older events than any training cutoff had: gaps beyond the largest
        # bucket seen in training fall into it ("at least that old"), not into an untrained one.
        max_gap = getattr(self, "max_gap_bucket_", None)
        if max_gap is not None:
            for name in ("gap_cutoff", "gap_prev"):
                values = getattr(seq, name)
                clip = (values > max_gap) & (values != N_GAP_BUCKETS)
                values[clip] = max_gap
        return seq

    # ------------------------------------------------------------------ fit
    def fit(
        self, train: Sequence[CutoffFrame], valid: CutoffFrame | None = None
    ) -> SequenceTransformerModel:
        """Train on the stacked ``train`` cutoffs; stop early on ``valid``'s ROC-AUC.

        Without ``valid`` the model trains for ``epochs`` epochs and keeps the last weights.
        """
        self._validate_params()
        with _torch_threads(self.n_threads):
            return self._fit(train, valid)

    def _fit(
        self, train: Sequence[CutoffFrame], valid: CutoffFrame | None
    ) -> SequenceTransformerModel:
        if isinstance(train, CutoffFrame):
            train = [train]
        if not train:
            raise ModelError("No training frames were given; pass at least one CutoffFrame.")
        started = time.perf_counter()
        ys = [self._labels(f) for f in train]
        horizons = {f.horizon_days for f in train} | ({valid.horizon_days} if valid else set())
        if len(horizons) > 1:
            raise ConfigError(
                f"The frames have different horizons {sorted(horizons)}; the model learns one "
                "horizon. Make every frame with the same horizon_days."
            )
        y_valid = self._labels(valid) if valid is not None else None
        if sum(len(y) for y in ys) == 0:
            raise ModelError("The training frames have no customers; pass non-empty frames.")

        all_types = pd.concat([f.events["event_type"] for f in train if "event_type" in f.events])
        counts = all_types.value_counts()
        self.event_types_ = tuple(str(t) for t in counts.index[: _MAX_EVENT_TYPES - 3])
        table = _item_table([*train, *([valid] if valid is not None else [])], self.item_embeddings)
        self.item_vocabulary_ = table[0] if table is not None else None

        self.max_gap_bucket_ = None
        share = float(self.valid_customer_share)
        held_valid = None
        if valid is not None and share > 0:
            # whole customer folds, the same customers at every cutoff
            held_folds = _held_out_folds(valid.users, share)
            held = [_held_out(f.users, held_folds) for f in train]
            held_valid = _held_out(valid.users, held_folds)
            y_valid = y_valid[held_valid] if y_valid is not None else None
            if y_valid is None or len(np.unique(y_valid)) < 2 or all(h.all() for h in held):
                raise ModelError(
                    f"Holding out {share:.0%} of customers leaves too few to train on or to "
                    "validate with; pass valid_customer_share=0 or more customers."
                )
        else:
            held = [np.zeros(len(f), dtype=bool) for f in train]
        seq = _concat([self._sequences(f, f.users[~h]) for f, h in zip(train, held, strict=True)])
        # the largest gap bucket training saw (scoring clips to it, see _sequences)
        seen = [
            values[seq.mask & (values != N_GAP_BUCKETS)]
            for values in (seq.gap_cutoff, seq.gap_prev)
        ]
        self.max_gap_bucket_ = max([1, *(int(v.max()) for v in seen if v.size)])
        y = np.concatenate([yy[~h] for yy, h in zip(ys, held, strict=True)])
        self.context_mean_ = seq.context.mean(axis=0)
        self.context_std_ = seq.context.std(axis=0) + 1e-6
        valid_seq = (
            self._sequences(valid, valid.users if held_valid is None else valid.users[held_valid])
            if valid is not None
            else None
        )

        self.net_config_: dict[str, Any] = {
            "n_event_types": _MAX_EVENT_TYPES,
            "n_item_buckets": int(self.n_item_buckets),
            "max_events": int(self.max_events),
            "d_model": int(self.d_model),
            "n_heads": int(self.n_heads),
            "n_layers": int(self.n_layers),
            "dropout": float(self.dropout),
            "n_context": len(CONTEXT_COLUMNS),
            "text_dim": int(table[1].shape[1]) if table is not None else 0,
            "n_text_items": int(table[1].shape[0]) if table is not None else 0,
            "n_numeric": len(ORDER_NUMERIC_COLUMNS) if self.tokens == "order" else 0,
        }
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            net = _SequenceNet(**self.net_config_)
            if table is not None:
                net.text_table[1:] = torch.tensor(table[1], dtype=torch.float32)
            self.net_ = net
            self._train(net, seq, y, valid_seq, y_valid)
        self.n_trainable_parameters_ = sum(
            p.numel() for p in self.net_.parameters() if p.requires_grad
        )
        self.n_train_examples_ = len(y)
        self.train_cutoffs_ = [pd.Timestamp(f.cutoff) for f in train]
        self.valid_cutoff_ = pd.Timestamp(valid.cutoff) if valid is not None else None
        self.horizon_days_ = int(train[0].horizon_days)
        self.train_seconds_ = time.perf_counter() - started
        return self

    def _train(
        self,
        net: _SequenceNet,
        seq: EventSequences,
        y: np.ndarray,
        valid_seq: EventSequences | None,
        y_valid: np.ndarray | None,
    ) -> None:
        # fused: one kernel per step for every parameter, instead of a dozen small ops each
        optimizer = torch.optim.AdamW(
            net.parameters(),
            lr=float(self.learning_rate),
            weight_decay=float(self.weight_decay),
            fused=True,
        )
        loss_fn = nn.BCEWithLogitsLoss()
        generator = torch.Generator().manual_seed(int(self.random_state))
        n = len(y)
        lengths = seq.lengths
        y_t = torch.from_numpy(y)
        self.history_: list[dict[str, float]] = []
        best_score, best_state, best_epoch, waited = -np.inf, None, 0, 0
        with progress_bar() as bar:
            task = bar.add_task("sequence transformer", total=int(self.epochs))
            for epoch in range(1, int(self.epochs) + 1):
                net.train()
                total = 0.0
                for rows in _length_batches(lengths, int(self.batch_size), generator):
                    batch = _as_tensors(seq.take(rows), self.context_mean_, self.context_std_)
                    loss = loss_fn(net(batch), y_t[rows])
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(net.parameters(), 1.0, foreach=True)
                    optimizer.step()
                    total += loss.item() * len(rows)
                record = {"epoch": float(epoch), "train_loss": total / n}
                info = f"loss {record['train_loss']:.4f}"
                if valid_seq is not None and y_valid is not None and len(y_valid):
                    p = self._score(net, valid_seq)
                    q = np.clip(p, 1e-7, 1 - 1e-7)
                    record["valid_loss"] = float(
                        -np.mean(y_valid * np.log(q) + (1 - y_valid) * np.log(1 - q))
                    )
                    both = len(np.unique(y_valid)) == 2
                    record["valid_roc_auc"] = (
                        float(roc_auc_score(y_valid, p)) if both else float("nan")
                    )
                    score = record["valid_roc_auc"] if both else -record["valid_loss"]
                    info += f"  valid loss {record['valid_loss']:.4f}"
                    if both:
                        info += f"  auc {record['valid_roc_auc']:.4f}"
                    if score > best_score:
                        best_score, best_epoch, waited = score, epoch, 0
                        best_state = copy.deepcopy(net.state_dict())
                    else:
                        waited += 1
                else:
                    best_epoch, best_state = epoch, None
                self.history_.append(record)
                bar.update(task, advance=1, info=info)
                if valid_seq is not None and waited > int(self.patience):
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.best_epoch_ = best_epoch

    # ------------------------------------------------------------------ predict
    def _score(self, net: _SequenceNet, seq: EventSequences) -> np.ndarray:
        """Probabilities in row order; batches of similar length, each trimmed of padding."""
        net.eval()
        out = np.empty(len(seq), dtype=np.float64)
        order = np.argsort(seq.lengths, kind="stable")
        with torch.no_grad():
            for start in range(0, len(seq), _SCORE_BATCH):
                rows = order[start : start + _SCORE_BATCH]
                batch = _as_tensors(seq.take(rows), self.context_mean_, self.context_std_)
                out[rows] = torch.sigmoid(net(batch)).double().numpy()
        return out

    def predict_proba(self, frame: CutoffFrame) -> np.ndarray:
        """P(retained) for every customer of ``frame``, in the order of ``frame.users``."""
        check_is_fitted(self, "net_")
        if len(frame) == 0:
            return np.empty(0, dtype=np.float64)
        with _torch_threads(getattr(self, "n_threads", None)):
            return self._score(self.net_, self._sequences(frame))

    # ------------------------------------------------------------------ save/load as data
    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What :meth:`fit` learned, as data (see ``retention.models.save_model``): the network's
        weights as safetensors (its shape in ``net_config_``), the vocabularies as JSON lists and
        the context scaling as arrays."""
        from safetensors.torch import save

        check_is_fitted(self, "net_")
        state = {
            "event_types_": tuple(self.event_types_),
            "max_gap_bucket_": self.max_gap_bucket_,
            "net_config_": dict(self.net_config_),
            "history_": list(self.history_),
            "best_epoch_": int(self.best_epoch_),
            "n_trainable_parameters_": int(self.n_trainable_parameters_),
            "n_train_examples_": int(self.n_train_examples_),
            "train_cutoffs_": list(self.train_cutoffs_),
            "valid_cutoff_": self.valid_cutoff_,
            "horizon_days_": int(self.horizon_days_),
            "train_seconds_": float(self.train_seconds_),
        }
        weights = {k: v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()}
        parts: dict[str, Any] = {
            "net.safetensors": save(weights),
            "context_mean": np.asarray(self.context_mean_),
            "context_std": np.asarray(self.context_std_),
        }
        if self.item_vocabulary_ is not None:
            parts["item_vocabulary"] = [str(i) for i in self.item_vocabulary_]
        return state, parts

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned (``load_model``)."""
        from safetensors.torch import load

        config = dict(state["net_config_"])
        if "n_numeric" not in config:
            # saved before order tokens existed: a per-line model, whatever today's default
            self.tokens = "event"
        net = _SequenceNet(**config)
        net.load_state_dict(load(parts["net.safetensors"]))  # strict: every weight, no other
        net.eval()
        self.net_ = net
        self.net_config_ = config
        self.event_types_ = tuple(str(t) for t in state["event_types_"])
        vocabulary = parts.get("item_vocabulary")
        self.item_vocabulary_ = (
            pd.Index([str(i) for i in vocabulary]) if vocabulary is not None else None
        )
        self.max_gap_bucket_ = state["max_gap_bucket_"]
        self.context_mean_ = parts["context_mean"]
        self.context_std_ = parts["context_std"]
        self.history_ = list(state["history_"])
        self.best_epoch_ = int(state["best_epoch_"])
        self.n_trainable_parameters_ = int(state["n_trainable_parameters_"])
        self.n_train_examples_ = int(state["n_train_examples_"])
        self.train_cutoffs_ = list(state["train_cutoffs_"])
        self.valid_cutoff_ = state["valid_cutoff_"]
        self.horizon_days_ = int(state["horizon_days_"])
        self.train_seconds_ = float(state["train_seconds_"])

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        net = state.pop("net_", None)
        if net is not None:
            state["_net_state"] = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights = state.pop("_net_state", None)
        self.__dict__.update(state)
        if weights is not None:
            net = _SequenceNet(**self.net_config_)
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
            net.eval()
            self.net_ = net
