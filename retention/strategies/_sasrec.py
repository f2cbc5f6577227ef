"""A SASRec-style sequential recommender (Kang & McAuley, 2018) in PyTorch.

Causal self-attention over each customer's last ``max_length`` items predicts the next item at
every position. Training uses the full softmax over the catalogue (cross-entropy, ``loss="ce"``:
what Klenitskiy & Vasilev, 2023, found to lift SASRec above BERT4Rec) or a sampled softmax over
``n_negatives`` items shared by the batch (``loss="sampled"``), with dropout and early stopping on
the validation item. Item embeddings are shared between input and output.

The cost stays proportional to the real items, not to ``max_length``: sequences are right-padded
(causal attention then never lets a real item see padding), batches hold sequences of similar
length and are cut to their longest one, and the output layer is computed only at real positions.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import progress_bar
from retention.exceptions import ConfigError
from retention.strategies._recommend_base import (
    Recommender,
    _check_float,
    _check_int,
    _item_column,
    _last_items,
)
from retention.strategies._recommend_data import ItemSequences
from retention.strategies._recommend_metrics import ranking_metrics, target_ranks

__all__ = ["SASRecRecommender"]


def _net(
    n_items: int,
    max_length: int,
    d: int,
    heads: int,
    blocks: int,
    dropout: float,
    tokens: np.ndarray | None = None,
) -> Any:
    """The network; ``tokens`` (``(n_items + 1, width)`` category-token ids, 0 for none, row 0
    the padding item) adds each item's mean token embedding to its id embedding."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.out = nn.Linear(d, d)
            self.norm2 = nn.LayerNorm(d)
            self.ff = nn.Sequential(
                nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout), nn.Linear(d, d)
            )
            self.drop = nn.Dropout(dropout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, length, _ = x.shape
            q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, length, heads, d // heads).transpose(1, 2)

            att = F.scaled_dot_product_attention(
                split(q),
                split(k),
                split(v),
                is_causal=True,
                dropout_p=dropout if self.training else 0.0,
            )
            att = att.transpose(1, 2).reshape(b, length, d)
            x = x + self.drop(self.out(att))
            return x + self.drop(self.ff(self.norm2(x)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
            self.pos = nn.Embedding(max_length, d)
            self.drop = nn.Dropout(dropout)
            self.blocks = nn.ModuleList([Block() for _ in range(blocks)])
            self.norm = nn.LayerNorm(d)
            nn.init.normal_(self.item.weight, std=0.02)
            nn.init.normal_(self.pos.weight, std=0.02)
            with torch.no_grad():
                self.item.weight[0].zero_()
            self.token: nn.Embedding | None = None
            if tokens is not None:
                tok = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
                self.token = nn.Embedding(int(tok.max()) + 1, d, padding_idx=0)
                nn.init.normal_(self.token.weight, std=0.02)
                with torch.no_grad():
                    self.token.weight[0].zero_()
                # each item's token mean as a sparse (items x tokens) product: 5x cheaper than
                # gathering (items, width, d) and summing, forward and backward; derived from
                # ``tokens`` (the model's ``item_tokens_``), so not part of the saved weights
                rows, cols = torch.nonzero(tok > 0, as_tuple=True)
                counts = (tok > 0).sum(1).clamp(min=1).float()
                mean = torch.sparse_coo_tensor(
                    torch.stack([rows, tok[rows, cols]]),
                    1.0 / counts[rows],
                    (len(tok), self.token.num_embeddings),
                    check_invariants=True,
                ).coalesce()
                self.register_buffer("token_mean", mean, persistent=False)

        def table(self) -> torch.Tensor:
            """Every item's embedding (row 0: padding): its id's, plus its tokens' mean."""
            if self.token is None:
                return self.item.weight
            return self.item.weight + torch.sparse.mm(self.token_mean, self.token.weight)

        def forward(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
            """The output at every position; ``table`` is :meth:`table`'s (computed once per
            step by the caller, which also scores with it)."""
            length = seq.shape[1]
            table = self.table() if table is None else table
            x = F.embedding(seq, table) * math.sqrt(d) + self.pos.weight[:length][None]
            x = self.drop(x) * (seq > 0).unsqueeze(-1)
            for blk in self.blocks:
                x = blk(x)
            return self.norm(x)

        def item_matrix(self) -> torch.Tensor:
            return self.table()[1:]

    return Net()


class SASRecRecommender(Recommender):
    """Self-attentive sequential recommendation: the next item from the order of the last ones.

    Parameters
    ----------
    max_length : int
        Items of each history the model reads (the most recent ones).
    d_model : int
        Width of the item embeddings and the transformer.
    n_heads : int
        Attention heads (must divide ``d_model``).
    n_blocks : int
        Transformer blocks.
    dropout : float
        Dropout on embeddings, attention and feed-forward outputs (SASRec's 0.5 for sparse data).
    loss : {"ce", "sampled"}
        Full softmax cross-entropy over the catalogue, or a sampled softmax.
    n_negatives : int
        Items sampled (uniformly, shared by a batch) for ``loss="sampled"``.
    learning_rate, weight_decay : float
        AdamW settings.
    batch_size : int
        Customers per step.
    epochs : int
        Most epochs (with validation items) or exactly this many (without).
    patience : int or None
        Stop after this many epochs without a better validation NDCG@10 (None: never stop
        early).
    average_last : int
        Average the weights of the last this many epochs (1: the last epoch's own), evaluated
        and kept as one model.
    label_smoothing : float
        Share of the target's probability mass spread over the other items (cross-entropy's
        label smoothing; 0: none).
    item_categories : bool
        Add to each item's id embedding the mean embedding of its category tokens (the items
        table's ``category``, split at spaces and at ``> | / , ;``), so that items of one brand
        or category share what is learned, in the input and in the output layer. Items without
        a category keep their id embedding alone; without an items table this changes nothing.
    n_seeds : int
        Networks trained with the seeds ``random_state``, ``random_state + 1``, ...; their
        next-item log-probabilities are averaged (seed averaging). With validation items the
        first network alone chooses the epoch count (early stopping) and the others train for
        that many epochs, so the search costs ``n_seeds - 1`` fixed runs more, not
        ``n_seeds`` searches.
    random_state : int
        Seed of the weights, the batches and the dropout.
    n_threads : int or None
        Torch threads while fitting (None: torch's own setting). On a machine shared with other
        jobs, 1 avoids threads spinning while they wait for each other.
    window_days : int or None
        Popularity window of the fallback.
    exclude_seen : bool
        Leave out the items a customer already has.

    Attributes
    ----------
    best_epoch_ : int
        Epochs of the kept weights (the best on validation, or ``epochs``).
    history_ : list of dict
        Per epoch of the first network: ``epoch``, ``loss``, ``seconds`` and
        ``valid_ndcg@10`` when validated.
    nets_ : list
        The ``n_seeds`` trained networks (``net_`` is the first).
    seed_seconds_ : list of float
        Training seconds of each network.
    """

    name = "sasrec"

    def __init__(
        self,
        max_length: int = 50,
        d_model: int = 64,
        n_heads: int = 1,
        n_blocks: int = 2,
        dropout: float = 0.5,
        loss: str = "ce",
        n_negatives: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        epochs: int = 200,
        patience: int | None = 5,
        average_last: int = 1,
        label_smoothing: float = 0.0,
        item_categories: bool = False,
        n_seeds: int = 1,
        random_state: int = 0,
        n_threads: int | None = None,
        window_days: int | None = 30,
        exclude_seen: bool = True,
    ) -> None:
        self.max_length = max_length
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_blocks = n_blocks
        self.dropout = dropout
        self.loss = loss
        self.n_negatives = n_negatives
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.average_last = average_last
        self.label_smoothing = label_smoothing
        self.item_categories = item_categories
        self.n_seeds = n_seeds
        self.random_state = random_state
        self.n_threads = n_threads
        self.window_days = window_days
        self.exclude_seen = exclude_seen

    # -- checks -----------------------------------------------------------------------------------
    def _check_params(self) -> None:
        _check_int(self.max_length, "max_length")
        d = _check_int(self.d_model, "d_model")
        h = _check_int(self.n_heads, "n_heads")
        assert d is not None and h is not None
        if d % h:
            raise ConfigError(f"n_heads must divide d_model ({d}); got {self.n_heads!r}.")
        _check_int(self.n_blocks, "n_blocks")
        p = _check_float(self.dropout, "dropout")
        if p >= 1:
            raise ConfigError(f"dropout must be a number in [0, 1); got {self.dropout!r}.")
        if self.loss not in ("ce", "sampled"):
            raise ConfigError(f"loss must be 'ce' or 'sampled'; got {self.loss!r}.")
        _check_int(self.n_negatives, "n_negatives")
        _check_float(self.learning_rate, "learning_rate", strict=True)
        _check_float(self.weight_decay, "weight_decay")
        _check_int(self.batch_size, "batch_size")
        _check_int(self.epochs, "epochs")
        _check_int(self.patience, "patience", allow_none=True)
        _check_int(self.average_last, "average_last")
        ls = _check_float(self.label_smoothing, "label_smoothing")
        if ls >= 1:
            raise ConfigError(
                f"label_smoothing must be a number in [0, 1); got {self.label_smoothing!r}."
            )
        if not isinstance(self.item_categories, bool | np.bool_):
            raise ConfigError(
                f"item_categories must be True or False; got {self.item_categories!r}."
            )
        _check_int(self.n_seeds, "n_seeds")
        _check_int(self.random_state, "random_state", minimum=0)
        _check_int(self.n_threads, "n_threads", allow_none=True)

    # -- data -------------------------------------------------------------------------------------
    def _inputs(self, histories: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded ``(n, width)`` token ids (code + 1) of the last ``max_length`` items,
        and each row's length."""
        cut = [np.asarray(h, dtype=np.int64)[-int(self.max_length) :] for h in histories]
        lengths = np.array([len(h) for h in cut], dtype=np.int64)
        width = max(1, int(lengths.max()) if len(lengths) else 1)
        out = np.zeros((len(cut), width), dtype=np.int64)
        for i, h in enumerate(cut):
            out[i, : len(h)] = h + 1
        return out, lengths

    def _training_pairs(self, seqs: ItemSequences) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inputs (token ids), targets (codes, -1 padding) and lengths of every customer with at
        least two items: each position predicts the next item."""
        length = int(self.max_length)
        rows = [h[-(length + 1) :] for h in seqs.histories() if len(h) >= 2]
        n = len(rows)
        inputs = np.zeros((n, length), dtype=np.int64)
        targets = np.full((n, length), -1, dtype=np.int64)
        lengths = np.zeros(n, dtype=np.int64)
        for i, h in enumerate(rows):
            m = len(h) - 1
            inputs[i, :m] = h[:-1] + 1
            targets[i, :m] = h[1:]
            lengths[i] = m
        return inputs, targets, lengths

    # -- fitting ----------------------------------------------------------------------------------
    def _new_net(self, n_items: int) -> Any:
        """A network of this model's shape over ``n_items`` items (and ``item_tokens_``)."""
        return _net(
            n_items,
            int(self.max_length),
            int(self.d_model),
            int(self.n_heads),
            int(self.n_blocks),
            float(self.dropout),
            self.item_tokens_,
        )

    def _fit(self, sequences: ItemSequences, valid_targets: np.ndarray | None, items: Any) -> None:
        import torch

        inputs, targets, lengths = self._training_pairs(sequences)
        n_items = sequences.n_items
        self.category_tokens_, self.item_tokens_ = (
            _category_tokens(items, sequences.items) if self.item_categories else ([], None)
        )
        validate = valid_targets is not None and bool((valid_targets >= 0).any())
        v_hist: list[np.ndarray] = []
        v_targets: np.ndarray | None = None
        if validate:
            assert valid_targets is not None
            v_rows = np.flatnonzero(valid_targets >= 0)
            v_hist = [sequences.history(int(r)) for r in v_rows]
            v_targets = valid_targets[v_rows]
        threads = torch.get_num_threads()
        if self.n_threads is not None:
            torch.set_num_threads(int(self.n_threads))
        try:
            nets: list[Any] = []
            seconds: list[float] = []
            epochs = int(self.epochs)
            for i in range(int(self.n_seeds)):
                # the first network chooses the epoch count; the others train that many epochs
                seed = int(self.random_state) + i
                t0 = time.perf_counter()
                net, best_epoch, history = self._train(
                    torch,
                    inputs,
                    targets,
                    lengths,
                    n_items,
                    seed,
                    epochs,
                    validate and i == 0,
                    v_hist,
                    v_targets,
                )
                seconds.append(time.perf_counter() - t0)
                nets.append(net)
                if i == 0:
                    self.best_epoch_, self.history_ = best_epoch, history
                    epochs = best_epoch
        finally:
            torch.set_num_threads(threads)
        self.nets_ = nets
        self.net_ = nets[0]
        self.seed_seconds_ = seconds
        self.n_trainable_parameters_ = int(sum(p.numel() for p in self.net_.parameters()))

    def _train(
        self,
        torch: Any,
        inputs: np.ndarray,
        targets: np.ndarray,
        lengths: np.ndarray,
        n_items: int,
        seed: int,
        epochs: int,
        validate: bool,
        v_hist: list[np.ndarray],
        v_targets: np.ndarray | None,
    ) -> tuple[Any, int, list[dict[str, Any]]]:
        """One network from ``seed``: its kept weights, their epoch count and the history."""
        rng = np.random.default_rng(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self._new_net(n_items)
            opt = torch.optim.AdamW(
                net.parameters(),
                lr=float(self.learning_rate),
                weight_decay=float(self.weight_decay),
            )
            recent: deque[dict[str, Any]] = deque(maxlen=int(self.average_last))
            history: list[dict[str, Any]] = []
            best, best_state, best_epoch, stale = -1.0, None, 0, 0
            with progress_bar(transient=True) as bar:
                label = "training SASRec" + (
                    f" (seed {seed - int(self.random_state) + 1} of {int(self.n_seeds)})"
                    if int(self.n_seeds) > 1
                    else ""
                )
                task = bar.add_task(label, total=epochs)
                for epoch in range(1, epochs + 1):
                    t0 = time.perf_counter()
                    loss = self._epoch(net, opt, inputs, targets, lengths, n_items, rng)
                    recent.append(copy.deepcopy(net.state_dict()))
                    state = _average(recent)
                    row: dict[str, Any] = {"epoch": epoch, "loss": loss}
                    if validate:
                        assert v_targets is not None
                        ndcg = self._validate(net, state, v_hist, v_targets)
                        row["valid_ndcg@10"] = ndcg
                        if ndcg > best:
                            best, best_state, best_epoch, stale = ndcg, state, epoch, 0
                        else:
                            stale += 1
                    else:
                        best_state, best_epoch = state, epoch
                    row["seconds"] = time.perf_counter() - t0
                    history.append(row)
                    info = f"loss {loss:.3f}" + (
                        f" valid ndcg@10 {row['valid_ndcg@10']:.4f}" if validate else ""
                    )
                    bar.update(task, advance=1, info=info)
                    if validate and self.patience is not None and stale >= int(self.patience):
                        break
            assert best_state is not None
            net.load_state_dict(best_state)
            net.eval()
        return net, int(best_epoch), history

    def _epoch(
        self,
        net: Any,
        opt: Any,
        inputs: np.ndarray,
        targets: np.ndarray,
        lengths: np.ndarray,
        n_items: int,
        rng: np.random.Generator,
    ) -> float:
        import torch
        from torch.nn import functional as F

        net.train()
        n = len(inputs)
        if n == 0:
            return float("nan")
        size = int(self.batch_size)
        # batches of customers of similar length, in a new random order every epoch
        order = np.lexsort((rng.random(n), lengths))
        batches = [order[s : s + size] for s in range(0, n, size)]
        rng.shuffle(batches)  # type: ignore[arg-type]
        total, count = 0.0, 0
        smoothing = float(self.label_smoothing)
        for idx in batches:
            width = int(lengths[idx].max())
            x = torch.from_numpy(inputs[idx, :width])
            y = torch.from_numpy(targets[idx, :width])
            table = net.table()
            h = net(x, table)
            real = y >= 0
            hr = h[real]
            yr = y[real]
            w = table[1:]
            if self.loss == "ce":
                logits = hr @ w.T
                loss = F.cross_entropy(logits, yr, label_smoothing=smoothing)
            else:
                negs = torch.from_numpy(
                    rng.integers(0, n_items, size=int(self.n_negatives)).astype(np.int64)
                )
                pos = (hr * w[yr]).sum(-1, keepdim=True)
                neg = hr @ w[negs].T
                neg = neg.masked_fill(negs[None, :] == yr[:, None], float("-inf"))
                logits = torch.cat([pos, neg], dim=1)
                loss = F.cross_entropy(
                    logits, torch.zeros(len(yr), dtype=torch.long), label_smoothing=smoothing
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(yr)
            count += len(yr)
        return total / max(count, 1)

    def _validate(
        self, net: Any, state: dict[str, Any], histories: list[np.ndarray], targets: np.ndarray
    ) -> float:
        import torch

        live = copy.deepcopy(net.state_dict())
        net.load_state_dict(state)
        net.eval()
        ranks = []
        with torch.inference_mode():
            for s in range(0, len(histories), 1024):
                block = histories[s : s + 1024]
                scores = self._net_logits(net, block)
                excl = [np.unique(h) for h in block] if self.exclude_seen else None
                ranks.append(target_ranks(scores, targets[s : s + 1024], excl))
        net.load_state_dict(live)
        net.train()
        return ranking_metrics(np.concatenate(ranks), 10)["ndcg@10"]

    # -- scoring ----------------------------------------------------------------------------------
    def _net_logits(self, net: Any, histories: Sequence[np.ndarray]) -> np.ndarray:
        """One network's float32 next-item logits (popularity's log for an empty history)."""
        import torch

        x, lengths = self._inputs(histories)
        with torch.inference_mode():
            h = net(torch.from_numpy(x))
            last = h[torch.arange(len(x)), torch.from_numpy(np.maximum(lengths - 1, 0))]
            logits = (last @ net.item_matrix().T).numpy()
        empty = lengths == 0
        if empty.any():
            logits[empty] = np.log(np.maximum(self.popularity_, 1e-12))[None, :]
        return logits

    def _logits(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """The next-item logits (float64): with several networks, the mean of their
        log-softmax."""
        nets = getattr(self, "nets_", None) or [self.net_]
        if len(nets) == 1:
            return self._net_logits(nets[0], histories).astype(np.float64)
        total = np.zeros((len(histories), len(self.items_)), dtype=np.float64)
        for net in nets:
            z = self._net_logits(net, histories).astype(np.float64)
            z -= z.max(axis=1, keepdims=True)
            total += z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return total / len(nets)

    def _score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        for net in getattr(self, "nets_", None) or [self.net_]:
            net.eval()
        return self._logits(histories).astype(np.float32)

    def item_probabilities(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """The softmax of the next-item logits."""
        logits = self._logits(histories)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    def _reason(self, history: np.ndarray, item: int) -> str | None:
        last = _last_items(history, 5)
        if not len(last):
            return None
        w = self.net_.item_matrix().detach().numpy()
        a = w[last] / np.maximum(np.linalg.norm(w[last], axis=1, keepdims=True), 1e-12)
        b = w[item] / max(float(np.linalg.norm(w[item])), 1e-12)
        j = int(np.argmax(a @ b))
        return f"customers who bought {self._title(int(last[j]))} went on to buy it"

    def frozen_params(self) -> dict[str, Any]:
        params = self.get_params(deep=False)
        params["epochs"] = int(self.best_epoch_)
        params["patience"] = None
        return params

    # -- persistence ------------------------------------------------------------------------------
    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from safetensors.torch import save

        nets = getattr(self, "nets_", None) or [self.net_]
        parts: dict[str, Any] = {}
        for i, net in enumerate(nets):
            weights = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
            parts["net.safetensors" if i == 0 else f"net{i}.safetensors"] = save(weights)
        state = {
            "best_epoch": self.best_epoch_,
            "history": self.history_,
            "n_items": len(self.items_),
            "n_nets": len(nets),
            "category_tokens": list(self.category_tokens_),
        }
        if self.item_tokens_ is not None:
            parts["item_tokens"] = self.item_tokens_
        return state, parts

    def _set_model_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        from safetensors.torch import load

        self.category_tokens_ = list(state.get("category_tokens", []))
        tokens = parts.get("item_tokens")
        self.item_tokens_ = None if tokens is None else np.asarray(tokens, dtype=np.int64)
        nets = []
        for i in range(int(state.get("n_nets", 1))):
            net = self._new_net(int(state["n_items"]))
            net.load_state_dict(load(parts["net.safetensors" if i == 0 else f"net{i}.safetensors"]))
            net.eval()
            nets.append(net)
        self.nets_ = nets
        self.net_ = net = nets[0]
        self.best_epoch_ = int(state["best_epoch"])
        self.history_ = list(state["history"])
        self.n_trainable_parameters_ = int(sum(p.numel() for p in net.parameters()))


def _average(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The mean of several state dicts (the one state itself when there is one)."""
    if len(states) == 1:
        return copy.deepcopy(states[0])
    out = {}
    for key in states[0]:
        out[key] = sum(s[key].float() for s in states) / len(states)
    return out


#: what separates the tokens of a category ("Beauty > Skin Care > Face", "12 7 3", "a|b")
_TOKEN_SPLIT = re.compile(r"[\s>|/,;]+")


def _category_tokens(
    items: pd.DataFrame | None, vocab: pd.Index
) -> tuple[list[str], np.ndarray | None]:
    """The category tokens and each item's token ids (``(len(vocab) + 1, width)``, 0 for none,
    row 0 for the padding item), from the items table's ``category``; ``([], None)`` when no
    item of ``vocab`` has one."""
    category = _item_column(items, vocab, "category")
    if category is None:
        return [], None
    per_item = [
        [] if c is None else [t for t in _TOKEN_SPLIT.split(c.strip().lower()) if t]
        for c in category
    ]
    names = sorted({t for toks in per_item for t in toks})
    if not names:
        return [], None
    ids = {t: i + 1 for i, t in enumerate(names)}
    width = max(len(dict.fromkeys(toks)) for toks in per_item)
    out = np.zeros((len(vocab) + 1, width), dtype=np.int64)
    for row, toks in enumerate(per_item, start=1):
        codes = [ids[t] for t in dict.fromkeys(toks)]
        out[row, : len(codes)] = codes
    return names, out
