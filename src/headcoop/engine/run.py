"""The one door to run models: given models, a task and examples, choose the engine and run.

Three engines compute the same thing (each tested against the TransformerLens forward):

- ``stack``: many one-layer attention-only models without positions at once, on bags, with a
  leading model axis (`headcoop.engine.stack`);
- ``bags``: one model's own forward on bags, with the multiplicity hook
  (`headcoop.engine.bags`), for bag-exact models the stack does not cover (an MLP);
- ``full``: one model's own forward on full sequences (any depth, positions, MLPs).

`choose_engine` is the only place that picks one; `run` gives every head's output at the
task's decision and the logits at every scored position, model by model; `predict` and
`evaluate` score one model. Consumers that need more of one model's activations (attention
mass, the residual stream) take a `headcoop.engine.cache.HeadCache`, which runs bags or full
sequences by the same rule.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int

from headcoop.compat import Model
from headcoop.device import device_of
from headcoop.engine.bags import use_bags
from headcoop.engine.batches import inference_batches, read_logits
from headcoop.engine.cache import collect
from headcoop.engine.loss import accuracies
from headcoop.engine.stack import MODEL_CHUNK, PairCounts, Stack, stackable
from headcoop.progress import progress_bar
from headcoop.tasks.base import Task


def choose_engine(models: Sequence[Model], task: Task, mode: str = "auto") -> str:
    """The engine that runs ``models`` on ``task``: 'stack' where every model stacks, 'bags'
    where bag compression is exact, 'full' otherwise or when ``mode`` is 'full'.

    ``mode`` is 'auto', 'bag' (bags required: an error where they are not exact) or 'full'.
    """
    if not all(use_bags(model, task, mode) for model in models):
        return "full"
    return "stack" if all(stackable(model) for model in models) else "bags"


@dataclass(frozen=True)
class Outputs:
    """What `run` gives for one split, model by model.

    Attributes:
        z: each head's output at the task's decision (``hook_z``), one tensor per model.
        logits: the logits at every scored position, one tensor per model (empty if not asked).
        targets: the correct next tokens.
    """

    z: list[Float[torch.Tensor, "example _head_index d_head"]]
    logits: list[Float[torch.Tensor, "example read d_vocab"]]
    targets: Int[torch.Tensor, "example read"]

    def heads(self) -> Float[torch.Tensor, "head example d_head"]:
        """Every model's heads, one model after another, each head's outputs as a row."""
        return torch.cat([z.transpose(0, 1) for z in self.z])


@torch.no_grad()
def run(
    models: Sequence[Model] | Stack,
    task: Task,
    examples: Int[torch.Tensor, "example ..."],
    logits: bool = True,
    mode: str = "auto",
    progress: bool = False,
) -> Outputs:
    """Run ``models`` (or a ready `Stack`) on ``examples`` by the engine `choose_engine` picks.

    Tensors stay on the models' device. ``logits=False`` keeps only the head outputs (they are
    what many models' s-acc needs, and the logits of thousands of models are large).
    """
    if isinstance(models, Stack) or choose_engine(models, task, mode) == "stack":
        return _run_stacked(models, task, examples, logits, progress)
    z, out = [], []
    for model in progress_bar(models, desc="models", disable=not progress or len(models) == 1):
        cache = collect(model, task, examples, mode, progress=progress and len(models) == 1)
        z.append(cache.z[:, task.decision])
        out += [cache.logits] if logits else []
    return Outputs(z, out, cache.targets)


def _run_stacked(
    models: Sequence[Model] | Stack,
    task: Task,
    examples: torch.Tensor,
    logits: bool,
    progress: bool,
) -> Outputs:
    """`run` on the stacked engine, `MODEL_CHUNK` models at a time."""
    if isinstance(models, Stack):
        chunks = models.chunks()
        n_heads = [models.params["blocks.0.attn.W_Q"].shape[1]] * len(models)
    else:
        chunks = (Stack.of(models[k : k + MODEL_CHUNK]) for k in range(0, len(models), MODEL_CHUNK))
        n_heads = [m.cfg.n_heads for m in models]
    device = models.device if isinstance(models, Stack) else device_of(models[0])
    bags = task.bags(examples).to(device)
    pairs = PairCounts.of(bags, len(task.vocab))
    z, out = [], []
    total = -(-len(n_heads) // MODEL_CHUNK)
    for chunk in progress_bar(chunks, total=total, desc="models", disable=not progress):
        heads = chunk.head_outputs(pairs)[:, :, task.decision]  # [model example head d_head]
        z += [heads[i, :, : n_heads[len(z) + i]] for i in range(len(chunk))]
        out += list(chunk.logits(pairs)) if logits else []
    return Outputs(z, out, bags.targets)


@torch.no_grad()
def predict(
    model: Model,
    task: Task,
    examples: torch.Tensor,
    mode: str = "auto",
    batch_size: int = 1024,
) -> Float[torch.Tensor, "example read d_vocab"]:
    """One model's logits at the scored positions of every example, in the order given (on the
    CPU), through its own forward: bags where exact (``mode='auto'``), else full sequences."""
    out = torch.empty(len(examples), len(task.readouts), model.cfg.d_vocab)
    for idx, batch in inference_batches(model, task, examples, mode, batch_size):
        out[idx] = read_logits(model, batch).cpu()
    return out


def evaluate(
    model: Model, task: Task, examples: torch.Tensor, mode: str = "auto"
) -> dict[str, float]:
    """Accuracy of each scored prediction (argmax over the vocabulary) and the mean loss.

    >>> from headcoop.config import ModelConfig
    >>> from headcoop.model import build_model
    >>> from headcoop.tasks import Count01
    >>> task = Count01()
    >>> model = build_model(ModelConfig(), d_vocab=len(task.vocab), seed=0)
    >>> sorted(evaluate(model, task, task.split("test")[:8]))
    ['answer', 'eos', 'loss']
    """
    return accuracies(task, predict(model, task, examples, mode), task.targets(examples))
