"""The report's items: one entry per figure or table, saying what it draws and from what.

A new figure is one `Item` appended to `ITEMS`: its draw function reads the cached
measurements it needs from `FigureData` (which computes them on first use) and returns a plotly
figure; its caption may depend on the plan. Items whose data the plan does not produce (the
all-subsets figure without subsets, the replicas with a single seed) say so with ``shown``.
"""

from collections.abc import Callable
from dataclasses import dataclass

import plotly.graph_objects as go

from headcoop.heads import interaction_plots
from headcoop.heads import plots as heads_plots
from headcoop.heads.analysis import HeadAnalysis
from headcoop.heads.dynamics import weighted_s_acc_correlation
from headcoop.paper import plots_runs as runs_plots
from headcoop.paper.compute import FigureData
from headcoop.paper.plan import Plan


@dataclass(frozen=True)
class Item:
    """One figure or table of the report.

    Attributes:
        slug: file name stem (``fig01`` -> fig01.html, fig01.png).
        title: the heading in the report.
        draw: the figure, from the cached measurements.
        caption: what the reader needs to read it (text, or a function of the plan).
        shown: whether the plan produces this item's data.
    """

    slug: str
    title: str
    draw: Callable[[FigureData], go.Figure]
    caption: str | Callable[[Plan], str] = ""
    shown: Callable[[FigureData], bool] = lambda data: True

    def caption_for(self, plan: Plan) -> str:
        return self.caption(plan) if callable(self.caption) else self.caption


@dataclass(frozen=True)
class Rendered:
    """An item drawn for one run of the report."""

    slug: str
    title: str
    caption: str
    figure: go.Figure


def render(data: FigureData) -> list[Rendered]:
    """Every item the plan produces, drawn."""
    return [
        Rendered(item.slug, item.title, item.caption_for(data.plan), item.draw(data))
        for item in ITEMS
        if item.shown(data)
    ]


def _first(data: FigureData) -> HeadAnalysis:
    return data.analysis(data.plan.main_seeds[0])


def _replicas(data: FigureData) -> dict[int, HeadAnalysis]:
    """Figures 11-13 repeat Figures 3 and 5 for the next three main seeds."""
    return {s: data.analysis(s) for s in data.plan.main_seeds[1:4]}


def _heads_by_s_acc(data: FigureData) -> list[int]:
    return _first(data).heads_frame().sort_values("s_acc")["head"].tolist()


def _fig10(data: FigureData) -> go.Figure:
    pooled, r = weighted_s_acc_correlation(data.trajectories(), data.plan.first_epoch)
    return runs_plots.fig10_weighted(pooled, data.plan.first_epoch, r)


def _outputs(data: FigureData, heads: list[int], title: str) -> go.Figure:
    return heads_plots.fig_head_outputs(
        data.head_outputs(), _first(data).heads_frame(), heads, title
    )


ITEMS: tuple[Item, ...] = (
    Item(
        "fig01",
        "Fig 1: single heads' logits",
        lambda d: heads_plots.fig01_logits(d.logits()),
        "The logits of '4', '5' and [EOS] given by each single head of the first main model "
        "(the paper's head-only logits z_{t,i} + b_t), by the current token and the true next "
        "token, on a sample of the test split.",
    ),
    Item(
        "fig02",
        "Fig 2: accuracy over heads and embedding size",
        lambda d: runs_plots.fig02_grid(d.grid()),
        lambda plan: (
            f"Test accuracy, mean and standard deviation over {plan.grid_seeds} seeds; "
            f"d_head = {plan.model.d_head} throughout."
        ),
    ),
    Item(
        "fig03",
        "Fig 3: single heads and pairs",
        lambda d: heads_plots.fig03_pairs(_first(d).heads_frame(), _first(d).pairs_frame()),
        "Diagonal: single heads; off the diagonal: pairs. l-acc and ROC AUC use the paper's "
        "head-only logits. In (c) the off-diagonal cells are a pair's s-acc minus that of its "
        "stronger head.",
    ),
    Item(
        "fig04",
        "Fig 4: all subsets of heads",
        lambda d: heads_plots.fig04_subsets(_first(d).subsets_frame()),
        "s-acc, ROC AUC and l-acc (head-only logits) of every subset, by size.",
        shown=lambda d: _first(d).subsets is not None,
    ),
    Item(
        "fig05",
        "Fig 5: attention ratios",
        lambda d: heads_plots.fig05_ratios(_first(d).heads_frame()),
        "w01 and w02 at '=' of each head (log axes), coloured by s-acc.",
    ),
    Item(
        "fig06",
        "Fig 6: two successful heads",
        lambda d: _outputs(
            d, _heads_by_s_acc(d)[-2:][::-1], "Fig 6: the two heads with the highest s-acc"
        ),
        "Head outputs of train (dots) and test (crosses) samples by class, the value vectors of "
        "'0', '1', '2', and the separating line fitted for s-acc.",
    ),
    Item(
        "fig07",
        "Fig 7: two failed heads",
        lambda d: _outputs(d, _heads_by_s_acc(d)[:2], "Fig 7: the two heads with the lowest s-acc"),
        "As Fig 6, for the two heads with the lowest s-acc.",
    ),
    Item(
        "fig08",
        "Fig 8: intervening on w01",
        lambda d: runs_plots.fig_interventions(
            d.interventions(), "w01", "Fig 8: s-acc with w01 fixed and no attention to '2'"
        ),
        "Each head's attention at '=' is set to weight 1 on '0', 1/w01 on '1', 0 on the rest.",
    ),
    Item(
        "fig09",
        "Fig 9: intervening on w02",
        lambda d: runs_plots.fig_interventions(
            d.interventions(), "w02", "Fig 9: s-acc with w01 = 1 and w02 fixed"
        ),
        "Weight 1 on '0' and '1', 1/w02 on '2', 0 on the rest.",
    ),
    Item(
        "fig10",
        "Fig 10: weighted s-acc and accuracy",
        _fig10,
        lambda plan: (
            f"One dot per checkpoint, epochs {plan.first_epoch}-{plan.train.epochs}, "
            f"{len(plan.main_seeds)} seeds."
        ),
    ),
    Item(
        "fig11",
        "Fig 11: Fig 3a for further seeds",
        lambda d: heads_plots.fig_pair_replicas(
            _replicas(d), "l_acc", "Fig 11: l-acc of single heads and pairs"
        ),
        "Head-only logits, as Fig 3a.",
        shown=lambda d: len(d.plan.main_seeds) > 1,
    ),
    Item(
        "fig12",
        "Fig 12: Fig 3c for further seeds",
        lambda d: heads_plots.fig_pair_replicas(
            _replicas(d), "gain", "Fig 12: s-acc of single heads and pair gain"
        ),
        shown=lambda d: len(d.plan.main_seeds) > 1,
    ),
    Item(
        "fig13",
        "Fig 13: Fig 5 for further seeds",
        lambda d: heads_plots.fig_ratio_replicas(
            _replicas(d), "Fig 13: attention ratios and s-acc"
        ),
        shown=lambda d: len(d.plan.main_seeds) > 1,
    ),
    Item(
        "fig14",
        "Fig 14: s-acc at initialisation and over training",
        lambda d: runs_plots.fig14_dynamics(
            d.random_heads(), d.trajectories(), d.plan.main_seeds[0]
        ),
        "Right: line width follows the head's mean weight hw_i over training, marker size its "
        "weight at that epoch.",
    ),
    Item(
        "fig15",
        "Fig 15: every head's output space",
        lambda d: _outputs(d, _first(d).heads_frame()["head"].tolist(), "Fig 15: all heads"),
    ),
    Item(
        "table1",
        "Table 1: heads with d_head = 1, no LayerNorm",
        lambda d: runs_plots.table_figure(
            runs_plots.table1_frame(d.table1()), "Table 1: s-acc of heads with d_head = 1"
        ),
        "Perfect: s-acc = 1 on the test split; successful: s-acc >= 0.98.",
    ),
    Item(
        "cooperation",
        "Do heads compete or cooperate?",
        lambda d: interaction_plots.cooperation_figure(
            _first(d), ["s_acc", "l_acc", "roc_auc"], "Do heads compete or cooperate?"
        ),
        "Each metric on all 65,536 sets of heads of the first main model, read as a game. Top: "
        "the Harsanyi dividends by set size, and the cooperation index (mean pair interaction "
        "in units of |v(all) - v(none)| / 15: -1 for a pure ensemble, 0 additive, +1 all heads "
        "needed; dotted: the verdict's cuts at -1/3 and 1/3). Bottom: the Shapley interaction "
        "of every pair (red: complements, blue: substitutes). The paper's answer: a "
        "pseudo-ensemble on the semantics, cooperation only on the syntax ([EOS]); its verdict "
        "beside ours is in the comparison table.",
        shown=lambda d: _first(d).interactions is not None and _first(d).subsets is not None,
    ),
    Item(
        "appendix_a",
        "Appendix A: the minimal solution",
        lambda d: runs_plots.fig_minimal(d.minimal()),
        "The hand-set model of the paper's appendix A; 'n2 = k' sets the number of 2s of every "
        "test example to k.",
    ),
)
