"""Decision labels, chance and head classes: one definition each, imported wherever used.

A task's decision readout chooses among its candidate tokens; an example's *label* is the index
of its correct candidate (0 .. k-1). Chance is the share of the most frequent label on the test
split: what a head that always answers one class reaches.
"""

import torch
from jaxtyping import Float, Int

from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Task, candidate_ids

SUCCESSFUL = 0.98
"""A head whose s-acc reaches this is successful (the paper's bound)."""
CHANCE_MARGIN = 0.05
"""A score within this of chance (the majority share) is near chance: a head whose s-acc is
below chance plus this margin is failed, heads in between are mixed; an l-acc above it is
above chance."""
HEAD_CLASSES = ("successful", "mixed", "failed")


def labels(
    task: Task, targets: Int[torch.Tensor, "example read"], read: int | None = None
) -> Int[torch.Tensor, " example"]:
    """The index among readout ``read``'s candidates (by default the decision's) of each
    example's target.

    >>> from headcoop.tasks import Count01
    >>> task = Count01()
    >>> labels(task, task.targets(torch.tensor([[1, 2, 0], [2, 1, 0]]))).tolist()
    [0, 1]
    """
    read = task.decision if read is None else read
    index = candidate_index(targets[:, read], candidate_ids(task, read))
    if (index < 0).any():
        bad = int(targets[index < 0, read][0])
        raise HeadcoopError(
            f"task {task.name!r}: target {task.vocab[bad]!r} is not a candidate of readout "
            f"{task.readouts[read].name!r}"
        )
    return index


def candidate_index(
    targets: Int[torch.Tensor, " example"], candidates: Int[torch.Tensor, " candidate"]
) -> Int[torch.Tensor, " example"]:
    """The index of each target among ``candidates`` (token ids), -1 where it is none of them.

    >>> candidate_index(torch.tensor([5, 4, 7]), torch.tensor([4, 5])).tolist()
    [1, 0, -1]
    """
    match = targets[:, None] == candidates.to(targets.device)  # [example candidate]
    return torch.where(match.any(-1), match.long().argmax(-1), -1)


def majority_share(labels: Int[torch.Tensor, " example"]) -> float:
    """Share of the most frequent label: the accuracy of always answering it.

    >>> majority_share(torch.tensor([0, 1, 1, 2]))
    0.5
    """
    return float(labels.bincount().max() / len(labels))


def head_class(s_acc: float, chance: float) -> str:
    """'successful' (s-acc >= `SUCCESSFUL`), 'failed' (below chance + `CHANCE_MARGIN`) or
    'mixed'."""
    if s_acc >= SUCCESSFUL:
        return "successful"
    if s_acc < chance + CHANCE_MARGIN:
        return "failed"
    return "mixed"


def class_shares(s_acc: Float[torch.Tensor, " head"], chance: float) -> dict[str, float]:
    """The share of heads in each class."""
    classes = [head_class(float(s), chance) for s in s_acc]
    return {c: classes.count(c) / max(1, len(classes)) for c in HEAD_CLASSES}


def highest(scores: Float[torch.Tensor, "choice ..."]) -> Int[torch.Tensor, "..."]:
    """The choice with the highest score (the first of equal maxima): ``scores.argmax(0)``,
    in one pass per choice. torch's argmax over a short axis, inner or outer, is many times
    slower.

    >>> highest(torch.tensor([[1.0, 2.0, 0.0], [1.0, 3.0, 5.0]])).tolist()
    [0, 1, 1]
    """
    best = scores[0]
    index = torch.zeros(scores.shape[1:], dtype=torch.long, device=scores.device)
    for k in range(1, len(scores)):
        higher = scores[k] > best
        index.masked_fill_(higher, k)
        best = torch.where(higher, scores[k], best)
    return index
