"""The logits of sets of heads with every other head ablated in the running model, for models of
any depth, with MLPs and positions: forward passes with the sets as a batch axis.

A set's heads split in two: those of the last layer, and those before it (the *prefix*). The
prefix changes everything after it, so each distinct prefix among the sets is one forward pass
of the examples (all distinct prefixes of a chunk side by side in one batch), keeping the
residual stream entering the last layer and that layer's head outputs at the scored positions.
The last layer's heads change only their own position's residual: for every set the rest is
computed at the scored positions alone, through the model's own modules (its last MLP, final
normalization and unembedding). So the 256 sets of a 2 x 4-head model cost 16 forward passes,
not 256; a one-layer model's 65,536 sets cost one.

A head outside the set is zeroed (``hook_z``), or with ``means`` replaced by its mean output
(`ablation_means`): at a scored position its mean there, elsewhere its mean over the other
positions. `headcoop.metrics.attribution.decompose` computes the same without forward passes
where the heads reach the logits linearly (one attention layer, no MLP); the two are tested
against each other and against hooked forwards.
"""

from collections import OrderedDict

import torch
from jaxtyping import Bool, Float, Int
from transformer_lens.hook_points import HookPoint

from headcoop.compat import Model
from headcoop.engine.batches import Hook, inference_batches, read_logits
from headcoop.engine.cache import HeadCache
from headcoop.tasks.base import Batch, Task

SETS_PER_PASS = 1024
"""Sequences a prefix pass runs at once, over all its prefixes (bounds memory and time)."""
TAIL_FLOATS = 2**24
"""Floats one block of the per-set tail computation may hold (about 64 MB)."""
CACHE_BYTES = 2**31
"""Bytes of prefix runs kept for reuse (the sets of a chunk often share prefixes)."""


def ablation_means(train: HeadCache) -> Float[torch.Tensor, "kind head_index d_head"]:
    """Each head's mean output over the training split: at each scored position (kinds 0 to
    read - 1), then over every other position before the last scored one (the last kind)."""
    return torch.cat([train.z.mean(0), train.z_other[None]])


class Ablation:
    """The logits of sets of heads of ``model`` on ``examples``, the other heads ablated.

    Args:
        model, task, examples: what runs.
        means: `ablation_means` for mean ablation; None to zero the other heads.
    """

    def __init__(
        self,
        model: Model,
        task: Task,
        examples: torch.Tensor,
        means: Float[torch.Tensor, "kind head_index d_head"] | None = None,
    ) -> None:
        self.model, self.task, self.examples, self.means = model, task, examples, means
        self.n_prefix = (model.cfg.n_layers - 1) * model.cfg.n_heads
        self._runs: OrderedDict[bytes, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @torch.no_grad()
    def set_logits(
        self,
        masks: Bool[torch.Tensor, "subset head_index"],
        read: int,
        tokens: Int[torch.Tensor, " token"],
    ) -> Float[torch.Tensor, "subset example token"]:
        """The logits of ``tokens`` at scored position ``read`` of each set (a
        `headcoop.metrics.attribution.SetReader`)."""
        masks = masks.cpu()
        prefixes, which = _distinct_rows(masks[:, : self.n_prefix])
        self._run_prefixes(prefixes)
        keys = [self._key(p) for p in prefixes]
        resid = torch.stack([self._runs[k][0][:, read] for k in keys])  # [prefix example d_model]
        z = torch.stack([self._runs[k][1][:, read] for k in keys])  # [prefix example head d_head]
        return self._tail(resid, z, which, masks[:, self.n_prefix :], read, tokens)

    def _tail(
        self,
        resid: Float[torch.Tensor, "prefix example d_model"],
        z: Float[torch.Tensor, "prefix example head d_head"],
        which: Int[torch.Tensor, " subset"],
        last: Bool[torch.Tensor, "subset head"],
        read: int,
        tokens: Int[torch.Tensor, " token"],
    ) -> Float[torch.Tensor, "subset example token"]:
        """Each set's logits from its prefix's run: the last layer's heads of the set added to
        the residual, then the model's own last MLP, final normalization and unembedding."""
        model, layer = self.model, self.model.cfg.n_layers - 1
        W_O, b_O = model.W_O[layer], model.b_O[layer]
        replaced = torch.zeros_like(W_O[:, 0])  # what an ablated head adds  [head d_model]
        if self.means is not None:
            replaced = torch.einsum("hd,hdm->hm", self.means[read, self.n_prefix :], W_O)
        base = resid + b_O + replaced.sum(0)  # every head of the last layer ablated
        delta = torch.einsum("pehd,hdm->pehm", z, W_O) - replaced  # what keeping one adds
        keep = last.float().to(resid.device)
        width = max(model.cfg.d_model, model.cfg.d_mlp or 0)
        block = max(1, TAIL_FLOATS // (resid.shape[1] * width))
        out = resid.new_empty(len(which), resid.shape[1], len(tokens))
        for prefix in which.unique():  # the sets of one prefix share its run
            for rows in torch.nonzero(which == prefix).flatten().split(block):
                mid = base[prefix] + torch.einsum("sh,ehm->sem", keep[rows], delta[prefix])
                logits = self._unembed(mid.flatten(0, 1)[:, None], tokens)
                out[rows] = logits.unflatten(0, mid.shape[:2])
        return out

    def _unembed(
        self, mid: Float[torch.Tensor, "row 1 d_model"], tokens: Int[torch.Tensor, " token"]
    ) -> Float[torch.Tensor, "row token"]:
        """The model's own computation after the last attention layer, at one position."""
        block = self.model.blocks[self.model.cfg.n_layers - 1]
        post = mid if self.model.cfg.attn_only else mid + block.mlp(block.ln2(mid))
        norm = getattr(self.model, "ln_final", None)  # TransformerLens 3 has none without one
        final = (post if norm is None else norm(post))[:, 0]
        return final @ self.model.W_U[:, tokens] + self.model.b_U[tokens]

    def _run_prefixes(self, prefixes: Bool[torch.Tensor, "prefix head"]) -> None:
        """Run every prefix not yet run, as many side by side as `SETS_PER_PASS` allows."""
        todo = [p for p in prefixes if self._key(p) not in self._runs]
        per_pass = max(1, SETS_PER_PASS // 64)
        for start in range(0, len(todo), per_pass):
            chunk = torch.stack(todo[start : start + per_pass])
            for prefix, run in zip(chunk, self._run(chunk), strict=True):
                self._remember(self._key(prefix), run)

    def _run(self, prefixes: Bool[torch.Tensor, "prefix head"]) -> list[tuple]:
        """Forward passes of every example under each prefix: the residual entering the last
        layer and that layer's head outputs, at the scored positions."""
        model = self.model
        rows, copies = max(1, SETS_PER_PASS // len(prefixes)), len(prefixes)
        resid, z, index = [], [], []
        batches = inference_batches(model, self.task, self.examples, "auto", rows, copies)
        for idx, batch in batches:
            captured: dict[str, torch.Tensor] = {}
            hooks = self._prefix_hooks(batch, prefixes, captured)
            read_logits(model, _repeat(batch, len(prefixes)), hooks)
            resid.append(captured["resid"].unflatten(0, (len(prefixes), -1)))
            z.append(captured["z"].unflatten(0, (len(prefixes), -1)))
            index.append(idx)
        order = torch.cat(index).argsort()
        resid, z = torch.cat(resid, 1)[:, order], torch.cat(z, 1)[:, order]
        return list(zip(resid, z, strict=True))

    def _prefix_hooks(
        self, batch: Batch, prefixes: Bool[torch.Tensor, "prefix head"], captured: dict
    ) -> list[Hook]:
        """Hooks that ablate each prefix's heads outside it in its copy of the batch, and
        capture what the last layer needs."""
        n_heads, n_layers = self.model.cfg.n_heads, self.model.cfg.n_layers
        device = batch.tokens.device
        copies = _repeat(batch, len(prefixes)).to(device)
        rows = torch.arange(len(copies), device=device)[:, None]
        fill = self._fill(copies)  # [row pos head_all d_head] or None

        def ablate(z: torch.Tensor, hook: HookPoint, layer: int) -> torch.Tensor:
            heads = slice(layer * n_heads, (layer + 1) * n_heads)
            keep = prefixes[:, heads].to(device).repeat_interleave(len(batch), 0)[:, None, :, None]
            replaced = 0.0 if fill is None else fill[:, :, heads]
            return torch.where(keep, z, replaced)

        def take(name: str):
            def store(x: torch.Tensor, hook: HookPoint) -> None:
                captured[name] = x[rows, copies.read_pos]

            return store

        hooks: list[Hook] = [
            (f"blocks.{layer}.attn.hook_z", lambda z, hook, layer=layer: ablate(z, hook, layer))
            for layer in range(n_layers - 1)
        ]
        last = n_layers - 1
        return [
            *hooks,
            (f"blocks.{last}.hook_resid_pre", take("resid")),
            (f"blocks.{last}.attn.hook_z", take("z")),
        ]

    def _fill(self, batch: Batch) -> torch.Tensor | None:
        """What each ablated head outputs at each position: its mean for that kind of
        position (`ablation_means`), or None for zero."""
        if self.means is None or self.n_prefix == 0:
            return None
        pos = torch.arange(batch.tokens.shape[1], device=batch.tokens.device)
        n_read = batch.read_pos.shape[1]
        kind = torch.full(batch.tokens.shape, n_read, device=pos.device)
        for k in range(n_read):
            kind = torch.where(pos[None] == batch.read_pos[:, k : k + 1], k, kind)
        return self.means.to(pos.device)[kind]  # [row pos head d_head]

    @staticmethod
    def _key(prefix: torch.Tensor) -> bytes:
        return prefix.numpy().tobytes()

    def _remember(self, key: bytes, run: tuple[torch.Tensor, torch.Tensor]) -> None:
        self._runs[key] = run
        size = sum(t.numel() * t.element_size() for t in run)
        while len(self._runs) > 1 and size * len(self._runs) > CACHE_BYTES:
            self._runs.popitem(last=False)


def _distinct_rows(
    masks: Bool[torch.Tensor, "subset head"],
) -> tuple[Bool[torch.Tensor, "distinct head"], Int[torch.Tensor, " subset"]]:
    """The distinct rows of ``masks`` and, for each row, the index of its distinct row."""
    if masks.shape[1] == 0:  # no heads before the last layer: one empty prefix
        return masks[:1], torch.zeros(len(masks), dtype=torch.long)
    return torch.unique(masks, dim=0, return_inverse=True)


def _repeat(batch: Batch, times: int) -> Batch:
    """``times`` copies of ``batch``, one after another."""
    mult = None if batch.multiplicity is None else batch.multiplicity.repeat(times, 1)
    return Batch(
        batch.tokens.repeat(times, 1),
        batch.read_pos.repeat(times, 1),
        batch.targets.repeat(times, 1),
        mult,
    )
