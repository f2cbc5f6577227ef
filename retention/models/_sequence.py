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

With ``cv_folds=K`` (as ``text_lm`` does) every learning cutoff, ``valid`` included, is split into
K folds of customers and one network per fold trains on the other folds; the epoch with the best
mean held-out ROC-AUC is kept for all of them, their held-out predictions at that epoch are
``oof_`` (an ensemble stacks on them and refits nothing), and the model predicts the mean of the K
networks. ``benchmarks/sequence_folds.py`` measures it against one network plus the ensemble's
refits on the folds.

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
from retention.models._oof import N_FOLDS, check_n_folds, customer_folds

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


def _held_out_record(
    y: np.ndarray, p: np.ndarray, cut: np.ndarray
) -> tuple[float, dict[str, float]]:
    """A held-out fold's score (its mean per-cutoff ROC-AUC, or minus its log loss when no cutoff
    holds both outcomes) and its history record."""
    q = np.clip(p, 1e-7, 1 - 1e-7)
    loss = float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    aucs = [
        float(roc_auc_score(y[cut == c], p[cut == c]))
        for c in np.unique(cut)
        if len(np.unique(y[cut == c])) == 2
    ]
    auc = float(np.mean(aucs)) if aucs else float("nan")
    return (auc if aucs else -loss), {"valid_loss": loss, "valid_roc_auc": auc}


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
    cv_folds : int or None
        Folds of customers (``customer_folds``) for early stopping and the out-of-fold
        predictions, as ``text_lm`` does: every learning cutoff (``train`` and ``valid``) is
        split into ``cv_folds`` folds of customers, one network per fold trains on the other
        folds' customers, its held-out fold is scored after every epoch, and the epoch with the
        best mean held-out ROC-AUC (per cutoff, over the folds) is kept for every network. The
        held-out predictions at that epoch are ``oof_``, which an ensemble stacks on instead of
        refitting the model on folds; the model predicts the mean of the fold networks.
        ``valid_customer_share`` is then unused. None: one network, trained on ``train``,
        stopped early on held-out customers of ``valid``.
    btyd_offset : bool
        Start from BG/NBD: the network's logit is added to the log-odds of the P(retained) of a
        BG/NBD fitted on each cutoff's own history (what gradient boosting boosts from,
        ``retention.models._gbdt.btyd_log_odds``), so the network learns a correction to it.

    Attributes
    ----------
    net_ : torch.nn.Module
        The trained network (the weights of the best validation epoch); with ``cv_folds``, the
        first fold network.
    nets_ : list of torch.nn.Module
        Every trained network (one per fold with ``cv_folds``, else ``[net_]``); predictions are
        their mean.
    oof_ : pd.DataFrame or None
        ``cutoff``, ``user_id``, ``p``: each learning row's prediction by the fold network that
        never trained on that customer (None without ``cv_folds``, and after loading).
    event_types_ : tuple of str
        Event-type vocabulary learned from the training events.
    history_ : list of dict
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_roc_auc`` (and ``fold`` with
        ``cv_folds``: the held-out fold's log loss and mean per-cutoff ROC-AUC).
    best_epoch_ : int
        Epoch (1-based) whose weights were kept.
    btyd_offset_ : bool
        Whether the networks were trained (and so score) on top of the BG/NBD log-odds.
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
        cv_folds: int | None = None,
        btyd_offset: bool = False,
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
        self.cv_folds = cv_folds
        self.btyd_offset = btyd_offset

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        if not isinstance(self.btyd_offset, bool):
            raise ConfigError(f"btyd_offset must be true or false, got {self.btyd_offset!r}.")
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
        if self.cv_folds is not None:
            check_n_folds(self.cv_folds)
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

    def _offsets(self, frame: CutoffFrame, users: pd.Index | None = None) -> np.ndarray:
        """What the network's logit is added to for ``users`` of ``frame`` (default every
        customer, in ``frame.users`` order): the BG/NBD log-odds when trained so, else 0."""
        who = frame.users if users is None else users
        if not getattr(self, "btyd_offset_", False):
            return np.zeros(len(who), dtype=np.float32)
        from retention.models._gbdt import btyd_log_odds

        return btyd_log_odds(frame, who).astype(np.float32)

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

        cv = self.cv_folds is not None
        # with folds every learning cutoff is trained on (by the networks of the other folds)
        seen_frames = [*train, *([valid] if cv and valid is not None else [])]
        all_types = pd.concat(
            [f.events["event_type"] for f in seen_frames if "event_type" in f.events]
        )
        counts = all_types.value_counts()
        self.event_types_ = tuple(str(t) for t in counts.index[: _MAX_EVENT_TYPES - 3])
        table = _item_table([*train, *([valid] if valid is not None else [])], self.item_embeddings)
        self.item_vocabulary_ = table[0] if table is not None else None
        self.max_gap_bucket_ = None
        self.oof_: pd.DataFrame | None = None
        self.btyd_offset_ = bool(self.btyd_offset)
        if cv:
            self._fit_folds(seen_frames, table)
        else:
            self._fit_one(train, ys, valid, y_valid, table)
        self.n_trainable_parameters_ = sum(
            p.numel() for p in self.net_.parameters() if p.requires_grad
        )
        self.train_cutoffs_ = [pd.Timestamp(f.cutoff) for f in train]
        self.valid_cutoff_ = pd.Timestamp(valid.cutoff) if valid is not None else None
        self.horizon_days_ = int(train[0].horizon_days)
        self.train_seconds_ = time.perf_counter() - started
        return self

    def _net_config(self, table: tuple[pd.Index, np.ndarray] | None) -> dict[str, Any]:
        return {
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

    def _new_net(self, table: tuple[pd.Index, np.ndarray] | None) -> _SequenceNet:
        """A network of ``net_config_``, initialised from torch's (seeded) global generator."""
        net = _SequenceNet(**self.net_config_)
        if table is not None:
            net.text_table[1:] = torch.tensor(table[1], dtype=torch.float32)
        return net

    def _fit_one(
        self,
        train: Sequence[CutoffFrame],
        ys: list[np.ndarray],
        valid: CutoffFrame | None,
        y_valid: np.ndarray | None,
        table: tuple[pd.Index, np.ndarray] | None,
    ) -> None:
        """One network on ``train``, stopped early on held-out customers of ``valid``."""
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
        offset = np.concatenate(
            [self._offsets(f, f.users[~h]) for f, h in zip(train, held, strict=True)]
        )
        self.context_mean_ = seq.context.mean(axis=0)
        self.context_std_ = seq.context.std(axis=0) + 1e-6
        valid_users = None
        if valid is not None:
            valid_users = valid.users if held_valid is None else valid.users[held_valid]
        valid_seq = self._sequences(valid, valid_users) if valid is not None else None
        valid_offset = self._offsets(valid, valid_users) if valid is not None else None

        self.net_config_ = self._net_config(table)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            net = self._new_net(table)
            self.net_ = net
            self.nets_ = [net]
            self._train(net, seq, y, valid_seq, y_valid, offset, valid_offset)
        self.n_train_examples_ = len(y)

    def _fit_folds(
        self, learning: Sequence[CutoffFrame], table: tuple[pd.Index, np.ndarray] | None
    ) -> None:
        """One network per fold of customers over every learning cutoff (``cv_folds``).

        The networks train in lockstep, one epoch each in turn; each has its own seed, batch
        order and dropout stream (torch's generator state is swapped per fold), so a fold's
        network depends only on the other folds' customers. After every epoch each network scores
        its held-out fold; the epoch of the best mean (over folds) per-cutoff ROC-AUC is kept for
        every network, and those held-out predictions are ``oof_``. The vocabularies, the gap clip
        and the context scaling come from every learning row's events (no labels).
        """
        n_folds = check_n_folds(self.cv_folds)
        ys = [self._labels(f) for f in learning]
        seq = _concat([self._sequences(f) for f in learning])
        seen = [
            values[seq.mask & (values != N_GAP_BUCKETS)]
            for values in (seq.gap_cutoff, seq.gap_prev)
        ]
        self.max_gap_bucket_ = max([1, *(int(v.max()) for v in seen if v.size)])
        self.context_mean_ = seq.context.mean(axis=0)
        self.context_std_ = seq.context.std(axis=0) + 1e-6
        y = np.concatenate(ys)
        offset = np.concatenate([self._offsets(f) for f in learning])
        users = np.concatenate([f.users.to_numpy(dtype=str) for f in learning])
        cut = np.concatenate([np.full(len(f), i) for i, f in enumerate(learning)])
        folds = customer_folds(users, n_folds)
        plan = [(np.flatnonzero(folds != k), np.flatnonzero(folds == k)) for k in range(n_folds)]
        for k, (fit_rows, eval_rows) in enumerate(plan):
            if not len(eval_rows) or len(np.unique(y[fit_rows])) < 2:
                raise ModelError(
                    f"Fold {k} of {n_folds} leaves no held-out customer or too few of both "
                    f"outcomes to learn from ({len(fit_rows)} rows to train on). Use more "
                    "customers or fewer cv_folds, or cv_folds=None."
                )
        self.net_config_ = self._net_config(table)
        seed = int(self.random_state)
        nets, optimizers, generators, streams = [], [], [], []
        with torch.random.fork_rng(devices=[]):
            for k in range(n_folds):
                torch.manual_seed(seed + 1000 * k)
                net = self._new_net(table)
                nets.append(net)
                optimizers.append(self._optimizer(net))
                generators.append(torch.Generator().manual_seed(seed + 1000 * k))
                streams.append(torch.get_rng_state())
            fit_seqs = [seq.take(rows) for rows, _ in plan]
            eval_seqs = [seq.take(rows) for _, rows in plan]
            fit_ys = [torch.from_numpy(y[rows]) for rows, _ in plan]
            fit_offsets = [torch.from_numpy(offset[rows]) for rows, _ in plan]
            self.history_: list[dict[str, float]] = []
            best_score, best_epoch, waited = -np.inf, 0, 0
            best_states: list[dict[str, torch.Tensor]] = []
            best_preds: list[np.ndarray] = []
            with progress_bar() as bar:
                task = bar.add_task(
                    f"sequence transformer, {n_folds} folds", total=int(self.epochs) * n_folds
                )
                for epoch in range(1, int(self.epochs) + 1):
                    preds, scores = [], []
                    for k, (_, eval_rows) in enumerate(plan):
                        torch.set_rng_state(streams[k])
                        loss = self._epoch(
                            nets[k],
                            optimizers[k],
                            fit_seqs[k],
                            fit_ys[k],
                            generators[k],
                            fit_offsets[k],
                        )
                        streams[k] = torch.get_rng_state()
                        p = self._score(nets[k], eval_seqs[k], offset[eval_rows])
                        score, record = _held_out_record(y[eval_rows], p, cut[eval_rows])
                        self.history_.append(
                            {"fold": float(k), "epoch": float(epoch), "train_loss": loss, **record}
                        )
                        preds.append(p)
                        scores.append(score)
                        bar.update(task, advance=1, info=f"fold {k + 1} loss {loss:.4f}")
                    mean = float(np.mean(scores))
                    bar.update(task, info=f"epoch {epoch} held-out {mean:.4f}")
                    if mean > best_score:
                        best_score, best_epoch, waited = mean, epoch, 0
                        best_states = [copy.deepcopy(net.state_dict()) for net in nets]
                        best_preds = preds
                    else:
                        waited += 1
                    if waited > int(self.patience):
                        break
        for net, state in zip(nets, best_states, strict=True):
            net.load_state_dict(state)
            net.eval()
        self.best_epoch_ = best_epoch
        oof = np.full(len(y), np.nan)
        for (_, eval_rows), p in zip(plan, best_preds, strict=True):
            oof[eval_rows] = p
        cutoffs = np.concatenate(
            [np.repeat(np.datetime64(f.cutoff, "ns"), len(f)) for f in learning]
        )
        self.oof_ = pd.DataFrame({"cutoff": cutoffs, "user_id": users, "p": oof})
        self.nets_ = nets
        self.net_ = nets[0]
        self.n_train_examples_ = len(y)

    def _optimizer(self, net: _SequenceNet) -> torch.optim.Optimizer:
        # fused: one kernel per step for every parameter, instead of a dozen small ops each
        return torch.optim.AdamW(
            net.parameters(),
            lr=float(self.learning_rate),
            weight_decay=float(self.weight_decay),
            fused=True,
        )

    def _epoch(
        self,
        net: _SequenceNet,
        optimizer: torch.optim.Optimizer,
        seq: EventSequences,
        y_t: torch.Tensor,
        generator: torch.Generator,
        offset: torch.Tensor,
    ) -> float:
        """One pass over ``seq`` in length-bucketed batches; the mean training loss. ``offset``
        (per row) is added to the network's logit."""
        net.train()
        total = 0.0
        for rows in _length_batches(seq.lengths, int(self.batch_size), generator):
            batch = _as_tensors(seq.take(rows), self.context_mean_, self.context_std_)
            loss = F.binary_cross_entropy_with_logits(net(batch) + offset[rows], y_t[rows])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0, foreach=True)
            optimizer.step()
            total += loss.item() * len(rows)
        return total / max(1, len(seq))

    def _train(
        self,
        net: _SequenceNet,
        seq: EventSequences,
        y: np.ndarray,
        valid_seq: EventSequences | None,
        y_valid: np.ndarray | None,
        offset: np.ndarray,
        valid_offset: np.ndarray | None,
    ) -> None:
        optimizer = self._optimizer(net)
        generator = torch.Generator().manual_seed(int(self.random_state))
        y_t = torch.from_numpy(y)
        off_t = torch.from_numpy(offset)
        self.history_ = []
        best_score, best_state, best_epoch, waited = -np.inf, None, 0, 0
        with progress_bar() as bar:
            task = bar.add_task("sequence transformer", total=int(self.epochs))
            for epoch in range(1, int(self.epochs) + 1):
                loss = self._epoch(net, optimizer, seq, y_t, generator, off_t)
                record = {"epoch": float(epoch), "train_loss": loss}
                info = f"loss {record['train_loss']:.4f}"
                if valid_seq is not None and y_valid is not None and len(y_valid):
                    p = self._score(net, valid_seq, valid_offset)
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
    def _score(
        self, net: _SequenceNet, seq: EventSequences, offset: np.ndarray | None = None
    ) -> np.ndarray:
        """Probabilities in row order; batches of similar length, each trimmed of padding.
        ``offset`` (per row) is added to the network's logit."""
        net.eval()
        out = np.empty(len(seq), dtype=np.float64)
        order = np.argsort(seq.lengths, kind="stable")
        with torch.no_grad():
            for start in range(0, len(seq), _SCORE_BATCH):
                rows = order[start : start + _SCORE_BATCH]
                batch = _as_tensors(seq.take(rows), self.context_mean_, self.context_std_)
                logit = net(batch).double()
                if offset is not None:
                    logit = logit + torch.from_numpy(offset[rows].astype(np.float64))
                out[rows] = torch.sigmoid(logit).numpy()
        return out

    def predict_proba(self, frame: CutoffFrame) -> np.ndarray:
        """P(retained) for every customer of ``frame``, in the order of ``frame.users``."""
        check_is_fitted(self, "net_")
        if len(frame) == 0:
            return np.empty(0, dtype=np.float64)
        with _torch_threads(getattr(self, "n_threads", None)):
            seq = self._sequences(frame)
            offset = self._offsets(frame) if getattr(self, "btyd_offset_", False) else None
            nets = getattr(self, "nets_", None) or [self.net_]
            if len(nets) == 1:
                return self._score(nets[0], seq, offset)
            return np.mean([self._score(net, seq, offset) for net in nets], axis=0)

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
            "btyd_offset_": bool(getattr(self, "btyd_offset_", False)),
        }
        nets = getattr(self, "nets_", None) or [self.net_]
        parts: dict[str, Any] = {
            "context_mean": np.asarray(self.context_mean_),
            "context_std": np.asarray(self.context_std_),
        }
        if len(nets) == 1:  # the format of every artifact before fold networks
            weights = {k: v.detach().cpu().contiguous() for k, v in nets[0].state_dict().items()}
            parts["net.safetensors"] = save(weights)
        else:  # fold networks: "<fold>.<weight>"
            state["n_nets_"] = len(nets)
            parts["nets.safetensors"] = save(
                {
                    f"{i}.{k}": v.detach().cpu().contiguous()
                    for i, net in enumerate(nets)
                    for k, v in net.state_dict().items()
                }
            )
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
        if "nets.safetensors" in parts:
            n_nets = int(state.get("n_nets_", 0))
            weights = load(parts["nets.safetensors"])
            per_net: list[dict[str, torch.Tensor]] = [{} for _ in range(n_nets)]
            for key, value in weights.items():
                i, _, name = key.partition(".")
                if not (i.isdigit() and int(i) < n_nets):
                    raise ModelError(
                        f"The saved sequence model's weights hold {key!r}, not one of its "
                        f"{n_nets} fold networks: the artifact is damaged. Train the model again."
                    )
                per_net[int(i)][name] = value
        elif "net.safetensors" in parts:
            per_net = [load(parts["net.safetensors"])]
        else:
            raise ModelError(
                "The saved sequence model holds no network weights (net.safetensors or "
                "nets.safetensors): the artifact is damaged. Train the model again."
            )
        nets = []
        for weights_of_net in per_net:
            net = _SequenceNet(**config)
            net.load_state_dict(weights_of_net)  # strict: every weight, no other
            net.eval()
            nets.append(net)
        if not nets:
            raise ModelError(
                "The saved sequence model lists no fold network (n_nets_ is 0): the artifact "
                "is damaged. Train the model again."
            )
        self.nets_ = nets
        self.net_ = nets[0]
        self.oof_ = None  # only needed while an ensemble is stacked on the same frames
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
        # saved before the option: trained without the offset, and a clone refits so
        self.btyd_offset_ = bool(state.get("btyd_offset_", False))
        if "btyd_offset_" not in state:
            self.btyd_offset = False

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        net = state.pop("net_", None)
        nets = state.pop("nets_", None) or ([net] if net is not None else [])
        if nets:
            state["_nets_state"] = [
                {k: v.detach().cpu().numpy() for k, v in n.state_dict().items()} for n in nets
            ]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        one = state.pop("_net_state", None)  # pickled before fold networks
        many = state.pop("_nets_state", None) or ([one] if one is not None else [])
        self.__dict__.update(state)
        self.__dict__.setdefault("btyd_offset", False)  # pickled before the option
        if many:
            nets = []
            for weights in many:
                net = _SequenceNet(**self.net_config_)
                net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
                net.eval()
                nets.append(net)
            self.nets_ = nets
            self.net_ = nets[0]
