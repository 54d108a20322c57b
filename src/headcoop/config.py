"""Configuration of the model and of training: plain dataclasses, validated on creation.

Each numeric setting's rule is declared once, as data (`Rule`, in `MODEL_RULES` and
`TRAIN_RULES`); the configs check every field against it and the CLI parses its flags with it,
so the two can never disagree. Kept free of torch and transformer_lens imports, so that the CLI
can show their defaults instantly.
"""

import math
from dataclasses import dataclass, fields
from typing import Any

from headcoop.errors import HeadcoopError


@dataclass(frozen=True)
class Rule:
    """What a numeric setting accepts: its type and an interval.

    Args:
        kind: int or float (an int is accepted where a float is asked for; a bool never is).
        low, high: the bounds, or None for none. Floats must also be finite.
        low_open, high_open: whether the bound itself is excluded.
    """

    kind: type
    low: int | float | None = None
    high: int | float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        """The rule in words, e.g. 'a positive integer' or 'a number in [0, 1)'."""
        noun = "an integer" if self.kind is int else "a finite number"
        if self.low == 0 and self.high is None:
            return f"{'a positive' if self.low_open else 'a non-negative'} {noun.split()[-1]}"
        if self.kind is int and self.low == 1 and self.high is None:
            return "a positive integer"

        def show(bound: int | float) -> str:
            return str(int(bound)) if self.kind is int else f"{bound:g}"

        if self.high is None:
            return f"{noun} {'>' if self.low_open else '>='} {show(self.low)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{noun} in {left}{show(self.low)}, {show(self.high)}{right}"

    def check(self, name: str, value: Any) -> Any:
        """``value`` if it obeys the rule, else a `HeadcoopError` naming ``name``."""
        if not self.accepts(value):
            raise HeadcoopError(f"{name} must be {self.describe()}, got {value!r}")
        return value

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (
            value > self.high or (self.high_open and value == self.high)
        )

    def parse(self, text: str) -> int | float:
        """Read a command-line value and check it (for argparse's ``type=``)."""
        import argparse

        try:
            value = self.kind(text)
        except ValueError:
            value = None
        if value is None or not self.accepts(value):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}")
        return value


POSITIVE_INT = Rule(int, 1)
SEED = Rule(int, 0, 2**32 - 1)
SPLIT_SIZE = Rule(int, 1, 10**7)
COUNT = Rule(int, 0, 10**9)
"""How often a token may occur in a generated example (a split's count range)."""
MODEL_RULES = {
    "d_model": Rule(int, 1, 2**14),
    "n_heads": Rule(int, 1, 2**12),
    "d_head": Rule(int, 1, 2**12),
    "n_layers": Rule(int, 1, 64),
    "n_ctx": Rule(int, 1, 2**20),
    "d_mlp": Rule(int, 0, 2**16),
}
MAX_PARAMETERS = 10**8
"""headcoop's models are toys: a shape with more attention parameters is refused up front
rather than failing to allocate."""
TRAIN_RULES = {
    "seed": SEED,
    "epochs": Rule(int, 1, 10**5),
    "batch_size": POSITIVE_INT,
    # Bounded so that the optimizer's arithmetic stays within float32; divergence below the
    # bounds is caught by the trainer.
    "lr": Rule(float, 0, 1e6, low_open=True),
    "weight_decay": Rule(float, 0, 1e9),
    "dropout": Rule(float, 0, 1, high_open=True),
    "checkpoint_every": POSITIVE_INT,
    "init_scale": Rule(float, 0, 1e3, low_open=True),
}


def check_fields(config: Any, rules: dict[str, Rule], section: str) -> None:
    """Check every field of a config dataclass that has a rule, and the type of the rest."""
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in rules:
            rules[f.name].check(f"{section} config: {f.name}", value)
        elif f.type in (bool, str) and not isinstance(value, f.type):
            raise HeadcoopError(
                f"{section} config: {f.name} must be a {f.type.__name__}, got {value!r}"
            )


NORMALIZATIONS = ("LN", "LNPre", "RMS", "RMSPre")
"""TransformerLens's normalizations: LayerNorm with or without its weight and bias ('LNPre'),
RMSNorm with or without its weight ('RMSPre')."""
ACTIVATIONS = ("relu", "gelu", "gelu_new", "gelu_fast", "silu", "solu_ln")
"""The MLP activations TransformerLens offers (its ``act_fn``)."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the model. The defaults are the paper's stable setup.

    Args:
        d_model: embedding dimension.
        n_heads: attention heads in each layer.
        d_head: dimension of each head's queries, keys, values and output.
        layernorm: normalize before each attention layer, each MLP and the unembedding.
        n_layers: transformer blocks. One is the paper's; more runs full sequences.
        positional: learn a positional embedding. Off (the paper's) keeps W_pos zero and frozen.
        n_ctx: longest sequence the model accepts.
        d_mlp: width of an MLP after each attention layer; 0 (the paper's) for none.
        act_fn: the MLP's activation (`ACTIVATIONS`).
        normalization: which normalization ``layernorm`` applies (`NORMALIZATIONS`).
    """

    d_model: int = 32
    n_heads: int = 16
    d_head: int = 2
    layernorm: bool = True
    n_layers: int = 1
    positional: bool = False
    n_ctx: int = 2048
    d_mlp: int = 0
    act_fn: str = "relu"
    normalization: str = "LN"

    def __post_init__(self) -> None:
        check_fields(self, MODEL_RULES, "model")
        for name, choices in (("act_fn", ACTIVATIONS), ("normalization", NORMALIZATIONS)):
            if getattr(self, name) not in choices:
                raise HeadcoopError(
                    f"model config: {name} must be one of {choices}, got {getattr(self, name)!r}"
                )
        per_layer = 4 * self.n_heads * self.d_head * self.d_model + 2 * self.d_mlp * self.d_model
        if self.n_layers * per_layer > MAX_PARAMETERS:
            raise HeadcoopError(
                f"model config: {self.n_layers * per_layer:,} parameters, more than the "
                f"{MAX_PARAMETERS:,} headcoop allows for toy models"
            )
        if self.layernorm and self.normalization.startswith("LN") and self.d_model < 2:
            raise HeadcoopError("model config: layernorm needs d_model >= 2 (use --no-layernorm)")

    def hooked_kwargs(self, d_vocab: int) -> dict[str, Any]:
        """Keyword arguments of the equivalent `HookedTransformerConfig` (stored in checkpoints;
        an attention-only model's are those of headcoop's first checkpoints, unchanged)."""
        kwargs = {
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "d_head": self.d_head,
            "n_ctx": self.n_ctx,
            "d_vocab": d_vocab,
            "attn_only": self.d_mlp == 0,
            "normalization_type": self.normalization if self.layernorm else None,
            "positional_embedding_type": "standard",
            "default_prepend_bos": False,
        }
        if self.d_mlp:
            kwargs |= {"d_mlp": self.d_mlp, "act_fn": self.act_fn}
        return kwargs

    @classmethod
    def of(cls, model: Any) -> "ModelConfig":
        """The config a TransformerLens model was built with, read off the model itself."""
        cfg = model.cfg
        return cls(
            d_model=cfg.d_model,
            n_heads=cfg.n_heads,
            d_head=cfg.d_head,
            layernorm=cfg.normalization_type is not None,
            n_layers=cfg.n_layers,
            positional=cfg.positional_embedding_type != "standard"
            or bool(model.pos_embed.W_pos.requires_grad or model.pos_embed.W_pos.any()),
            n_ctx=cfg.n_ctx,
            d_mlp=0 if cfg.attn_only else cfg.d_mlp,
            act_fn=cfg.act_fn if not cfg.attn_only and cfg.act_fn in ACTIVATIONS else "relu",
            normalization=cfg.normalization_type or "LN",
        )


SUBSET_MODES = ("auto", "all", "sampled", "none")
"""What ``analyze`` measures besides singles and pairs (``subsets``, ``--subsets``): as the cost
model of `headcoop.heads.subset_plan` decides, or forced."""
BOOTSTRAP = 200
"""Bootstrap resamples of the test split behind every interval `analyze` gives (``--bootstrap``;
0 for none): see `headcoop.metrics.bootstrap`."""
MAX_BOOTSTRAP = 100_000
SUBSETS_BUDGET = 300.0
"""Seconds the pass over all sets of heads may take by its estimate (``analyze``'s
``subsets_budget``, ``--subsets-budget``); see `headcoop.heads.subset_plan`."""

LR_SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("adamw", "adam", "sgd")
INIT_SCHEMES = ("transformer_lens", "pytorch")
SGD_MOMENTUM = 0.9
"""The momentum of the 'sgd' optimizer (heavy-ball, as in ``torch.optim.SGD``)."""
LATE_FIELDS = ("optimizer", "init", "init_scale")
"""Training settings added after results were first cached: a key leaves them out while they
are at their defaults (`TrainConfig.key_dict`), so that earlier caches stay valid."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. The defaults train the paper's model (d_model 32, 16 heads) to
    near-perfect test accuracy; see the README for the measured accuracies over seeds.

    Args:
        seed: seed of the initial weights, the example order and the dropout masks.
        epochs: passes over the training split.
        batch_size: examples per optimizer step.
        lr: learning rate (the peak, under a schedule).
        lr_schedule: 'constant', or 'cosine': decay from ``lr`` to zero over all epochs.
        weight_decay: weight decay: decoupled under 'adamw', an L2 term in the gradient under
            'adam' and 'sgd' (as torch applies it).
        dropout: rate of dropout on the attention output (after W_O), during training only.
        checkpoint_every: save a checkpoint every this many epochs (the last is always saved).
        optimizer: 'adamw', 'adam', or 'sgd' (with momentum `SGD_MOMENTUM`).
        init: the initial weights' scheme: 'transformer_lens' (GPT-2's: every matrix from
            N(0, 0.8 / sqrt(d_model)), biases zero), or 'pytorch' (plain torch modules'
            defaults: embeddings from N(0, 1), linear maps and their biases from
            U(-1/sqrt(fan_in), 1/sqrt(fan_in))). See `headcoop.model.initialize`.
        init_scale: every randomly drawn initial weight is multiplied by this.
    """

    seed: int = 0
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    weight_decay: float = 0.01
    dropout: float = 0.1
    checkpoint_every: int = 1
    optimizer: str = "adamw"
    init: str = "transformer_lens"
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self, TRAIN_RULES, "train")
        for name, choices in (
            ("lr_schedule", LR_SCHEDULES),
            ("optimizer", OPTIMIZERS),
            ("init", INIT_SCHEMES),
        ):
            if getattr(self, name) not in choices:
                raise HeadcoopError(
                    f"train config: {name} must be one of {choices}, got {getattr(self, name)!r}"
                )

    def key_dict(self) -> dict[str, Any]:
        """The settings as a dict for cache keys and stored metadata: every field, except the
        `LATE_FIELDS` that are at their defaults."""
        default = TrainConfig()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in LATE_FIELDS or getattr(self, f.name) != getattr(default, f.name)
        }

    def lr_at(self, progress: float) -> float:
        """Learning rate after ``progress`` (0 to 1) of all training steps."""
        if self.lr_schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))

    def saves(self, epoch: int) -> bool:
        return epoch % self.checkpoint_every == 0 or epoch == self.epochs
