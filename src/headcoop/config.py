"""Configuration of the model and of training: plain dataclasses, validated on creation.

Kept free of torch and transformer_lens imports, so that the CLI can show their defaults
instantly.
"""

import math
from dataclasses import dataclass
from typing import Any

from headcoop.errors import HeadcoopError


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the model. The defaults are the paper's stable setup.

    Args:
        d_model: embedding dimension.
        n_heads: attention heads in each layer.
        d_head: dimension of each head's queries, keys, values and output.
        layernorm: LayerNorm before attention and before the unembedding.
        n_layers: attention layers. One is the paper's; more breaks bag compression.
        positional: learn a positional embedding. Off (the paper's) keeps W_pos zero and frozen.
        n_ctx: longest sequence the model accepts.
    """

    d_model: int = 32
    n_heads: int = 16
    d_head: int = 2
    layernorm: bool = True
    n_layers: int = 1
    positional: bool = False
    n_ctx: int = 2048

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "d_head", "n_layers", "n_ctx"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise HeadcoopError(
                    f"model config: {name} must be a positive integer, got {value!r}"
                )
        if self.layernorm and self.d_model < 2:
            raise HeadcoopError("model config: layernorm needs d_model >= 2 (use --no-layernorm)")

    def hooked_kwargs(self, d_vocab: int) -> dict[str, Any]:
        """Keyword arguments of the equivalent `HookedTransformerConfig` (stored in checkpoints)."""
        return {
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "d_head": self.d_head,
            "n_ctx": self.n_ctx,
            "d_vocab": d_vocab,
            "attn_only": True,
            "normalization_type": "LN" if self.layernorm else None,
            "positional_embedding_type": "standard",
            "default_prepend_bos": False,
            "device": "cpu",
        }

    @classmethod
    def of(cls, model: Any) -> "ModelConfig":
        """The config a `HookedTransformer` was built with, read off the model itself."""
        cfg = model.cfg
        return cls(
            d_model=cfg.d_model,
            n_heads=cfg.n_heads,
            d_head=cfg.d_head,
            layernorm=cfg.normalization_type is not None,
            n_layers=cfg.n_layers,
            positional=bool(model.pos_embed.W_pos.requires_grad or model.pos_embed.W_pos.any()),
            n_ctx=cfg.n_ctx,
        )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. The defaults train the paper's model (d_model 32, 16 heads) to
    near-perfect test accuracy; see the README for the measured accuracies over seeds.

    Args:
        seed: seed of the initial weights, the example order and the dropout masks.
        epochs: passes over the training split.
        batch_size: examples per optimizer step.
        lr: AdamW learning rate (the peak, under a schedule).
        lr_schedule: 'constant', or 'cosine': decay from ``lr`` to zero over all epochs.
        weight_decay: AdamW weight decay.
        dropout: rate of dropout on the attention output (after W_O), during training only.
        checkpoint_every: save a checkpoint every this many epochs (the last is always saved).
    """

    seed: int = 0
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    weight_decay: float = 0.01
    dropout: float = 0.1
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise HeadcoopError(f"train config: {name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise HeadcoopError(f"train config: lr must be positive, got {self.lr}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise HeadcoopError(
                "train config: lr_schedule must be 'constant' or 'cosine', "
                f"got {self.lr_schedule!r}"
            )
        if self.weight_decay < 0:
            raise HeadcoopError(f"train config: weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.dropout < 1:
            raise HeadcoopError(f"train config: dropout must be in [0, 1), got {self.dropout}")

    def lr_at(self, progress: float) -> float:
        """Learning rate after ``progress`` (0 to 1) of all training steps."""
        if self.lr_schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))

    def saves(self, epoch: int) -> bool:
        return epoch % self.checkpoint_every == 0 or epoch == self.epochs
