"""Measurements of one model's heads for the figures that draw them one by one: each single
head's logits (Fig 1) and each head's output space (Figs 6, 7, 15).

Plain functions of a model, its task and a sample size; `headcoop.paper.compute.FigureData`
caches what they return.
"""

import pandas as pd
import torch

from headcoop.compat import Model
from headcoop.engine.cache import collect
from headcoop.explore.head_data import head_separators, sample, token_inputs
from headcoop.metrics.attribution import decompose
from headcoop.tasks.base import Task


def single_head_logits(model: Model, task: Task, n: int) -> pd.DataFrame:
    """Each single head's logits (the paper's head-only z_{t,i} + b_t) of the decision's
    candidates and [EOS], at every readout of ``n`` test examples, by current and true next
    token (bag tasks only: the current token is read off the bag)."""
    examples = sample(task.split("test"), n)
    cache = collect(model, task, examples)
    parts = decompose(model, cache)
    bags = task.bags(examples)
    current = bags.tokens.gather(1, bags.read_pos)  # the token at each scored position
    vocab = task.vocab
    shown = [*task.readouts[task.decision].candidates, "[EOS]"]
    ids = torch.tensor([vocab.index(t) for t in shown])
    singles = torch.eye(model.cfg.n_heads, dtype=torch.bool)
    frames = []
    for read in range(len(task.readouts)):
        logits = parts.head_only(singles, read, ids)  # [head example token]
        names = {
            "current": [vocab[t] for t in current[:, read].tolist()],
            "next": [vocab[t] for t in cache.targets[:, read].tolist()],
        }
        for head in range(model.cfg.n_heads):
            for k, token in enumerate(shown):
                frame = {"head": head, **names, "token": token, "logit": logits[head, :, k]}
                frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


def head_output_points(model: Model, task: Task, n: int) -> pd.DataFrame:
    """The first and last coordinate of each head's output at the decision, for ``n``
    examples of the train and of the test split, with their class."""
    frames = []
    for seed, split in enumerate(("train", "test")):
        cache = collect(model, task, sample(task.split(split), n, seed))
        z = cache.z[:, task.decision]  # [example head d_head]
        label = [task.vocab[t] for t in cache.targets[:, task.decision].tolist()]
        for head in range(z.shape[1]):
            x, y = z[:, head, 0], z[:, head, -1]
            frames.append(
                pd.DataFrame({"head": head, "split": split, "class": label, "x": x, "y": y})
            )
    return pd.concat(frames, ignore_index=True)


@torch.no_grad()
def value_vectors(model: Model, task: Task, tokens: tuple[str, ...]) -> pd.DataFrame:
    """Each head's value vector of each of ``tokens`` (first and last coordinate)."""
    ids = torch.tensor([task.vocab.index(t) for t in tokens])
    x = token_inputs(model, 0)[ids]  # [token d_model]
    attn = model.blocks[0].attn
    v = torch.einsum("td,hde->hte", x, attn.W_V) + attn.b_V[:, None]  # [head token d_head]
    rows = [
        {"head": h, "token": token, "x": float(v[h, i, 0]), "y": float(v[h, i, -1])}
        for h in range(v.shape[0])
        for i, token in enumerate(tokens)
    ]
    return pd.DataFrame(rows)


def separators(model: Model, task: Task) -> pd.DataFrame:
    """Each single head's fitted separator w . O + b = 0 (the s-acc fit on the train split;
    two-class tasks)."""
    n_heads, d_head = model.cfg.n_heads, model.cfg.d_head
    weights = head_separators(model, task)
    rows = []
    for h in range(n_heads):
        w = weights[h, h * d_head : (h + 1) * d_head]
        rows.append(
            {"head": h, "w_x": float(w[0]), "w_y": float(w[-1]), "b": float(weights[h, -1])}
        )
    return pd.DataFrame(rows)
