"""`SetScorer`: every metric of many sets of heads of one model, from its caches, and each
under bootstrap resamples of the test split where asked (`headcoop.metrics.bootstrap`).
"""

from typing import Any

import torch

from headcoop.compat import Model
from headcoop.engine.cache import HeadCache
from headcoop.heads.subset_plan import SetSizes
from headcoop.metrics.attribution import SetLogits, SetReader
from headcoop.metrics.bootstrap import Resamples
from headcoop.metrics.classes import labels, majority_share
from headcoop.metrics.definitions import Definition
from headcoop.metrics.separation import LIBLINEAR, liblinear_s_acc, separation_accuracy
from headcoop.metrics.subsets import learned_accuracy, logit_metrics
from headcoop.tasks.base import Task, candidate_ids

INTERVAL_METRICS = ("l_acc", "roc_auc")
"""The logit metrics whose intervals heads.csv and pairs.csv give under every definition
(and s-acc's, which has one)."""


def _interval_names() -> list[tuple[str, str, str]]:
    """Each interval's metric column and its low and high columns, in heads.csv's order."""
    names = [("s_acc", "s_acc_low", "s_acc_high")]
    for definition in Definition:
        for metric in INTERVAL_METRICS:
            names.append(tuple(definition.columns((metric, f"{metric}_low", f"{metric}_high"))))
    return names


def interval_columns() -> list[str]:
    """The interval columns of heads.csv and pairs.csv, in order: s-acc's, then each logit
    metric's under every definition (``l_acc_low``, ``l_acc_high``, ``l_acc_low_direct``...)."""
    return [column for _, low, high in _interval_names() for column in (low, high)]


class SetScorer:
    """The set metrics of one model on a task, from its train and test caches.

    Calling it with masks gives every metric (``logits`` is then needed); `s_acc` alone needs
    only the caches. ``resamples`` (of the test split) give intervals and resampled games.
    """

    def __init__(
        self,
        task: Task,
        train: HeadCache,
        test: HeadCache,
        logits: SetLogits | None,
        resamples: Resamples | None = None,
    ) -> None:
        self.task, self.train, self.test, self.logits = task, train, test, logits
        self.resamples = resamples
        self.decision = task.decision
        self.candidates = candidate_ids(task, self.decision)
        self.train_labels = labels(task, train.targets)
        self.test_labels = labels(task, test.targets)
        self.chance = majority_share(self.test_labels)

    def __call__(
        self,
        masks: torch.Tensor,
        every_readout: bool = False,
        progress: bool = False,
        s_acc: bool = True,
        liblinear: bool = False,
        intervals: bool = False,
    ) -> dict[str, torch.Tensor]:
        """l-acc and ROC AUC (every definition) and (if ``s_acc``) s-acc at the decision of
        each set; with ``every_readout``, also the l-acc of each other readout; with
        ``liblinear``, also s-acc as scikit-learn's LinearSVC with its defaults gives it
        (``s_acc_liblinear``, one fit per set: for single heads and pairs); with ``intervals``
        (and resamples), last, each decision metric's percentile interval (`interval_columns`:
        for single heads and pairs)."""
        resample = intervals and self.resamples is not None
        columns, resampled = self.scored(masks, every_readout, progress, s_acc, resample, resample)
        if liblinear:  # after the others, so that the earlier columns keep their places
            z = self.train.z[:, self.decision], self.test.z[:, self.decision]
            labels_ = self.train_labels, self.test_labels
            columns["s_acc" + LIBLINEAR] = liblinear_s_acc(
                z[0], labels_[0], z[1], labels_[1], masks
            )
        if resample:
            columns |= self._intervals(resampled)
        return columns

    def scored(
        self,
        masks: torch.Tensor,
        every_readout: bool = False,
        progress: bool = False,
        s_acc: bool = True,
        resample: bool = False,
        resample_auc: bool = False,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The metrics of `__call__` (but LinearSVC's and the intervals) and, with
        ``resample``, each under every resample [set resample]: s-acc and the l-acc columns,
        and ROC AUC's with ``resample_auc`` (memory sets x resamples x examples per chunk)."""
        columns: dict[str, torch.Tensor] = {}
        resampled: dict[str, torch.Tensor] = {}
        resamples = self.resamples if resample else None
        if s_acc:
            found = self._s_acc(masks, progress, resamples)
            columns["s_acc"], resampled["s_acc"] = found if resamples else (found, None)
        targets = self.test.targets[:, self.decision]
        for definition in Definition:
            reader = self.logits.readers[definition]
            found = logit_metrics(
                reader,
                masks,
                targets,
                self.decision,
                self.candidates,
                True,
                resamples,
                resample_auc,
            )
            columns[definition.column("l_acc")] = found.l_acc
            columns[definition.column("roc_auc")] = found.roc_auc
            resampled[definition.column("l_acc")] = found.l_acc_resampled
            resampled[definition.column("roc_auc")] = found.roc_auc_resampled
        if every_readout:
            more, more_resampled = self.readout_l_acc(masks, tuple(Definition), resamples)
            columns, resampled = columns | more, resampled | more_resampled
        return columns, {k: v for k, v in resampled.items() if v is not None}

    def readout_l_acc(
        self,
        masks: torch.Tensor,
        definitions: tuple[Definition, ...],
        resamples: Resamples | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The l-acc of each set at every readout but the decision (Count01's [EOS]: the
        paper's syntax), under each of ``definitions``; and under each of ``resamples``."""
        columns, resampled = {}, {}
        for read, readout in self._other_readouts():
            for definition in definitions:
                found = logit_metrics(
                    self.logits.readers[definition],
                    masks,
                    self.test.targets[:, read],
                    read,
                    candidate_ids(self.task, read),
                    with_auc=False,
                    resamples=resamples,
                )
                name = definition.column(f"{readout.name}_l_acc")
                columns[name] = found.l_acc
                if found.l_acc_resampled is not None:
                    resampled[name] = found.l_acc_resampled
        return columns, resampled

    def paper_games(self, masks: torch.Tensor, reader: SetReader) -> dict[str, torch.Tensor]:
        """l-acc and ROC AUC of each set at the decision, and l-acc at every other readout,
        from the logits ``reader`` gives under the paper's definition (the null model's)."""
        targets = self.test.targets[:, self.decision]
        found = logit_metrics(reader, masks, targets, self.decision, self.candidates)
        games = {"l_acc": found.l_acc, "roc_auc": found.roc_auc}
        for read, readout in self._other_readouts():
            games[f"{readout.name}_l_acc"] = learned_accuracy(
                reader, masks, self.test.targets[:, read], read, candidate_ids(self.task, read)
            )
        return {Definition.PAPER.column(name): values for name, values in games.items()}

    def s_acc(self, masks: torch.Tensor, progress: bool = False) -> torch.Tensor:
        return self._s_acc(masks, progress, None)

    def _s_acc(
        self, masks: torch.Tensor, progress: bool, resamples: Resamples | None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return separation_accuracy(
            self.train.z[:, self.decision],
            self.train_labels,
            self.test.z[:, self.decision],
            self.test_labels,
            masks,
            progress=progress,
            resamples=resamples,
        )

    def _intervals(self, resampled: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`interval_columns` from the resampled decision metrics."""
        columns = {}
        for metric, low, high in _interval_names():
            columns[low], columns[high] = self.resamples.interval(resampled[metric])
        return columns

    def class_shares(self) -> dict[str, float]:
        """The share of each candidate among the test split's targets at the decision."""
        counts = self.test_labels.bincount(minlength=len(self.candidates))
        shares = (counts / len(self.test_labels)).tolist()
        return dict(zip(self.task.readouts[self.decision].candidates, shares, strict=True))

    def other_readout_columns(self) -> list[str]:
        """The per-readout l-acc columns that ``every_readout`` adds, in order."""
        readouts = self._other_readouts()
        return [d.column(f"{r.name}_l_acc") for _, r in readouts for d in Definition]

    def direct_path(self, n_heads: int) -> dict[str, Any]:
        """The size of the embedding's direct path: its share of the decision's choice, and
        the accuracy of each readout with every head ablated (the direct path alone)."""
        nothing = torch.zeros(1, n_heads, dtype=torch.bool)
        alone = {
            readout.name: float(
                learned_accuracy(
                    self.logits.readers[Definition.DIRECT],
                    nothing,
                    self.test.targets[:, read],
                    read,
                    candidate_ids(self.task, read),
                )[0]
            )
            for read, readout in enumerate(self.task.readouts)
        }
        share = self.logits.paper.direct_share(self.decision, self.candidates)
        return {"decision_share": share, "accuracy_alone": alone}

    def _other_readouts(self) -> list:
        return [(k, r) for k, r in enumerate(self.task.readouts) if k != self.decision]


def set_sizes(model: Model, scorer: SetScorer) -> SetSizes:
    """The sizes that decide what the pass over sets of heads costs (`SetSizes`)."""
    cfg, n_test = model.cfg, len(scorer.test.targets)
    n_classes = len(scorer.candidates)
    passes = tail = 0.0
    if scorer.logits.by_forward_passes:
        mlp = 4 * cfg.d_model * (cfg.d_mlp or 0) if not cfg.attn_only else 0
        per_token = cfg.n_layers * (8 * cfg.d_model * cfg.n_heads * cfg.d_head + mlp)
        unembed = 2 * cfg.d_model * cfg.d_vocab
        tokens = float(scorer.task.lengths(scorer.task.split("test")).sum())
        passes = tokens * (per_token + unembed)
        tail = float(n_test * (mlp + unembed))
    return SetSizes(
        n_heads=cfg.n_layers * cfg.n_heads,
        last_layer_heads=cfg.n_heads,
        d_head=cfg.d_head,
        n_train=len(scorer.train.targets),
        n_test=n_test,
        n_separators=1 if n_classes == 2 else n_classes,
        n_candidates=n_classes,
        n_definitions=len(Definition),
        pass_flops=passes,
        tail_flops=tail,
    )
