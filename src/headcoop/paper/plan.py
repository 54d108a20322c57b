"""What the paper's study computes: one `Plan` for `make figures` and the claims lab.

`Plan.paper()` is the paper's scale; `Plan.quick()` runs the same code on small splits and
small sweeps, in a couple of minutes, to check the whole pipeline; `Plan.calibrated()` trains
under the setting a claims lab selected. The figures read the main model and the sweeps, the
lab reads the main model's shape and `LabGrid`. Kept free of torch imports, like
`headcoop.config`.
"""

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from headcoop.config import ModelConfig, TrainConfig
from headcoop.errors import HeadcoopError
from headcoop.files import config_key

SELECTED = "selected.json"
"""The file in a lab's output directory that names the setting it selected."""


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


@dataclass(frozen=True)
class LabGrid:
    """What the claims lab varies.

    Attributes:
        factors: each factor's levels, the default among them; factors are `TrainConfig`
            fields and 'layernorm'.
        seeds: seeds of every setting.
        factorial: how many of the factors that matter most the factorial crosses.
        changes: the lab's default setting as changes to the plan's training settings.
    """

    factors: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("optimizer", ("adamw", "adam", "sgd")),
        ("lr", (3e-4, 1e-3, 3e-3, 1e-2)),
        ("weight_decay", (0.0, 0.01, 0.1, 1.0)),
        ("dropout", (0.0, 0.1)),
        ("layernorm", (True, False)),
        ("batch_size", (32, 64, 256)),
        ("epochs", (50, 100, 200)),
        ("lr_schedule", ("cosine", "constant")),
        ("init", ("transformer_lens", "pytorch")),
        ("init_scale", (0.5, 1.0, 2.0)),
    )
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    factorial: int = 3
    changes: tuple[tuple[str, Any], ...] = ()


QUICK_LAB = LabGrid(
    factors=(
        ("weight_decay", (0.01, 1.0)),
        ("layernorm", (True, False)),
        ("epochs", (2, 4)),
    ),
    seeds=(0, 1, 2),
    factorial=2,
    changes=(("epochs", 4), ("lr", 3e-3)),
)
"""The quick lab: three factors, three seeds, a shorter default training."""


@dataclass(frozen=True)
class Plan:
    """Every setting behind the figures and the claims lab.

    Attributes:
        task: the Count01 task's parameters (``make_task("count01", **task)``).
        model: the main model (Figs 1, 3-15; the lab's shape, whose ``layernorm`` it varies).
        train: training settings of every model.
        main_seeds: seeds of the main model; the first is analysed in full (Figs 1, 3-9, 15),
            the next three give Figs 11-13, all of them Fig 10.
        grid_heads, grid_dims, grid_seeds: the Fig 2 grid (d_head = model.d_head throughout).
        table1: the rows of Table 1.
        random_heads: heads at initialisation for Fig 14 (left).
        first_epoch: Fig 10 pools checkpoints from this epoch on.
        scatter_points: points per split drawn in the head-output plots (Figs 6, 7, 15).
        minimal_N: values of N for the appendix-A solution.
        lab: what the claims lab varies.
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
    lab: LabGrid = LabGrid()

    @classmethod
    def paper(cls) -> "Plan":
        """The paper's experiments at full size."""
        return cls()

    @classmethod
    def quick(cls) -> "Plan":
        """The same pipeline on small splits, few epochs and small sweeps."""
        from headcoop.tasks.count01 import QUICK_SPLITS  # here: this module stays free of torch

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
            lab=QUICK_LAB,
        )

    @classmethod
    def calibrated(cls, selected: dict[str, Any]) -> "Plan":
        """The paper's experiments under the training setting the claims lab selected (its
        selected.json, `load_selected`): the main models and the Fig 2 grid take its LayerNorm
        choice, every model its training settings."""
        paper = cls.paper()
        return replace(
            paper,
            model=replace(paper.model, layernorm=selected["layernorm"]),
            train=TrainConfig(**selected["train"]),
        )

    def make_task(self) -> Any:
        """The Count01 task of this plan (imported here: this module stays free of torch)."""
        from headcoop.tasks import make_task

        return make_task("count01", **self.task)

    def lab_train(self) -> TrainConfig:
        """The lab's default training settings."""
        return replace(self.train, **dict(self.lab.changes))

    def key(self) -> str:
        """A short hash of what the figures compute (the lab's grid left out): results
        computed under another plan are not reused."""
        return config_key({f.name: getattr(self, f.name) for f in fields(self) if f.name != "lab"})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_for(quick: bool = False, calibrated: str | Path | None = None) -> tuple[Plan, str]:
    """The plan of ``headcoop figures`` and a note for its report: quick, calibrated on the
    lab whose output is in the directory ``calibrated``, or the paper's."""
    if quick and calibrated:
        raise HeadcoopError("--quick and --calibrated exclude each other")
    if not calibrated:
        return (Plan.quick() if quick else Plan.paper()), ""
    selected = load_selected(calibrated)
    note = (
        f"This report trains every model under the claims lab's selected setting "
        f"({selected['setting']}; from {calibrated}), not the default."
    )
    return Plan.calibrated(selected), note


def load_selected(lab_dir: str | Path) -> dict[str, Any]:
    """The setting a lab run selected (its selected.json), or one clear error."""
    path = Path(lab_dir) / SELECTED
    if not path.exists():
        raise HeadcoopError(f"{path} is missing: run the claims lab first (make claims)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HeadcoopError(f"{path} is corrupt: {exc}") from None
