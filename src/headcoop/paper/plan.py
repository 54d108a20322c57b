"""What `make figures` computes: the paper's experiments as one configuration.

`FigurePlan.paper()` is the paper's scale; `FigurePlan.quick()` runs the same code on small
splits and small sweeps, in a couple of minutes, to check the whole pipeline. Kept free of
torch imports, like `headcoop.config`.
"""

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from headcoop.config import ModelConfig, TrainConfig
from headcoop.files import config_key


@dataclass(frozen=True)
class Table1Row:
    """A line of the paper's Table 1: ``n_exps`` models of ``n_heads`` heads with d_head 1,
    d_model ``d_model`` and no LayerNorm."""

    d_model: int
    n_exps: int
    n_heads: int


PAPER_TABLE1 = (
    Table1Row(32, 100, 1),
    Table1Row(16, 100, 1),
    Table1Row(8, 100, 1),
    Table1Row(4, 100, 1),
    Table1Row(2, 300, 1),
    Table1Row(2, 100, 64),
    Table1Row(1, 650, 1),
    Table1Row(1, 20, 64),
)


QUICK_SPLITS = {
    "train": {"size": 600, "n01": (0, 100), "n2": (0, 100)},
    "val": {"size": 200, "n01": (101, 150), "n2": (0, 150)},
    "test": {"size": 300, "n01": (151, 200), "n2": (0, 200)},
}
"""Count01 splits of the quick plans: the paper's count ranges, few examples."""


@dataclass(frozen=True)
class FigurePlan:
    """Every setting behind the figures.

    Attributes:
        task: the Count01 task's parameters (``make_task("count01", **task)``).
        model: the main model (Figs 1, 3-15).
        train: training settings of every model.
        main_seeds: seeds of the main model; the first is analysed in full (Figs 1, 3-9, 15),
            the next three give Figs 11-13, all of them Fig 10.
        grid_heads, grid_dims, grid_seeds: the Fig 2 grid (d_head = model.d_head throughout).
        table1: the rows of Table 1.
        random_heads: heads at initialisation for Fig 14 (left).
        first_epoch: Fig 10 pools checkpoints from this epoch on.
        scatter_points: points per split drawn in the head-output plots (Figs 6, 7, 15).
        minimal_N: values of N for the appendix-A solution.
    """

    task: dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    main_seeds: tuple[int, ...] = (0, 1, 2, 3)
    grid_heads: tuple[int, ...] = (1, 2, 4, 8, 16)
    grid_dims: tuple[int, ...] = (2, 4, 8, 16, 32)
    grid_seeds: int = 10
    table1: tuple[Table1Row, ...] = PAPER_TABLE1
    random_heads: int = 10_000
    first_epoch: int = 10
    scatter_points: int = 400
    minimal_N: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0)

    @classmethod
    def paper(cls) -> "FigurePlan":
        """The paper's experiments at full size."""
        return cls()

    @classmethod
    def quick(cls) -> "FigurePlan":
        """The same pipeline on small splits, few epochs and small sweeps."""
        return cls(
            task={"splits": QUICK_SPLITS},
            model=ModelConfig(n_heads=8),
            train=replace(TrainConfig(), epochs=6),
            grid_heads=(1, 4),
            grid_dims=(2, 8),
            grid_seeds=2,
            table1=tuple(replace(r, n_exps=max(1, r.n_exps // 100)) for r in PAPER_TABLE1),
            random_heads=400,
            first_epoch=2,
            scatter_points=100,
            minimal_N=(4.0, 8.0),
        )

    @classmethod
    def calibrated(cls, selected: dict[str, Any]) -> "FigurePlan":
        """The paper's experiments under the training setting the claims lab selected (its
        selected.json, `headcoop.claims.report.load_selected`): the main models and the Fig 2
        grid take its LayerNorm choice, every model its training settings."""
        paper = cls.paper()
        return replace(
            paper,
            model=replace(paper.model, layernorm=selected["layernorm"]),
            train=TrainConfig(**selected["train"]),
        )

    def key(self) -> str:
        """A short hash of the plan: results computed under another plan are not reused."""
        return config_key(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
