"""Ground truth from tracr: RASP programs compiled into transformers whose heads do known jobs
(`scripts/make_tracr_fixtures.py` wrote them as plain TransformerLens checkpoints, with
tracr's own outputs as the prompts' targets). The analysis must find those jobs: the heads
compiled for a Select/Aggregate are the ones whose ablation drops the decision to chance, an
empty head has no effect and no Shapley value, and heads that must act together (an AND of
two shifts; a length read by a later head through MLPs) are complements under ablation."""

import json
from pathlib import Path

import pytest
import torch

from headcoop import PromptTask, analyze, load_checkpoint

FIXTURES = Path(__file__).parent / "fixtures" / "tracr"
LIVE = {"hist": [0], "pattern": [2, 3], "reverse": [0, 3]}
"""The heads tracr compiled for a Select/Aggregate (layer-major), by program."""
COMPOSING = {"pattern": (2, 3), "reverse": (0, 3)}
DEFAULT_LENGTH = {("reverse", 0): 0.8}
"""Where zero ablation leaves tracr a default that is often right: the length head of
'reverse' zeroed, its MLP decodes the longest length, right for every prompt of length 5 (243
of 360) and a few others; the decision drops from 1.0 to 0.78, not to chance (0.34)."""
GAME = "l_acc_direct"
"""Heads kept, the others zero-ablated in the running model (the MLPs and every path kept):
the readout in which tracr's heads act through its MLPs."""


@pytest.fixture(scope="module", params=sorted(LIVE))
def compiled(request):
    folder = FIXTURES / request.param
    model, _ = load_checkpoint(folder)
    meta = json.loads((folder / "tracr.json").read_text())
    task = PromptTask.from_jsonl(folder / "prompts.jsonl", candidates=meta["candidates"])
    return request.param, model, task, analyze(model, task)


def _without(result, removed: set[int]) -> float:
    masks = result.subsets.masks
    keep = torch.tensor([h not in removed for h in range(masks.shape[-1])])
    return float(result.subsets.columns[GAME][int((masks == keep).all(-1).nonzero()[0])])


def test_the_converted_model_computes_what_tracr_computes(compiled):
    _, _, _, result = compiled
    assert result.summary["accuracy"]["target"] == 1.0


def test_ablating_a_compiled_head_drops_the_decision_to_chance(compiled):
    name, model, _, result = compiled
    chance = result.summary["majority_share"]
    for head in range(model.cfg.n_layers * model.cfg.n_heads):
        value = _without(result, {head})
        if (name, head) in DEFAULT_LENGTH:
            assert value < DEFAULT_LENGTH[name, head], (name, head, value)
        elif head in LIVE[name]:
            assert value <= chance + 0.05, (name, head, value, chance)
        else:
            assert value == 1.0, (name, head)


def test_an_empty_head_has_no_shapley_value(compiled):
    name, model, _, result = compiled
    game = result.interactions.metrics.index(GAME)
    shapley = result.interactions.shapley[game]
    for head in range(model.cfg.n_layers * model.cfg.n_heads):
        if head not in LIVE[name]:
            assert abs(float(shapley[head])) < 1e-6, (name, head)
    assert shapley[LIVE[name]].min() > 0.1


def test_heads_that_act_together_are_complements(compiled):
    name, _, _, result = compiled
    if name not in COMPOSING:
        pytest.skip("one live head: no pair to interact")
    game = result.interactions.metrics.index(GAME)
    a, b = COMPOSING[name]
    assert float(result.interactions.pairs[game, a, b]) > 0.1
