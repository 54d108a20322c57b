"""The ways a set of heads is read out: one `Definition` member each.

A set metric (l-acc, ROC AUC) needs the logits a set of heads H gives. Which logits those are is
a choice, and the choice can change a conclusion, so headcoop measures every set under every
definition and names each column by its definition's suffix (``l_acc``, ``l_acc_direct``,
``l_acc_mean``: a contract of heads.csv, pairs.csv and summary.json). Only this module spells a
suffix; every other module asks a member for its column names, and iterates over `Definition`
where it measures or reports all of them. A new definition is a member here and its
implementation in `headcoop.metrics.attribution.SetLogits`.

The s-acc solver (our exact optimum, or scikit-learn's LinearSVC defaults) is a separate
parameter (`headcoop.metrics.separation.LIBLINEAR`), not a definition: s-acc reads the heads'
outputs, not logits.
"""

from enum import Enum


class Definition(Enum):
    """How the logits of a set of heads H are read (the algebra is in
    `headcoop.metrics.attribution`).

    Attributes:
        value: the name used on the command line and in code ('paper', 'direct', 'mean').
        suffix: what the definition appends to a metric's column name ('' for the paper's).
        judged: whether the paper study judges its claims under it (the paper's definition and
            zero ablation; mean ablation is measured and reported, not judged).
        description: the definition in a sentence, as summary.json states it.
    """

    PAPER = (
        "paper",
        "",
        True,
        "the paper's head-only logits: each head's direct contribution plus constant biases, no "
        "embeddings or MLPs, final normalization's scale frozen",
    )
    DIRECT = (
        "direct",
        "_direct",
        True,
        "heads outside the set zeroed (hook_z) in the running model: every other path kept, "
        "normalization recomputed",
    )
    MEAN = (
        "mean",
        "_mean",
        False,
        "heads outside the set replaced by their mean output over the training split in the "
        "running model",
    )

    def __new__(cls, name: str, suffix: str, judged: bool, description: str) -> "Definition":
        member = object.__new__(cls)
        member._value_ = name
        member.suffix, member.judged, member.description = suffix, judged, description
        return member

    def column(self, metric: str) -> str:
        """``metric``'s column name under this definition.

        >>> Definition.DIRECT.column("l_acc"), Definition.PAPER.column("roc_auc")
        ('l_acc_direct', 'roc_auc')
        """
        return metric + self.suffix

    def columns(self, metrics: tuple[str, ...]) -> list[str]:
        """The column name of each of ``metrics`` under this definition."""
        return [self.column(m) for m in metrics]

    def plain(self, column: str) -> str | None:
        """The metric that ``column`` names under this definition, or None if it names none
        (a column of the paper's definition has no suffix: every name is its own metric).

        >>> Definition.DIRECT.plain("eos_l_acc_direct"), Definition.DIRECT.plain("l_acc")
        ('eos_l_acc', None)
        """
        if not self.suffix:
            return column
        return column.removesuffix(self.suffix) if column.endswith(self.suffix) else None

    @classmethod
    def judged_ones(cls) -> tuple["Definition", ...]:
        """The definitions under which the paper study judges its claims, the paper's first."""
        return tuple(d for d in cls if d.judged)

    @classmethod
    def described(cls) -> dict[str, str]:
        """What each definition means, keyed as summary.json gives it ('l_acc, roc_auc' for
        the paper's, '*_direct' for the others)."""
        return {(d.suffix and f"*{d.suffix}") or "l_acc, roc_auc": d.description for d in cls}
