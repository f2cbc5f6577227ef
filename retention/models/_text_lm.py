"""A pretrained text encoder fine-tuned on customer histories written as text (full or LoRA).

Each customer's events before the cutoff become one short line of text
(:func:`retention.features.history_text`: ``"4 orders in 210 days, last 23 days ago, every 62
days, spent 812. 23 days ago bought 5 items for 99: red oven glove, ..."``, newest first, so
that truncation drops the oldest orders). The pretrained encoder (``transformers.AutoModel``)
reads it, its [CLS] output (or the mean of its token vectors) goes through a linear head, and
that is added to the BG/NBD log-odds of the customer (``btyd_offset``, as gradient boosting
boosts from them) to give the logit of "comes back within the horizon": the encoder learns what
the history's text says beyond BG/NBD.

What makes it affordable on a CPU: only the top ``trainable_layers`` layers of the encoder learn
(LoRA adapters on their attention query and value projections for ``method="lora"``, every
weight of those layers for ``method="full"``); the frozen layers below run **once** per history
and their hidden states are kept (float16) for every epoch and every fold. Training then costs a
forward and backward pass through one or two layers instead of six. ``trainable_layers=None``
trains all layers (adapters everywhere for LoRA, and for ``full`` every weight including the
embeddings, which reads the tokens at every step: the slow, classic fine-tuning).

Validation never leaks customers (see :mod:`retention.models._oof`): the rows of every learning
cutoff (``train`` and ``valid``) are split into ``cv_folds`` folds of customers; one network per
fold trains on the other folds for up to ``epochs`` epochs in length-bucketed batches, its
held-out fold scored after every epoch; the epoch where the mean held-out log loss is lowest is
kept for every fold, the held-out predictions at that epoch are the out-of-fold predictions
``oof_`` an ensemble stacks on, and the model predicts the mean of the fold networks. With
``cv_folds=None`` one network trains on ``train`` and ``valid`` picks its epoch.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from retention._progress import progress_bar
from retention.exceptions import ConfigError, DataError, ModelError
from retention.features import (
    CutoffFrame,
    TextEncoder,
    history_text,
    mean_pool,
    resolve_encoder,
    serialise_history,
)
from retention.models._base import RetentionModel, check_is_fitted
from retention.models._oof import check_n_folds, customer_folds

__all__ = ["TextLMModel"]

#: attention projections LoRA adapts, by model type (encoders whose layers we can split)
_LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
}
_HISTORIES = ("orders", "events")
_POOLINGS = ("cls", "mean")

#: what the frozen layers made of a history, shared by every model of the process (the frozen
#: part is the pretrained encoder's, so text_lm and text_lm_lora, their folds, and a later
#: prediction on the same histories reuse it): key (encoder folder, frozen layers, max_length,
#: text) -> float16 hidden states or token ids; least recently used first out
_LOWER_CACHE: OrderedDict[tuple[str, int, int, bool, str], Any] = OrderedDict()
#: rows the cache keeps (about 50 kB each for MiniLM at 64 tokens)
LOWER_CACHE_ROWS = 30_000


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (unchanged when None), restoring the setting after."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _stratified_subsample(y: np.ndarray, n: int, rng: np.random.RandomState) -> np.ndarray:
    """Indices of at most ``n`` rows keeping the share of each label (sorted)."""
    if n >= len(y):
        return np.arange(len(y))
    picked = []
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        k = round(n * len(idx) / len(y))
        k = min(len(idx), max(k, 1 if len(idx) else 0))
        picked.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(picked))


def _cls_layer(layer: Any, h: Any, mask: Any) -> Any:
    """A BERT layer's output for the first ([CLS]) token alone: its query attends over every
    token's key and value; the feed-forward part runs for that one token."""
    import torch

    sa = layer.attention.self
    b, t, _ = h.shape
    heads, size = int(sa.num_attention_heads), int(sa.attention_head_size)
    q = sa.query(h[:, :1]).view(b, 1, heads, size).transpose(1, 2)
    k = sa.key(h).view(b, t, heads, size).transpose(1, 2)
    v = sa.value(h).view(b, t, heads, size).transpose(1, 2)
    ctx = torch.nn.functional.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=mask[:, None, None, :].bool(),
        dropout_p=float(sa.dropout.p) if layer.training else 0.0,
    )
    ctx = ctx.transpose(1, 2).reshape(b, 1, heads * size)
    a = layer.attention.output(ctx, h[:, :1])
    return layer.output(layer.intermediate(a), a)[:, 0]


def _build_upper(
    layers: Any, embeddings: Any, config: Any, hidden: int, dropout: float, pooling: str
) -> Any:
    """The trained part: (embeddings ->) top layers -> pooling -> dropout -> logit."""
    import torch
    from torch import nn
    from transformers.masking_utils import create_bidirectional_mask

    class _Upper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = embeddings
            self.layers = layers
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(hidden, 1)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            h = self.embeddings(input_ids=x) if self.embeddings is not None else x
            cls = pooling == "cls"
            full = list(self.layers)[:-1] if cls else list(self.layers)
            if full:
                ext = create_bidirectional_mask(config=config, inputs_embeds=h, attention_mask=mask)
                for layer in full:
                    out = layer(h, ext)
                    h = out[0] if isinstance(out, tuple) else out
            if not cls:
                pooled = mean_pool(h, mask)
            elif len(self.layers):
                pooled = _cls_layer(self.layers[-1], h, mask)
            else:
                pooled = h[:, 0]
            logit: torch.Tensor = self.head(self.dropout(pooled)).squeeze(-1)
            return logit

    return _Upper()


class TextLMModel(RetentionModel):
    """Fine-tuned pretrained encoder over histories written as text (``text_lm``, ``text_lm_lora``).

    Parameters
    ----------
    method : {"full", "lora"}
        Train every weight of the trained layers, or LoRA adapters on their attention query and
        value projections (the pretrained weights stay frozen).
    encoder : TextEncoder or str, optional
        The pretrained encoder or its name (default: the setting ``RETENTION_ENCODER``); a
        BERT-type transformers encoder (``all-MiniLM-L6-v2``).
    trainable_layers : int or None
        Top encoder layers that learn; the frozen layers below run once per history and their
        output is cached. 0: the head alone on the frozen encoder. None: every layer (for
        ``full`` also the embeddings, reading tokens at every step: slow).
    pooling : {"cls", "mean"}
        What the head reads: the top layer's output for the first ([CLS]) token, computed for
        that token alone (its query attends over every token: about 6 times less work in that
        layer), or the mean of every token's output (the pretrained sentence embedding).
    history : {"orders", "events"}
        The text: one clause per order with a summary first
        (:func:`retention.features.history_text`), or one clause per event line
        (:func:`retention.features.serialise_history`).
    max_length : int
        Tokens read per customer (the newest part of the history).
    epochs : int
        Most passes over the training rows; the best epoch on held-out customers is kept.
    batch_size : int
        Examples per step (batches hold histories of similar length).
    learning_rate : float, optional
        Default 5e-5 for ``full`` over every layer, 2e-4 for ``full`` over the top layers and
        1e-3 for ``lora``.
    lora_r, lora_alpha, lora_dropout
        LoRA rank, scaling and dropout.
    btyd_offset : bool
        Start from BG/NBD: the network's output is added to the log-odds of the P(retained) of a
        BG/NBD fitted on each cutoff's own history (the one gradient boosting boosts from,
        ``retention.models._gbdt.btyd_details``), so the fine-tuned encoder learns a correction
        to BG/NBD rather than the whole score, and BG/NBD's adaptation to each cutoff (its
        level, the season) comes with it. On (default): chosen at the validation designs of the
        transformers benchmark (Online Retail, test cutoffs 2011-06-12 and 2011-05-13), where
        it raised the LoRA model from 0.711 / 0.708 to 0.749 / 0.740 ROC-AUC and the top layer
        trained in full from 0.716 to 0.746. False: the whole score comes from the text.
    cv_folds : int or None
        Folds of customers for early stopping and the out-of-fold predictions (one network per
        fold; the model predicts their mean). None: one network on ``train``, ``valid`` picks
        the epoch (its customers are the training ones: it over-trusts memorisation).
    max_train_examples : int, optional
        Learning rows drawn (stratified by label, seeded); None: all of them.
    max_valid_examples : int, optional
        With ``cv_folds=None``: ``valid`` rows scored at each evaluation (None: all).
    evals_per_epoch : int
        Held-out evaluations per epoch (each a candidate checkpoint).
    patience : int
        Evaluations without a better held-out log loss before a network stops (0: never).
    dropout : float
        Dropout before the head.
    weight_decay : float
        AdamW weight decay.
    max_chars : int, optional
        Characters of history written per customer (default ``6 * max_length``).
    n_jobs : int, optional
        Torch threads while fitting and scoring (default: torch's own setting).
    random_state : int
        Seed of the subsample, the heads, the adapters, dropout and the batch order.

    Attributes
    ----------
    trainable_parameters_ : int
        Parameters updated by training (of one fold network).
    total_parameters_ : int
        All parameters of the encoder and head.
    fit_seconds_, fit_cpu_seconds_ : float
        Wall and CPU (all threads) time of ``fit``.
    cache_seconds_ : float
        Wall time of the frozen layers' pass over the learning histories.
    train_examples_per_second_ : float
        Training throughput (forward + backward over the trained layers), evaluations excluded.
    n_train_examples_ : int
        Learning rows (customer x cutoff) trained on.
    history_ : list of dict
        Per evaluation and fold: ``fold``, ``epoch``, ``train_loss``, ``valid_log_loss``,
        ``valid_roc_auc``.
    btyd_offset_ : bool
        Whether the network was trained (and so scores) on top of the BG/NBD log-odds.
    best_epoch_ : float
        Epoch of the kept checkpoint (fractional with several evaluations per epoch).
    oof_ : pd.DataFrame or None
        ``cutoff``, ``user_id``, ``p``: each learning row's prediction by the fold network that
        never saw that customer (None with ``cv_folds=None``).

    Examples
    --------
    >>> model = TextLMModel(method="lora", trainable_layers=1)  # doctest: +SKIP
    >>> model.fit(train, valid).trainable_parameters_  # doctest: +SKIP
    12673
    """

    name: ClassVar[str] = "text_lm"
    #: the fold networks (None until built from ``_weights`` after loading)
    _uppers: Any
    #: trained weights as safetensors bytes, between loading and first use
    _weights: Any

    def __init__(
        self,
        method: str = "full",
        encoder: TextEncoder | str | None = None,
        trainable_layers: int | None = 1,
        history: str = "orders",
        pooling: str = "cls",
        max_length: int = 64,
        epochs: int = 5,
        batch_size: int = 32,
        learning_rate: float | None = None,
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.1,
        btyd_offset: bool = True,
        cv_folds: int | None = 3,
        max_train_examples: int | None = None,
        max_valid_examples: int | None = None,
        evals_per_epoch: int = 1,
        patience: int = 2,
        dropout: float = 0.1,
        weight_decay: float = 0.01,
        max_chars: int | None = None,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.encoder = encoder
        self.trainable_layers = trainable_layers
        self.history = history
        self.pooling = pooling
        self.max_length = max_length
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.btyd_offset = btyd_offset
        self.cv_folds = cv_folds
        self.max_train_examples = max_train_examples
        self.max_valid_examples = max_valid_examples
        self.evals_per_epoch = evals_per_epoch
        self.patience = patience
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.max_chars = max_chars
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------------------------------
    # validation and building
    # ------------------------------------------------------------------------------------------
    def _validate(self) -> None:
        if self.method not in {"full", "lora"}:
            raise ConfigError(f"method must be 'full' or 'lora', got {self.method!r}.")
        if self.pooling not in _POOLINGS:
            raise ConfigError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}.")
        if self.history not in _HISTORIES:
            raise ConfigError(f"history must be 'orders' or 'events', got {self.history!r}.")
        for name in ("max_length", "epochs", "batch_size", "lora_r", "evals_per_epoch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("max_train_examples", "max_valid_examples"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ConfigError(f"{name} must be a positive integer or None, got {value!r}.")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ConfigError(f"patience must be a non-negative integer, got {self.patience!r}.")
        layers = self.trainable_layers
        if layers is not None and (
            not isinstance(layers, int) or isinstance(layers, bool) or layers < 0
        ):
            raise ConfigError(
                f"trainable_layers must be a whole number >= 0 or None (all), got {layers!r}."
            )
        if self.cv_folds is not None:
            check_n_folds(self.cv_folds)
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate!r}.")
        for name in ("dropout", "lora_dropout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < 1):
                raise ConfigError(f"{name} must lie in [0, 1); got {value!r}.")
        if not isinstance(self.btyd_offset, bool):
            raise ConfigError(f"btyd_offset must be true or false, got {self.btyd_offset!r}.")
        if self.n_jobs is not None and (not isinstance(self.n_jobs, int) or self.n_jobs < 1):
            raise ConfigError(f"n_jobs must be a positive integer or None, got {self.n_jobs!r}.")
        if self.max_chars is not None and self.max_chars < 20:
            raise ConfigError(f"max_chars must be at least 20, got {self.max_chars!r}.")

    @property
    def _lr(self) -> float:
        if self.learning_rate is not None:
            return float(self.learning_rate)
        if self.method == "lora":
            return 1e-3
        return 5e-5 if self.trainable_layers is None else 2e-4

    @property
    def _chars(self) -> int:
        return int(self.max_chars) if self.max_chars is not None else 6 * int(self.max_length)

    def _examples(self, frame: CutoffFrame) -> pd.Series:
        if self.history == "events":
            return serialise_history(
                frame.events, frame.items, frame.cutoff, max_chars=self._chars, users=frame.users
            )
        return history_text(
            frame.events, frame.items, frame.cutoff, max_chars=self._chars, users=frame.users
        )

    def _offsets(self, frame: CutoffFrame) -> np.ndarray:
        """Per customer of ``frame`` (in ``frame.users`` order), what the network's logit is
        added to: the BG/NBD log-odds when trained so (``btyd_offset_``), else 0."""
        if not getattr(self, "btyd_offset_", False):
            return np.zeros(len(frame), dtype=np.float64)
        from retention.models._gbdt import btyd_log_odds

        return btyd_log_odds(frame)

    def _load(self, encoder: TextEncoder) -> None:
        """The pretrained encoder split in a frozen lower part and the layers that learn."""
        tokenizer, backbone = encoder.load_transformer()
        model_type = str(getattr(backbone.config, "model_type", ""))
        layers = getattr(getattr(backbone, "encoder", None), "layer", None)
        if model_type not in _LORA_TARGETS or layers is None:
            raise ConfigError(
                f"The encoder {encoder.name!r} is a {model_type or 'unknown'} model, whose layers "
                "text_lm cannot split; use a BERT-type encoder such as 'all-MiniLM-L6-v2'."
            )
        n = len(layers)
        k = n if self.trainable_layers is None else int(self.trainable_layers)
        if k > n:
            raise ConfigError(
                f"trainable_layers is {k} but the encoder {encoder.name!r} has {n} layers; pass "
                f"at most {n} (or None for all)."
            )
        backbone.eval()
        for p in backbone.parameters():
            p.requires_grad_(False)
        self._tokenizer = tokenizer
        self._backbone = backbone
        self._n_frozen = n - k
        self._reads_tokens = self.method == "full" and self.trainable_layers is None
        self.total_parameters_ = int(sum(p.numel() for p in backbone.parameters())) + (
            int(backbone.config.hidden_size) + 1
        )

    def _new_upper(self, seed: int, base_rate: float) -> Any:
        """A fresh trained part (copies of the top layers, adapters, head) seeded by ``seed``."""
        import torch
        from torch import nn

        backbone = self._backbone
        config = backbone.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers = nn.ModuleList(
                copy.deepcopy(layer) for layer in backbone.encoder.layer[self._n_frozen :]
            )
            embeddings = copy.deepcopy(backbone.embeddings) if self._reads_tokens else None
            upper = _build_upper(
                layers,
                embeddings,
                config,
                int(config.hidden_size),
                float(self.dropout),
                str(self.pooling),
            )
            for p in upper.parameters():
                p.requires_grad_(self.method == "full")
            if self.method == "lora" and len(layers):
                from peft import LoraConfig, inject_adapter_in_model

                lora = LoraConfig(
                    r=self.lora_r,
                    lora_alpha=self.lora_alpha,
                    lora_dropout=self.lora_dropout,
                    target_modules=_LORA_TARGETS[str(config.model_type)],
                    bias="none",
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    upper.layers = inject_adapter_in_model(lora, upper.layers)
                for name, p in upper.layers.named_parameters():
                    p.requires_grad_("lora_" in name)
            for p in upper.head.parameters():
                p.requires_grad_(True)
            with torch.no_grad():
                upper.head.bias.fill_(math.log(base_rate / (1 - base_rate)))
        return upper

    # ------------------------------------------------------------------------------------------
    # the frozen part, once per history
    # ------------------------------------------------------------------------------------------
    def _lower(self, texts: list[str], description: str | None = None) -> list[Any]:
        """Per text, what the trained part reads: the frozen layers' hidden states (float16,
        one row per real token) or, when every weight learns, the token ids."""

        out: list[Any] = [None] * len(texts)
        where = (
            str(self.encoder_.folder),
            self._n_frozen,
            int(self.max_length),
            self._reads_tokens,
        )
        todo: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            hit = _LOWER_CACHE.get((*where, text))
            if hit is not None:
                _LOWER_CACHE.move_to_end((*where, text))
                out[i] = hit
            else:
                todo.setdefault(text, []).append(i)
        unique = list(todo)
        computed = self._run_lower(unique, description)
        for text, value in zip(unique, computed, strict=True):
            for i in todo[text]:
                out[i] = value
            _LOWER_CACHE[(*where, text)] = value
        while len(_LOWER_CACHE) > LOWER_CACHE_ROWS:
            _LOWER_CACHE.popitem(last=False)
        return out

    def _run_lower(self, texts: list[str], description: str | None) -> list[Any]:
        import torch

        out: list[Any] = [None] * len(texts)
        if not texts:
            return out
        order = np.argsort([-len(t) for t in texts], kind="mergesort")
        batch = 64
        backbone = self._backbone
        with (
            torch.inference_mode(),
            progress_bar(transient=True) as bar,
        ):
            task = bar.add_task(description or "reading histories", total=len(texts))
            for start in range(0, len(texts), batch):
                idx = order[start : start + batch]
                tokens = self._tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                mask = tokens["attention_mask"]
                lengths = mask.sum(dim=1).tolist()
                if self._reads_tokens:
                    for j, i in enumerate(idx):
                        out[i] = tokens["input_ids"][j, : lengths[j]].clone()
                else:
                    from transformers.masking_utils import create_bidirectional_mask

                    h = backbone.embeddings(input_ids=tokens["input_ids"])
                    if self._n_frozen:
                        ext = create_bidirectional_mask(
                            config=backbone.config, inputs_embeds=h, attention_mask=mask
                        )
                        for layer in backbone.encoder.layer[: self._n_frozen]:
                            res = layer(h, ext)
                            h = res[0] if isinstance(res, tuple) else res
                    h = h.to(torch.float16)
                    for j, i in enumerate(idx):
                        out[i] = h[j, : lengths[j]].clone()
                bar.update(task, advance=len(idx))
        return out

    @staticmethod
    def _collate(items: list[Any]) -> tuple[Any, Any]:
        """Pad a batch of cached rows; returns (inputs, attention mask)."""
        import torch

        lengths = [int(x.shape[0]) for x in items]
        longest = max(lengths)
        mask = torch.zeros(len(items), longest, dtype=torch.long)
        for j, n in enumerate(lengths):
            mask[j, :n] = 1
        if items[0].dim() == 1:  # token ids
            x = torch.zeros(len(items), longest, dtype=torch.long)
            for j, item in enumerate(items):
                x[j, : lengths[j]] = item
        else:
            x = torch.zeros(len(items), longest, items[0].shape[1], dtype=torch.float32)
            for j, item in enumerate(items):
                x[j, : lengths[j]] = item.to(torch.float32)
        return x, mask

    def _batches(self, idx: np.ndarray, cached: list[Any], rng: np.random.RandomState) -> list:
        """Length-bucketed batches of ``idx`` in a random order (similar lengths together)."""
        lengths = np.array([cached[i].shape[0] for i in idx], dtype=float)
        jitter = rng.uniform(0, 1, size=len(idx))
        order = idx[np.lexsort((jitter, lengths))]
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        perm = rng.permutation(len(batches))
        return [batches[i] for i in perm]

    @staticmethod
    def _score(
        upper: Any,
        cached: list[Any],
        idx: np.ndarray,
        batch: int = 128,
        offset: np.ndarray | None = None,
    ) -> np.ndarray:
        """P(retained) of the rows ``idx`` of ``cached``; ``offset`` (per row of ``cached``) is
        added to the network's logit."""
        import torch

        upper.eval()
        out = np.zeros(len(idx), dtype=np.float64)
        if not len(idx):
            return out
        lengths = np.array([cached[i].shape[0] for i in idx])
        order = np.argsort(-lengths, kind="mergesort")
        with torch.inference_mode():
            for s in range(0, len(order), batch):
                pos = order[s : s + batch]
                x, mask = TextLMModel._collate([cached[idx[p]] for p in pos])
                logit = upper(x, mask).double()
                if offset is not None:
                    logit = logit + torch.from_numpy(offset[idx[pos]].astype(np.float64))
                out[pos] = torch.sigmoid(logit).numpy()
        return out

    @staticmethod
    def _trained_state(upper: Any) -> dict[str, Any]:
        return {n: p.detach().clone() for n, p in upper.named_parameters() if p.requires_grad}

    # ------------------------------------------------------------------------------------------
    # fit / predict
    # ------------------------------------------------------------------------------------------
    def fit(self, train: Sequence[CutoffFrame], valid: CutoffFrame | None = None) -> TextLMModel:
        """Fine-tune on the histories of the learning cutoffs (``train`` and ``valid``), early
        stopping on held-out customers (see the module docstring)."""
        self._validate()
        with _torch_threads(self.n_jobs):
            return self._fit(train, valid)

    def _fit(self, train: Sequence[CutoffFrame], valid: CutoffFrame | None) -> TextLMModel:

        if isinstance(train, CutoffFrame):
            train = [train]
        train = list(train)
        if not train:
            raise ConfigError("TextLMModel.fit needs at least one training CutoffFrame.")
        for frame in [*train, *([valid] if valid is not None else [])]:
            if frame.label is None:
                raise DataError(
                    f"The training frame at cutoff {frame.cutoff:%Y-%m-%d} has no label. Build "
                    "training frames with with_label=True."
                )
        encoder = resolve_encoder(self.encoder)
        if not encoder.fine_tunable:
            encoder.load_transformer()  # raises the ConfigError that says why
        started, cpu_started = time.perf_counter(), time.process_time()
        learning = [*train, *([valid] if valid is not None else [])]
        cv = self.cv_folds is not None
        frames = learning if cv else train
        texts: list[str] = []
        for f in frames:
            texts += self._examples(f).tolist()
        labels = np.concatenate([f.label.reindex(f.users).to_numpy(dtype=float) for f in frames])  # type: ignore[union-attr]
        self.btyd_offset_ = bool(self.btyd_offset)
        offsets = np.concatenate([self._offsets(f) for f in frames])
        users = np.concatenate([f.users.to_numpy(dtype=str) for f in frames])
        cutoffs = np.concatenate([np.repeat(np.datetime64(f.cutoff, "ns"), len(f)) for f in frames])
        if np.isnan(labels).any():
            raise DataError(
                "Some training labels are missing. Pass frames whose label covers every user."
            )
        if len(np.unique(labels)) < 2:
            raise ModelError(
                f"The training cutoffs hold only one label value ({int(labels[0])}). Use more "
                "cutoffs or a longer horizon so that both outcomes occur."
            )
        rng = np.random.RandomState(self.random_state)
        keep = np.arange(len(labels))
        if self.max_train_examples is not None:
            keep = _stratified_subsample(labels.astype(int), self.max_train_examples, rng)
        y = labels[keep].astype(np.float32)

        # evaluation rows: held-out folds of customers, or the valid cutoff
        valid_texts: list[str] = []
        y_valid = np.zeros(0, dtype=np.float32)
        valid_offsets = np.zeros(0, dtype=np.float64)
        if not cv and valid is not None:
            vt = self._examples(valid)
            vy = valid.label.reindex(valid.users).to_numpy(dtype=float)  # type: ignore[union-attr]
            ok = ~np.isnan(vy)
            vt, vy, vo = vt[ok], vy[ok], self._offsets(valid)[ok]
            if len(np.unique(vy)) == 2:
                vkeep = np.arange(len(vy))
                if self.max_valid_examples is not None:
                    vkeep = _stratified_subsample(vy.astype(int), self.max_valid_examples, rng)
                valid_texts, y_valid = vt.iloc[vkeep].tolist(), vy[vkeep].astype(np.float32)
                valid_offsets = vo[vkeep]

        self.encoder_ = encoder
        self._load(encoder)
        tick = time.perf_counter()
        cached = self._lower([texts[i] for i in keep] + valid_texts, "frozen layers (once)")
        self.cache_seconds_ = time.perf_counter() - tick
        n = len(keep)
        rows = np.arange(n)
        valid_rows = np.arange(n, n + len(valid_texts))
        base_rate = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))

        if cv:
            n_folds = int(self.cv_folds)  # type: ignore[arg-type]
            folds = customer_folds(users[keep], n_folds)
            plan = [(rows[folds != k], rows[folds == k], y[folds == k]) for k in range(n_folds)]
        else:
            plan = [(rows, valid_rows, y_valid)]
        y_all = np.concatenate([y, y_valid])
        offset_all = np.concatenate([offsets[keep], valid_offsets])
        self.history_: list[dict[str, float]] = []
        runs = []
        seen, train_seconds = 0, 0.0
        for k, (fit_idx, eval_idx, _) in enumerate(plan):
            if len(fit_idx) == 0 or len(np.unique(y_all[fit_idx])) < 2:
                raise ModelError(
                    f"Fold {k} leaves too few customers of both outcomes to learn from. Use more "
                    "customers or fewer cv_folds."
                )
            # with the BG/NBD offset the head starts at 0: the offset carries the level
            upper = self._new_upper(
                self.random_state + 1000 * k, 0.5 if self.btyd_offset_ else base_rate
            )
            run = self._train_one(
                k, upper, cached, y_all, fit_idx, eval_idx, rng, offset=offset_all
            )
            seen += run["seen"]
            train_seconds += run["seconds"]
            runs.append((upper, run))

        # one checkpoint for every network: the lowest mean held-out log loss
        evaluated = [run["losses"] for _, run in runs if run["losses"]]
        best = -1
        if evaluated:
            common = min(len(v) for v in evaluated)
            mean = np.mean([v[:common] for v in evaluated], axis=0)
            best = int(np.argmin(mean))
        self.best_epoch_ = (
            float((best + 1) / self.evals_per_epoch) if best >= 0 else float(runs[0][1]["epochs"])
        )
        self._uppers = []
        for upper, run in runs:
            if 0 <= best < len(run["states"]):
                upper.load_state_dict(run["states"][best], strict=False)
            upper.eval()
            self._uppers.append(upper)
        self.oof_: pd.DataFrame | None = None
        if cv and best >= 0:
            p = np.full(n, np.nan)
            for (_, eval_idx, _), (upper, run) in zip(plan, runs, strict=True):
                # a fold that could not be evaluated (one outcome) keeps its last weights
                has = best < len(run["preds"])
                p[eval_idx] = (
                    run["preds"][best]
                    if has
                    else self._score(upper, cached, eval_idx, offset=offset_all)
                )
            self.oof_ = pd.DataFrame({"cutoff": cutoffs[keep], "user_id": users[keep], "p": p})
        self.n_folds_ = len(self._uppers)
        self.trainable_parameters_ = int(
            sum(p.numel() for p in self._uppers[0].parameters() if p.requires_grad)
        )
        self.n_train_examples_ = int(n)
        self.train_examples_per_second_ = seen / train_seconds if train_seconds > 0 else math.nan
        self.fit_seconds_ = time.perf_counter() - started
        self.fit_cpu_seconds_ = time.process_time() - cpu_started
        return self

    def _train_one(
        self,
        fold: int,
        upper: Any,
        cached: list[Any],
        y: np.ndarray,
        fit_idx: np.ndarray,
        eval_idx: np.ndarray,
        rng: np.random.RandomState,
        offset: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Train one network; score ``eval_idx`` at every evaluation (state and predictions).
        ``offset`` (per row of ``cached``) is added to the network's logit."""
        import torch
        from sklearn.metrics import log_loss, roc_auc_score

        params = [p for p in upper.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self._lr, weight_decay=self.weight_decay)
        steps_per_epoch = max(1, math.ceil(len(fit_idx) / self.batch_size))
        total_steps = steps_per_epoch * self.epochs
        warmup = max(1, total_steps // 10)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        y_eval = y[eval_idx]
        can_eval = len(eval_idx) > 0 and len(np.unique(y_eval)) == 2
        eval_at = {
            math.ceil(j * steps_per_epoch / self.evals_per_epoch)
            for j in range(1, self.evals_per_epoch + 1)
        }
        run: dict[str, Any] = {"losses": [], "preds": [], "states": [], "seen": 0, "seconds": 0.0}
        best_loss, bad, running, epoch = math.inf, 0, math.nan, 0
        y_t = torch.from_numpy(y.astype(np.float32))
        off_t = torch.from_numpy(
            np.zeros(len(y), dtype=np.float32) if offset is None else offset.astype(np.float32)
        )
        with torch.random.fork_rng(devices=[]), progress_bar() as bar:
            torch.manual_seed(self.random_state + 1000 * fold + 1)
            label = f"fine-tuning {self.method}" + (f" fold {fold + 1}" if self.cv_folds else "")
            task = bar.add_task(label, total=total_steps)
            stop = False
            for epoch in range(1, self.epochs + 1):
                for step, batch in enumerate(self._batches(fit_idx, cached, rng), start=1):
                    tick = time.perf_counter()
                    upper.train()
                    x, mask = self._collate([cached[i] for i in batch])
                    loss = loss_fn(upper(x, mask) + off_t[batch], y_t[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    run["seconds"] += time.perf_counter() - tick
                    run["seen"] += len(batch)
                    value = float(loss.detach())
                    running = value if math.isnan(running) else 0.95 * running + 0.05 * value
                    bar.update(task, advance=1, info=f"loss {running:.4f}")
                    if can_eval and step in eval_at:
                        p = self._score(upper, cached, eval_idx, offset=offset)
                        vloss = float(log_loss(y_eval, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
                        auc = float(roc_auc_score(y_eval, p))
                        at = epoch - 1 + step / steps_per_epoch
                        self.history_.append(
                            {
                                "fold": fold,
                                "epoch": round(at, 3),
                                "train_loss": running,
                                "valid_log_loss": vloss,
                                "valid_roc_auc": auc,
                            }
                        )
                        run["losses"].append(vloss)
                        run["preds"].append(p)
                        run["states"].append(self._trained_state(upper))
                        bar.update(
                            task, info=f"loss {running:.4f} held-out {vloss:.4f} auc {auc:.3f}"
                        )
                        if vloss < best_loss - 1e-6:
                            best_loss, bad = vloss, 0
                        else:
                            bad += 1
                        if self.patience > 0 and bad >= self.patience:
                            stop = True
                            break
                if stop:
                    break
        run["epochs"] = epoch
        upper.eval()
        return run

    def _ensure_net(self) -> None:
        if getattr(self, "_uppers", None) is not None:
            return
        weights: bytes | None = getattr(self, "_weights", None)
        if weights is None:
            check_is_fitted(self, "_uppers")
            return
        from safetensors.torch import load

        self._load(self.encoder_)
        state = load(weights)  # safetensors: tensors only, never a pickle
        uppers = []
        for k in range(int(self.n_folds_)):
            upper = self._new_upper(self.random_state + 1000 * k, 0.5)
            prefix = f"{k}."
            own = {key[len(prefix) :]: v for key, v in state.items() if key.startswith(prefix)}
            trained = {n for n, p in upper.named_parameters() if p.requires_grad}
            if set(own) != trained:
                raise ModelError(
                    f"The saved weights of fold {k} do not fit the encoder "
                    f"{self.encoder_.name!r} ({len(set(own) - trained)} unexpected, "
                    f"{len(trained - set(own))} missing). Train again."
                )
            upper.load_state_dict(own, strict=False)
            upper.eval()
            uppers.append(upper)
        self._uppers = uppers
        self._weights = None

    def _predict_texts(self, texts: list[str], offset: np.ndarray | None = None) -> np.ndarray:
        cached = self._lower(texts, "frozen layers")
        idx = np.arange(len(texts))
        return np.mean([self._score(u, cached, idx, offset=offset) for u in self._uppers], axis=0)

    def predict_proba(self, frame: CutoffFrame) -> np.ndarray:
        """P(retained) for every customer of ``frame``, in the order of ``frame.users``: the
        mean over the fold networks."""
        check_is_fitted(self, "trainable_parameters_")
        with _torch_threads(self.n_jobs):
            self._ensure_net()
            texts = self._examples(frame).tolist()
            if not texts:
                return np.zeros(0)
            # what training used (an artifact saved before the option has none)
            offset = self._offsets(frame) if getattr(self, "btyd_offset_", False) else None
            return self._predict_texts(texts, offset)

    # ------------------------------------------------------------------------------------------
    # save/load and pickling: the trained weights travel as safetensors bytes, the network is
    # rebuilt on first use from the pretrained encoder's package and those weights
    # ------------------------------------------------------------------------------------------
    def _weight_bytes(self) -> bytes | None:
        """The weights training changed, as safetensors (None before ``fit``)."""
        if getattr(self, "_uppers", None) is None:
            return getattr(self, "_weights", None)
        from safetensors.torch import save

        tensors = {
            f"{k}.{name}": v.contiguous()
            for k, upper in enumerate(self._uppers)
            for name, v in self._trained_state(upper).items()
        }
        return save(tensors)

    #: learned attributes saved as JSON (the weights go to ``weights.safetensors``)
    _SAVED: ClassVar[tuple[str, ...]] = (
        "encoder_",
        "trainable_parameters_",
        "total_parameters_",
        "history_",
        "best_epoch_",
        "n_folds_",
        "train_examples_per_second_",
        "n_train_examples_",
        "fit_seconds_",
        "fit_cpu_seconds_",
        "cache_seconds_",
        "btyd_offset_",
    )

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What :meth:`fit` learned, as data (see ``retention.models.save_model``): the trained
        weights of every fold network as safetensors (the trained layers or their adapters and
        the head) and the encoder by name; the base weights stay in the encoder's package."""
        check_is_fitted(self, "trainable_parameters_")
        weights = self._weight_bytes()
        if weights is None:
            raise ModelError("This TextLMModel has no trained weights to save; call fit first.")
        state = {k: getattr(self, k) for k in self._SAVED if hasattr(self, k)}
        return state, {"weights.safetensors": weights}

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned (``load_model``); the network is built on
        first use."""
        if not isinstance(state.get("encoder_"), TextEncoder):
            raise ModelError("A saved TextLMModel does not name its text encoder.")
        weights = parts.get("weights.safetensors")
        if not isinstance(weights, bytes):
            raise ModelError("A saved TextLMModel has no weights.safetensors.")
        for key in self._SAVED:
            if key in state:
                setattr(self, key, state[key])
        if "btyd_offset_" not in state:  # saved before the option: trained without the offset
            self.btyd_offset = self.btyd_offset_ = False
        self.oof_ = None  # only needed while an ensemble is stacked on the same frames
        self._weights = weights
        self._uppers = None

    _UNPICKLED: ClassVar[tuple[str, ...]] = ("_uppers", "_tokenizer", "_backbone")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in self._UNPICKLED:
            state.pop(key, None)
        state["_weights"] = self._weight_bytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "btyd_offset" not in state:  # pickled before the option: trained without the offset
            self.btyd_offset = self.btyd_offset_ = False
        for key in self._UNPICKLED:
            self.__dict__[key] = None
