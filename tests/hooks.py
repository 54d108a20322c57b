"""Independent, hook-based computations that tests compare the fast paths with."""

import torch

from headcoop.engine.batches import read_logits


def paper_logits_by_hook(model, bags, keep: torch.Tensor) -> torch.Tensor:
    """The paper's head-only logits, by hooks on the running model: heads outside ``keep``
    zeroed, the embedding removed from the residual after attention (what remains is the
    attention output: the kept heads and b_O), and the final LayerNorm scale held at the full
    model's."""
    clean = {}

    def keep_scale(scale, hook):
        clean["scale"] = scale

    def keep_resid(resid, hook):
        clean["resid_pre"] = resid

    has_ln = model.cfg.normalization_type is not None
    if has_ln:
        read_logits(model, bags, [("ln_final.hook_scale", keep_scale)])

    hooks = [
        ("blocks.0.attn.hook_z", lambda z, hook: z * keep[None, None, :, None]),
        ("blocks.0.hook_resid_pre", keep_resid),
        ("blocks.0.hook_resid_post", lambda resid, hook: resid - clean["resid_pre"]),
    ]
    if has_ln:
        hooks.append(("ln_final.hook_scale", lambda scale, hook: clean["scale"]))
    return read_logits(model, bags, hooks)
