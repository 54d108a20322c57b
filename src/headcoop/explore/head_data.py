"""What the head explorer shows of each head, measured once and made JSON-ready.

For every head of a model of any depth (named ``L{layer}H{head}``, numbered layer-major):
- its QK table: the attention score between the token embeddings alone (through the layer's
  first normalization, no positions), query token by key token, with the singular values of
  W_Q W_K^T and each token's loading on its components;
- its OV table: what it writes to each decision candidate's logit per source token (the
  embedding through W_V W_O and the unembedding: its direct path, final normalization aside);
- its margin on each sampled test example: the head-only logit of the true candidate minus
  the best other one (the paper's z_{t,i} + b_t, as l-acc reads them);
- its outputs at the decision on sampled test examples, with the value vectors of every token
  and, for two classes and d_head <= 2, the separator fitted for s-acc (Figs 6-7);
- where the task and run have them: the pattern-intervention curve, s-acc and head weight
  over the saved epochs, and succession scores.
"""

import math
from typing import Any

import torch
from jaxtyping import Float

from headcoop.compat import Model
from headcoop.engine.cache import HeadCache, collect
from headcoop.heads.analysis import HeadAnalysis
from headcoop.metrics.attribution import decompose
from headcoop.metrics.classes import labels
from headcoop.metrics.separation import fit_separators
from headcoop.metrics.subsets import pair_members
from headcoop.tasks.base import Task, candidate_ids

SAMPLES = 300
"""Test examples whose margins and outputs the page draws (the same for every head)."""
DIGITS = 5
"""Significant digits of the numbers drawn (the head table keeps full precision)."""


def round_all(values: Any) -> Any:
    """Nested lists of floats rounded to `DIGITS` significant digits (smaller JSON)."""
    if isinstance(values, list):
        return [round_all(v) for v in values]
    if isinstance(values, float) and math.isfinite(values) and values != 0.0:
        return round(values, DIGITS - 1 - math.floor(math.log10(abs(values))))
    return values


def head_names(model: Model) -> list[str]:
    return [f"L{h // model.cfg.n_heads}H{h % model.cfg.n_heads}" for h in range(_n(model))]


def _n(model: Model) -> int:
    return model.cfg.n_layers * model.cfg.n_heads


@torch.no_grad()
def token_inputs(model: Model, layer: int) -> Float[torch.Tensor, "d_vocab d_model"]:
    """Each token's embedding alone through ``layer``'s first normalization."""
    embedding = model.embed.W_E
    return model.blocks[layer].ln1(embedding[None])[0]


@torch.no_grad()
def qk_circuit(model: Model, layer: int, head: int) -> dict[str, Any]:
    """The token-by-token QK table of one head, and the SVD of its W_Q W_K^T."""
    attn, x = model.blocks[layer].attn, token_inputs(model, layer)
    query = x @ attn.W_Q[head] + attn.b_Q[head]
    key = x @ attn.W_K[head] + attn.b_K[head]
    scale = math.sqrt(model.cfg.d_head) if model.cfg.use_attn_scale else 1.0
    u, s, vh = torch.linalg.svd(attn.W_Q[head] @ attn.W_K[head].T)
    rank = model.cfg.d_head
    return {
        "scores": (query @ key.T / scale).tolist(),
        "singular_values": s[:rank].tolist(),
        "query_loadings": (x @ u[:, :rank]).T.tolist(),
        "key_loadings": (x @ vh[:rank].T).T.tolist(),
    }


@torch.no_grad()
def ov_circuit(model: Model, layer: int, head: int, candidates: torch.Tensor) -> list[list]:
    """[source token][candidate]: what the head writes to each candidate's logit when it
    attends to that token alone, through W_V W_O and the unembedding."""
    attn, x = model.blocks[layer].attn, token_inputs(model, layer)
    value = x @ attn.W_V[head] + attn.b_V[head]
    return (value @ attn.W_O[head] @ model.unembed.W_U[:, candidates]).tolist()


def margins(model: Model, task: Task, cache: HeadCache) -> list[list[float]]:
    """[head][example]: each single head's head-only logit of the true candidate minus the
    best other candidate's, at the decision."""
    candidates = candidate_ids(task, task.decision)
    singles = torch.eye(_n(model), dtype=torch.bool)
    logits = decompose(model, cache).head_only(singles, task.decision, candidates)
    truth = labels(task, cache.targets)  # [example]: the true candidate's index
    true_logit = logits.gather(2, truth[None, :, None].expand(len(singles), -1, 1))[..., 0]
    others = logits.scatter(2, truth[None, :, None].expand(len(singles), -1, 1), -torch.inf)
    return (true_logit - others.amax(-1)).tolist()


def sample(examples: torch.Tensor, n: int = SAMPLES, seed: int = 0) -> torch.Tensor:
    """``n`` examples drawn without replacement, the same ones for the same seed."""
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))
    return examples[order[:n]]


@torch.no_grad()
def output_space(model: Model, task: Task, cache: HeadCache) -> list[dict]:
    """Per head: its outputs at the decision on the sampled examples and every token's value
    vector, in two coordinates (the first and last of the head's output for d_head <= 2, as
    the paper's Figs 6-7; else the top two principal axes of its outputs), and, for two
    classes and d_head <= 2, the separator fitted for s-acc (w_x x + w_y y + b = 0)."""
    z = cache.z[:, task.decision]  # [example head d_head]
    d_head, n = model.cfg.d_head, _n(model)
    separators = head_separators(model, task) if d_head <= 2 else None
    spaces = []
    for h in range(n):
        layer, head = divmod(h, model.cfg.n_heads)
        attn = model.blocks[layer].attn
        values = token_inputs(model, layer) @ attn.W_V[head] + attn.b_V[head]
        basis = _basis(z[:, h])
        space = {"points": (z[:, h] @ basis).T.tolist(), "values": (values @ basis).T.tolist()}
        if separators is not None:
            w = separators[h, h * d_head : (h + 1) * d_head]
            space["separator"] = [float(w[0]), float(w[-1]), float(separators[h, -1])]
        spaces.append(space)
    return spaces


def _basis(z: Float[torch.Tensor, "example d_head"]) -> Float[torch.Tensor, "d_head 2"]:
    """The two coordinates drawn: the first and last for d_head <= 2, else the top two
    principal axes."""
    d_head = z.shape[-1]
    if d_head <= 2:
        return torch.eye(d_head)[:, [0, -1]]
    _, _, vh = torch.linalg.svd(z - z.mean(0), full_matrices=False)
    return vh[:2].T


def head_separators(model: Model, task: Task) -> Float[torch.Tensor, "head_index feature"] | None:
    """Each single head's s-acc separator, fitted on the train split (w over every head's
    features, zero but on its own, then the intercept); None unless the task has two
    classes."""
    if len(task.readouts[task.decision].candidates) != 2:
        return None
    train = collect(model, task, task.split("train"))
    positive = labels(task, train.targets) == 1  # the second class, as in s-acc
    masks = torch.eye(_n(model), dtype=torch.bool)
    return fit_separators(train.z[:, task.decision], positive, masks)


def intervention_curves(model: Model, task: Task) -> dict[str, Any] | None:
    """Per head, s-acc with its attention at the decision fixed by the task's first two
    ratios (the paper's Figs 8-9), where the task has two and the model runs on bags."""
    from headcoop.engine.bags import bag_exact
    from headcoop.heads.interventions import RATIO_GRID, attention_sweep

    if len(task.attention_ratios) < 2 or not bag_exact(model) or model.cfg.n_layers != 1:
        return None
    first, second = list(task.attention_ratios)[:2]
    curves = {"ratios": list(RATIO_GRID)}
    for name, settings in (
        (first, [{first: r} for r in RATIO_GRID]),
        (second, [{first: 1.0, second: r} for r in RATIO_GRID]),
    ):
        curves[name] = attention_sweep(model, task, settings).T.tolist()  # [head][ratio]
    return curves


def dynamics(run: Any, task: Task, at_most: int = 12) -> dict[str, Any] | None:
    """Each head's s-acc and head weight at up to ``at_most`` saved epochs (evenly spaced, the
    last included), where ``run`` is a training run directory with epoch checkpoints."""
    from headcoop.heads.dynamics import trajectory
    from headcoop.loading.checkpoint import run_checkpoints

    epochs = [e for e, _ in run_checkpoints(run)] if run is not None else []
    if len(epochs) < 2:  # a checkpoint, a model in memory or a run that saved one epoch
        return None
    step = math.ceil(len(epochs) / at_most)
    chosen = sorted(set(epochs[::-1][::step]))
    found = trajectory(run, task, epochs=chosen)
    return {
        "epochs": found.epochs.tolist(),
        "s_acc": found.s_acc.T.tolist(),
        "head_weight": found.head_weight.T.tolist(),
    }


def succession(model: Model, task: Task) -> dict[str, dict[str, float]] | None:
    """Each head's succession score per ordered domain, where the task has them."""
    if not hasattr(task, "domains"):
        return None
    from headcoop.heads.succession import succession_scores

    scores = succession_scores(model, task)
    single = scores[~scores["path"].str.contains("->")]
    return {
        path: dict(zip(rows["domain"], rows["score"], strict=True))
        for path, rows in single.groupby("path")
    }


def explorer_data(model: Model, task: Task, found: HeadAnalysis, run: Any = None) -> dict[str, Any]:
    """Everything the page draws, JSON-ready: the analysis ``found`` beside each head's
    circuits and samples."""
    candidates = candidate_ids(task, task.decision)
    cache = collect(model, task, sample(task.split("test")))
    names = head_names(model)
    heads = []
    for h, name in enumerate(names):
        layer, head = divmod(h, model.cfg.n_heads)
        heads.append({"name": name, "qk": qk_circuit(model, layer, head)})
        heads[-1]["ov"] = ov_circuit(model, layer, head, candidates)
    for head, margin, space in zip(
        heads, margins(model, task, cache), output_space(model, task, cache), strict=True
    ):
        head |= {"margins": margin, **space}
    return {
        "vocab": list(task.vocab),
        "candidates": list(task.readouts[task.decision].candidates),
        "classes": labels(task, cache.targets).tolist(),
        "heads": round_all(heads),
        "table": found.heads_frame().to_dict(orient="list"),
        "pairs": _pairs(found),
        "interventions": round_all(intervention_curves(model, task)),
        "dynamics": round_all(dynamics(run, task)),
        "succession": succession(model, task),
        "summary": {k: found.summary.get(k) for k in ("task", "accuracy", "classes")},
    }


def _pairs(found: HeadAnalysis) -> dict[str, list]:
    """Each metric's pair interactions as [i, j, value] rows (the page ranks partners)."""
    if found.interactions is None:
        return {}
    rows, n_heads = found.tables["pair_interactions"], len(found.heads_frame())
    return {
        metric: [
            [*members, float(v)]
            for members, v in zip(
                pair_members(list(g["heads"]), n_heads).tolist(), g["interaction"], strict=True
            )
        ]
        for metric, g in rows.groupby("metric", sort=False)
    }
