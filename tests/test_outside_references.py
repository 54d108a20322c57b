"""headcoop's numbers against TransformerLens's own analysis tools, on a two-layer model with an
MLP and learned positions, written by plain TransformerLens code:

- each head's direct logit attribution: 4.x ``tools.analysis.direct_logit_attribution``
  (unit 'head'); 3.x the cache's ``stack_head_results`` and ``apply_ln_to_stack``;
- the accuracy with each head zero-ablated: ``patching.get_act_patch_attn_head_out_all_pos``
  (TransformerLens's activation patching, from a cache of zeros), and with each pair
  zero-ablated: ``run_with_hooks``.
"""

import copy
import itertools

import pytest
import torch

from headcoop import PromptTask, analyze
from headcoop.compat import TL_VERSION
from headcoop.engine.cache import collect
from headcoop.metrics.attribution import decompose
from tests.test_fields import plain_model

SHAPE = {
    "n_layers": 2, "d_model": 24, "n_heads": 2, "d_head": 6, "n_ctx": 8, "d_vocab": 10,
    "attn_only": False, "d_mlp": 32, "normalization_type": "LNPre",
}  # fmt: skip
"""LNPre: a final normalization without weight or bias, which 4.x's attribution requires."""
CANDIDATES = [2, 5]


@pytest.fixture(scope="module")
def setting():
    model = plain_model(SHAPE, seed=7)
    rows = torch.randint(0, 10, (200, 8), generator=torch.Generator().manual_seed(1))
    logits = model(rows)[:, -1, CANDIDATES]
    targets = torch.tensor(CANDIDATES)[logits.argmax(-1)]  # the model's own answers, with
    flip = torch.rand(200, generator=torch.Generator().manual_seed(2)) < 0.2  # a fifth flipped
    targets = torch.where(flip, sum(CANDIDATES) - targets, targets)
    task = PromptTask(rows, targets.tolist(), candidates=CANDIDATES)
    return model, task, analyze(model, task)


def _own_attribution(model, tokens: torch.Tensor) -> torch.Tensor:
    """TransformerLens's per-head direct logit attribution at the last position, [head
    example candidate]."""
    columns = []
    if TL_VERSION[0] == 4:
        from transformer_lens.tools.analysis import direct_logit_attribution

        bridge = copy.deepcopy(model)
        bridge.enable_compatibility_mode(no_processing=True)
        for token in CANDIDATES:
            answer = torch.full((len(tokens),), token)
            found = direct_logit_attribution(bridge, tokens, answer, unit="head", pos=-1)
            columns.append(found.attribution[:-1])  # the last row is the remainder
        return torch.stack(columns, -1)
    _, cache = model.run_with_cache(tokens)
    stack = cache.stack_head_results(layer=-1, pos_slice=-1)  # [head batch d_model]
    scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)
    return (
        (scaled @ model.W_U[:, CANDIDATES]).squeeze(-2)
        if scaled.dim() == 4
        else scaled @ model.W_U[:, CANDIDATES]
    )


def test_each_heads_direct_logit_attribution_is_transformer_lens_own(setting):
    model, task, _ = setting
    test = task.split("test")
    tokens = task.sequences(test).tokens
    cache = collect(model, task, test)
    parts = decompose(model, cache)
    ours = parts.heads[:, 0, :, CANDIDATES] / parts.scale[:, 0, None, None]  # [example head c]
    theirs = _own_attribution(model, tokens).permute(1, 0, 2)
    assert theirs.shape == ours.shape
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def _accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Accuracy at the last position, the prediction the higher of the candidates' logits."""
    chosen = torch.tensor(CANDIDATES)[logits[:, -1, CANDIDATES].argmax(-1)]
    return (chosen == targets).float().mean()


def _set_value(result, kept: set[int], column: str) -> float:
    masks = result.subsets.masks
    want = torch.tensor([h in kept for h in range(masks.shape[-1])])
    row = int((masks == want).all(-1).nonzero()[0])
    return float(result.subsets.columns[column][row])


def test_each_head_ablated_equals_transformer_lens_activation_patching(setting):
    from transformer_lens import patching

    model, task, result = setting
    batch = task.sequences(task.split("test"))
    _, clean = model.run_with_cache(batch.tokens)
    zeros = copy.copy(clean)
    zeros.cache_dict = {k: torch.zeros_like(v) for k, v in clean.cache_dict.items()}
    found = patching.get_act_patch_attn_head_out_all_pos(
        model, batch.tokens, zeros, lambda logits: _accuracy(logits, batch.targets[:, 0])
    )  # [layer head]: the accuracy with that head's output zeroed
    every = set(range(4))
    for layer, head in itertools.product(range(2), range(2)):
        ours = _set_value(result, every - {2 * layer + head}, "l_acc_direct")
        assert ours == pytest.approx(float(found[layer, head]), abs=1e-6)


def test_each_pair_ablated_equals_a_hooked_forward(setting):
    model, task, result = setting
    batch = task.sequences(task.split("test"))
    for pair in itertools.combinations(range(4), 2):

        def zero(z, hook, pair=pair):
            layer = int(hook.name.split(".")[1]) if "blocks." in hook.name else 0
            for h in pair:
                if h // 2 == layer:
                    z[:, :, h % 2] = 0.0
            return z

        hooks = [(f"blocks.{k}.attn.hook_z", zero) for k in range(2)]
        logits = model.run_with_hooks(batch.tokens, fwd_hooks=hooks)
        theirs = float(_accuracy(logits, batch.targets[:, 0]))
        ours = _set_value(result, set(range(4)) - set(pair), "l_acc_direct")
        assert ours == pytest.approx(theirs, abs=1e-6), pair
