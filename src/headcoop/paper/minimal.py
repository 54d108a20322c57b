"""The paper's hand-built minimal solution (its appendix A) as a `HookedTransformer`.

One head, d_model = d_head = 1, no LayerNorm, W_Q = W_K = W_V = W_O = 1. With embeddings

    [BOS] 0, '0' N, '1' N+1, '2' 0, '=' 1, '4' N^2, '5' N^2

the score of '=' against token t is e_= e_t, so '=' gives weight e^N to each '0', e^(N+1) to
each '1' and about nothing to the rest; its output y lies between N (only 0s) and N+1 (only 1s),
and equals a = (N + e(N+1)) / (1 + e) exactly when the 0s and 1s are equally many. The unembedding
(0 0 0 0 0 1 -1 4) with bias (0 0 0 0 0 -a-1 a+1+eps -12(N+1)) turns the residual 1 + y into
'4' when y > a, '5' otherwise, and after '4' or '5' (residual 2N^2) into [EOS]. The appendix
compares only '4', '5' and [EOS]; here the other tokens get bias -1e4 instead of 0, so that the
argmax over the whole vocabulary agrees.

The appendix's table of embeddings is missing from our copy of the text; these values are
reconstructed from its attention logits and output formulas, and reproduce them.

The approximation needs n2 much smaller than e^N: 2s pull y towards their value 0, and when
that shift exceeds the gap between a tie and one more '1' the answer flips. `minimal_solution`
exposes N so that this failure can be measured.
"""

import math

import torch

from headcoop.compat import Model
from headcoop.config import ModelConfig
from headcoop.model import build_model
from headcoop.tasks.count01 import BOS, EOS, EQUALS, FIVE, FOUR, ONE, TWO, VOCAB, ZERO

MINIMAL = ModelConfig(d_model=1, n_heads=1, d_head=1, layernorm=False)


@torch.no_grad()
def minimal_solution(N: float = 10.0, eps: float = 1e-4) -> Model:
    """The appendix-A model for Count01 with attention sharpness ``N`` and tie margin ``eps``.

    >>> import torch
    >>> from headcoop import Count01, predict
    >>> counts = torch.tensor([[150, 151, 0], [151, 151, 200]])  # '4' (more 1s), '5' (a tie)
    >>> answers = predict(minimal_solution(), Count01(), counts)[:, 0].argmax(-1)
    >>> [Count01().vocab[t] for t in answers]
    ['4', '5']
    """
    model = build_model(MINIMAL, len(VOCAB), seed=0)
    for param in model.parameters():
        param.zero_()
    embedding = {BOS: 0.0, ZERO: N, ONE: N + 1, TWO: 0.0, EQUALS: 1.0, FOUR: N**2, FIVE: N**2}
    for token, value in embedding.items():
        model.embed.W_E[token, 0] = value
    attn = model.blocks[0].attn
    attn.W_Q.fill_(1.0)
    attn.W_K.fill_(1.0)
    attn.W_V.fill_(1.0)
    attn.W_O.fill_(1.0)
    a = (N + math.e * (N + 1)) / (1 + math.e)
    model.unembed.W_U[0] = torch.tensor([0, 0, 0, 0, 0, 1.0, -1.0, 4.0])
    model.unembed.b_U[FOUR], model.unembed.b_U[FIVE] = -a - 1, a + 1 + eps
    model.unembed.b_U[EOS] = -12 * (N + 1)
    model.unembed.b_U[[BOS, ZERO, ONE, TWO, EQUALS]] = -1e4  # never predicted
    return model
