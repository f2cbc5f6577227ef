"""A pretrained text encoder fine-tuned on customer histories written as text (full or LoRA).

Each customer's events before the cutoff become one line of text
(:func:`retention.features.serialise_history`: ``"as of 2011-06-12: 4 orders, last 23 days ago,
... 2011-05-19 bought 2 x CERAMIC CAKE STAND for 19.90; ..."``, most recent first, cut to the
model's length). The pretrained encoder (``transformers.AutoModel``) reads it, its token vectors
are mean-pooled and a linear head gives the logit of "buys again within the horizon".

``method="full"`` trains every weight; ``method="lora"`` freezes the encoder and trains low-rank
adapters on the attention query and value projections (``peft``) plus the head: about 74k
trainable parameters instead of 22.7M for MiniLM.

On a CPU this is slow (about 9 examples/s full, 12/s LoRA at 128 tokens on 2 cores), so training
uses a label-stratified, seeded subsample of the stacked training cutoffs (``max_train_examples``)
and few epochs; the validation cutoff picks the best checkpoint (log loss) and stops early.
"""

from __future__ import annotations

import math
import time
import warnings
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
    mean_pool,
    resolve_encoder,
    serialise_history,
)
from retention.models._base import RetentionModel, check_is_fitted

__all__ = ["TextLMModel"]

_LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "mpnet": ["q", "v"],
    "distilbert": ["q_lin", "v_lin"],
}


def _build_classifier(backbone: Any, hidden: int, dropout: float) -> Any:
    import torch
    from torch import nn

    class _Classifier(nn.Module):
        """Encoder -> masked mean pooling -> dropout -> linear logit."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(hidden, 1)

        def forward(self, **tokens: torch.Tensor) -> torch.Tensor:
            out = self.backbone(**tokens).last_hidden_state
            pooled = mean_pool(out, tokens["attention_mask"])
            logit: torch.Tensor = self.head(self.dropout(pooled)).squeeze(-1)
            return logit

    return _Classifier()


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


class TextLMModel(RetentionModel):
    """Fine-tuned pretrained encoder over histories written as text (``text_lm``, ``text_lm_lora``).

    Parameters
    ----------
    method : {"full", "lora"}
        Train every weight, or LoRA adapters on the attention projections (base frozen).
    encoder : TextEncoder or str, optional
        The pretrained encoder or its name (default: the setting ``RETENTION_ENCODER``); it must
        be a transformers encoder (``multilingual-e5-small`` gives embeddings only).
    max_length : int
        Tokens read per customer.
    epochs : int
        Passes over the training subsample.
    batch_size : int
        Examples per step.
    learning_rate : float, optional
        Default 5e-5 for ``full`` and 1e-3 for ``lora``.
    lora_r, lora_alpha, lora_dropout
        LoRA rank, scaling and dropout.
    max_train_examples : int
        Training examples drawn (stratified by label, seeded) from the stacked training cutoffs.
    max_valid_examples : int
        Validation examples scored at each evaluation (stratified, seeded).
    evals_per_epoch : int
        Evaluations on the validation cutoff per epoch; the best checkpoint is kept.
    patience : int
        Evaluations without improvement before training stops.
    dropout : float
        Dropout before the head.
    weight_decay : float
        AdamW weight decay.
    max_chars : int, optional
        Characters of history written per customer (default ``6 * max_length``).
    n_jobs : int, optional
        Torch threads while fitting and scoring (default: torch's own setting). On a machine
        shared with other busy processes, 1 is often fastest.
    random_state : int
        Seed of the subsample, the head, the adapters, dropout and the shuffling.

    Attributes
    ----------
    trainable_parameters_ : int
        Parameters updated by training.
    total_parameters_ : int
        All parameters of the network.
    fit_seconds_ : float
        Wall time of ``fit``.
    train_examples_per_second_ : float
        Training throughput (forward + backward), evaluations excluded.
    n_train_examples_ : int
        Examples in the training subsample.
    history_ : list of dict
        Per evaluation: ``step``, ``train_loss``, ``valid_log_loss``, ``valid_roc_auc``.
    best_step_ : int
        Step of the kept checkpoint (the last step when there is no validation cutoff).

    Examples
    --------
    >>> model = TextLMModel(method="lora", max_train_examples=500)  # doctest: +SKIP
    >>> model.fit(train, valid).trainable_parameters_  # doctest: +SKIP
    74113
    """

    name: ClassVar[str] = "text_lm"

    def __init__(
        self,
        method: str = "full",
        encoder: TextEncoder | str | None = None,
        max_length: int = 128,
        epochs: int = 1,
        batch_size: int = 16,
        learning_rate: float | None = None,
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.1,
        max_train_examples: int = 2000,
        max_valid_examples: int = 500,
        evals_per_epoch: int = 2,
        patience: int = 2,
        dropout: float = 0.1,
        weight_decay: float = 0.01,
        max_chars: int | None = None,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.encoder = encoder
        self.max_length = max_length
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
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
        for name in ("max_length", "epochs", "batch_size", "max_train_examples", "lora_r"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("max_valid_examples", "evals_per_epoch", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}.")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate!r}.")
        for name in ("dropout", "lora_dropout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < 1):
                raise ConfigError(f"{name} must lie in [0, 1); got {value!r}.")
        if self.n_jobs is not None and (not isinstance(self.n_jobs, int) or self.n_jobs < 1):
            raise ConfigError(f"n_jobs must be a positive integer or None, got {self.n_jobs!r}.")
        if self.max_chars is not None and self.max_chars < 20:
            raise ConfigError(f"max_chars must be at least 20, got {self.max_chars!r}.")

    @property
    def _lr(self) -> float:
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return 5e-5 if self.method == "full" else 1e-3

    @property
    def _chars(self) -> int:
        return int(self.max_chars) if self.max_chars is not None else 6 * int(self.max_length)

    def _build(self, encoder: TextEncoder) -> None:
        """Load the pretrained weights, wrap them (LoRA), add the head; sets _net/_tokenizer."""
        tokenizer, backbone = encoder.load_transformer()
        if self.method == "lora":
            from peft import LoraConfig, get_peft_model

            model_type = str(getattr(backbone.config, "model_type", ""))
            config = LoraConfig(
                r=self.lora_r,
                lora_alpha=self.lora_alpha,
                lora_dropout=self.lora_dropout,
                target_modules=_LORA_TARGETS.get(model_type),
                bias="none",
            )
            with warnings.catch_warnings():
                # peft reads a transformers attribute deprecated in transformers 5
                warnings.simplefilter("ignore", FutureWarning)
                backbone = get_peft_model(backbone, config)
        hidden = int(backbone.config.hidden_size)
        self._net = _build_classifier(backbone, hidden, self.dropout)
        self._tokenizer = tokenizer

    def _tokens(self, texts: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = dict(
            self._tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )
        return out

    def _examples(self, frame: CutoffFrame) -> pd.Series:
        return serialise_history(
            frame.events, frame.items, frame.cutoff, max_chars=self._chars, users=frame.users
        )

    def _trainable_state(self) -> dict[str, Any]:
        """The weights training changes (all for full; adapters + head for LoRA)."""
        names = {n for n, p in self._net.named_parameters() if p.requires_grad}
        state = self._net.state_dict()
        if self.method == "full":
            return {k: v.detach().clone() for k, v in state.items()}
        return {k: v.detach().clone() for k, v in state.items() if k in names}

    # ------------------------------------------------------------------------------------------
    # fit / predict
    # ------------------------------------------------------------------------------------------
    def fit(self, train: Sequence[CutoffFrame], valid: CutoffFrame | None = None) -> TextLMModel:
        """Fine-tune on the histories of the stacked ``train`` cutoffs; ``valid`` picks the best
        checkpoint and stops early."""
        self._validate()
        with _torch_threads(self.n_jobs):
            return self._fit(train, valid)

    def _fit(self, train: Sequence[CutoffFrame], valid: CutoffFrame | None) -> TextLMModel:
        import torch

        if isinstance(train, CutoffFrame):
            train = [train]
        if not train:
            raise ConfigError("TextLMModel.fit needs at least one training CutoffFrame.")
        for frame in train:
            if frame.label is None:
                raise DataError(
                    f"The training frame at cutoff {frame.cutoff:%Y-%m-%d} has no label. Build "
                    "training frames with with_label=True."
                )
        encoder = resolve_encoder(self.encoder)
        if not encoder.fine_tunable:
            encoder.load_transformer()  # raises the ConfigError that says why
        started = time.perf_counter()

        texts = pd.concat([self._examples(f) for f in train], ignore_index=True)
        labels = np.concatenate(
            [f.label.reindex(f.users).to_numpy(dtype=float) for f in train]  # type: ignore[union-attr]
        )
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
        keep = _stratified_subsample(labels.astype(int), self.max_train_examples, rng)
        x_train = texts.iloc[keep].tolist()
        y_train = labels[keep].astype(np.float32)

        x_valid: list[str] = []
        y_valid = np.zeros(0, dtype=np.float32)
        if valid is not None and valid.label is not None and self.max_valid_examples > 0:
            vt = self._examples(valid)
            vy = valid.label.reindex(valid.users).to_numpy(dtype=float)
            ok = ~np.isnan(vy)
            vt, vy = vt[ok], vy[ok]
            if len(np.unique(vy)) == 2:
                vkeep = _stratified_subsample(vy.astype(int), self.max_valid_examples, rng)
                x_valid, y_valid = vt.iloc[vkeep].tolist(), vy[vkeep].astype(np.float32)

        self.encoder_ = encoder
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            self._build(encoder)
            net = self._net
            base_rate = float(np.clip(y_train.mean(), 1e-3, 1 - 1e-3))
            with torch.no_grad():
                net.head.bias.fill_(math.log(base_rate / (1 - base_rate)))
            self.trainable_parameters_ = int(
                sum(p.numel() for p in net.parameters() if p.requires_grad)
            )
            self.total_parameters_ = int(sum(p.numel() for p in net.parameters()))
            self._train_loop(x_train, y_train, x_valid, y_valid)
        self.n_train_examples_ = len(x_train)
        self.n_valid_examples_ = len(x_valid)
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _train_loop(
        self, x_train: list[str], y_train: np.ndarray, x_valid: list[str], y_valid: np.ndarray
    ) -> None:
        import torch
        from sklearn.metrics import log_loss, roc_auc_score

        net = self._net
        params = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self._lr, weight_decay=self.weight_decay)
        n = len(x_train)
        steps_per_epoch = max(1, math.ceil(n / self.batch_size))
        total_steps = steps_per_epoch * self.epochs
        warmup = max(1, total_steps // 10)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        gen = torch.Generator().manual_seed(self.random_state)
        eval_at: set[int] = set()
        if len(x_valid) and self.evals_per_epoch > 0:
            for e in range(self.epochs):
                for k in range(1, self.evals_per_epoch + 1):
                    eval_at.add(
                        e * steps_per_epoch + math.ceil(k * steps_per_epoch / self.evals_per_epoch)
                    )

        self.history_: list[dict[str, float]] = []
        self.train_losses_: list[float] = []
        best_loss = math.inf
        best_state: dict[str, Any] | None = None
        self.best_step_ = total_steps
        bad = 0
        train_seconds = 0.0
        seen = 0
        running = math.nan

        def evaluate(step: int) -> bool:
            nonlocal best_loss, best_state, bad
            p = self._predict_texts(x_valid)
            vloss = float(log_loss(y_valid, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
            auc = float(roc_auc_score(y_valid, p))
            self.history_.append(
                {"step": step, "train_loss": running, "valid_log_loss": vloss, "valid_roc_auc": auc}
            )
            if vloss < best_loss - 1e-6:
                best_loss, best_state, bad = vloss, self._trainable_state(), 0
                self.best_step_ = step
            else:
                bad += 1
            return self.patience > 0 and bad >= self.patience

        step = 0
        stop = False
        with progress_bar() as bar:
            task = bar.add_task(f"fine-tuning ({self.method})", total=total_steps)
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=gen).numpy()
                for start in range(0, n, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    tick = time.perf_counter()
                    net.train()
                    tokens = self._tokens([x_train[i] for i in idx])
                    target = torch.from_numpy(y_train[idx])
                    loss = loss_fn(net(**tokens), target)
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    train_seconds += time.perf_counter() - tick
                    seen += len(idx)
                    step += 1
                    value = float(loss.detach())
                    self.train_losses_.append(value)
                    running = value if math.isnan(running) else 0.9 * running + 0.1 * value
                    bar.update(task, advance=1, info=f"loss {running:.4f}")
                    if step in eval_at:
                        stop = evaluate(step)
                        last = self.history_[-1]
                        bar.update(
                            task,
                            info=f"loss {running:.4f} valid {last['valid_log_loss']:.4f} "
                            f"auc {last['valid_roc_auc']:.3f}",
                        )
                        if stop:
                            break
                if stop:
                    break
        if best_state is not None and self.best_step_ != step:
            net.load_state_dict(best_state, strict=False)
        net.eval()
        self.n_steps_ = step
        self.train_examples_per_second_ = seen / train_seconds if train_seconds > 0 else math.nan

    def _ensure_net(self) -> None:
        if getattr(self, "_net", None) is not None:
            return
        weights: bytes | None = getattr(self, "_weights", None)
        if weights is None:
            check_is_fitted(self, "_net")
            return
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            self._build(self.encoder_)
        from safetensors.torch import load

        state = load(weights)  # safetensors: tensors only, never a pickle
        result = self._net.load_state_dict(state, strict=self.method == "full")
        trained = {n for n, p in self._net.named_parameters() if p.requires_grad}
        lacking = trained & set(result.missing_keys)
        if self.method == "lora" and (result.unexpected_keys or lacking):
            raise ModelError(
                "The saved LoRA weights do not fit the encoder "
                f"{self.encoder_.name!r} ({len(result.unexpected_keys)} unexpected, "
                f"{len(lacking)} missing). Train again."
            )
        self._net.eval()
        self._weights: bytes | None = None

    def _predict_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        import torch

        net = self._net
        net.eval()
        out = np.zeros(len(texts), dtype=np.float64)
        order = np.argsort([-len(t) for t in texts], kind="mergesort")
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                logits = net(**self._tokens([texts[i] for i in idx]))
                out[idx] = torch.sigmoid(logits.double()).numpy()
        return out

    def predict_proba(self, frame: CutoffFrame) -> np.ndarray:
        """P(retained) for every customer of ``frame``, in the order of ``frame.users``."""
        check_is_fitted(self, "trainable_parameters_")
        with _torch_threads(self.n_jobs):
            self._ensure_net()
            texts = self._examples(frame).tolist()
            if not texts:
                return np.zeros(0)
            return self._predict_texts(texts)

    # ------------------------------------------------------------------------------------------
    # save/load and pickling: the trained weights travel as safetensors bytes, the network is
    # rebuilt on first use from the pretrained encoder's package and those weights
    # ------------------------------------------------------------------------------------------
    def _weight_bytes(self) -> bytes | None:
        """The weights training changed, as safetensors (None before ``fit``)."""
        if getattr(self, "_net", None) is None:
            return getattr(self, "_weights", None)
        from safetensors.torch import save

        return save({k: v.contiguous() for k, v in self._trainable_state().items()})

    #: learned attributes saved as JSON (the weights go to ``weights.safetensors``)
    _SAVED: ClassVar[tuple[str, ...]] = (
        "encoder_",
        "trainable_parameters_",
        "total_parameters_",
        "history_",
        "train_losses_",
        "best_step_",
        "n_steps_",
        "train_examples_per_second_",
        "n_train_examples_",
        "n_valid_examples_",
        "fit_seconds_",
    )

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What :meth:`fit` learned, as data (see ``retention.models.save_model``): the trained
        weights as safetensors (every weight for ``full``, the adapters and the head for
        ``lora``) and the encoder by name; the base weights stay in the encoder's package."""
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
        self._weights = weights
        self._net = None
        self._tokenizer = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_net", None)
        state.pop("_tokenizer", None)
        state["_weights"] = self._weight_bytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._net = None
        self._tokenizer = None
