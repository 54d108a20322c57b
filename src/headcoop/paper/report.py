"""`make figures`: measure (or read from the cache), draw every item, write the report.

Output directory layout::

    figures/
      index.html            every item with the key numbers, the plan and the comparison
                            with the paper's text
      <item>.html, .png     one interactive figure and one picture per item
      plotly.min.js         shared by the HTML files (no network needed to view them)
      table1.csv            Table 1
      data/*.csv            the measurements behind the figures
      summary.json          the key numbers
"""

import html
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from headcoop.analysis.dynamics import pearson
from headcoop.files import write_atomic
from headcoop.paper import plots
from headcoop.paper.compute import FigureData, measure_all
from headcoop.paper.plan import FigurePlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One figure or table of the report."""

    slug: str
    title: str
    figure: go.Figure
    caption: str


def make_figures(
    plan: FigurePlan,
    out: str | Path = "figures",
    cache: str | Path = "runs/figures",
    png: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Compute what is missing, then write every item, the data and ``index.html`` into
    ``out``. Returns the summary (also written to ``out/summary.json``)."""
    out = Path(out)
    clock = time.perf_counter()
    data = FigureData(plan, cache, progress)
    measure_all(data)
    measured = time.perf_counter() - clock
    items, summary = _items(data)
    comparisons = compare_with_paper(summary)
    summary["paper_comparison"] = comparisons

    out.mkdir(parents=True, exist_ok=True)
    for item in items:
        item.figure.write_html(out / f"{item.slug}.html", include_plotlyjs="directory")
    png_note = _write_pngs(items, out) if png else "PNGs were not asked for (--no-png)."
    _copy_data(data.root, out / "data")
    write_atomic(out / "table1.csv", pd.DataFrame(summary["table1"]).to_csv(index=False))
    summary["png"] = png_note
    summary["seconds"] = {
        "measure": round(measured, 1),
        "total": round(time.perf_counter() - clock, 1),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    write_atomic(out / "index.html", _index_html(items, summary, plan, png_note))
    return summary


def _items(data: FigureData) -> tuple[list[Item], dict[str, Any]]:
    """Every item of the report, and the key numbers."""
    plan = data.plan
    seeds = list(plan.main_seeds)
    analyses = {s: data.analysis(s) for s in seeds}
    first = analyses[seeds[0]]
    heads, pairs = first["heads"], first["pairs"]
    trajectories = data.trajectories()
    later = trajectories.drop_duplicates(["seed", "epoch"])
    later = later[later["epoch"] >= plan.first_epoch]
    r = pearson_frame(later["weighted_s_acc"], later["accuracy"])
    table1 = plots.table1_frame(data.table1())
    grid = data.grid()
    minimal = data.minimal()
    random_heads = data.random_heads()
    curves = data.interventions()
    outputs = data.head_outputs()
    order = heads.sort_values("s_acc")["head"].tolist()
    replicas = {s: analyses[s] for s in seeds[1:4]}

    items = [
        Item(
            "fig01",
            "Fig 1: logit distributions",
            plots.fig01_logits(data.logits()),
            "Logits of '4', '5' and [EOS] of the first main model on the test split, by the "
            "current token and the true next token.",
        ),
        Item(
            "fig02",
            "Fig 2: accuracy over heads and embedding size",
            plots.fig02_grid(grid),
            f"Test accuracy, mean and standard deviation over {plan.grid_seeds} seeds; "
            f"d_head = {plan.model.d_head} throughout.",
        ),
        Item(
            "fig03",
            "Fig 3: single heads and pairs",
            plots.fig03_pairs(heads, pairs),
            "Diagonal: single heads; off the diagonal: pairs. In (c) the off-diagonal cells "
            "are a pair's s-acc minus that of its stronger head.",
        ),
    ]
    if "subsets" in first:
        items.append(
            Item(
                "fig04",
                "Fig 4: all subsets of heads",
                plots.fig04_subsets(first["subsets"]),
                "s-acc, ROC AUC and l-acc of every subset, by size.",
            )
        )
    items += [
        Item(
            "fig05",
            "Fig 5: attention ratios",
            plots.fig05_ratios(heads),
            "w01 and w02 at '=' of each head (log axes), coloured by s-acc.",
        ),
        Item(
            "fig06",
            "Fig 6: two successful heads",
            plots.fig_head_outputs(
                outputs, heads, order[-2:][::-1], "Fig 6: the two heads with the highest s-acc"
            ),
            "Head outputs of train (dots) and test (crosses) samples by class, the value "
            "vectors of '0', '1', '2', and the separating line fitted for s-acc.",
        ),
        Item(
            "fig07",
            "Fig 7: two failed heads",
            plots.fig_head_outputs(
                outputs, heads, order[:2], "Fig 7: the two heads with the lowest s-acc"
            ),
            "As Fig 6, for the two heads with the lowest s-acc.",
        ),
        Item(
            "fig08",
            "Fig 8: intervening on w01",
            plots.fig_interventions(
                curves, "w01", "Fig 8: s-acc with w01 fixed and no attention to '2'"
            ),
            "Each head's attention at '=' is set to weight 1 on '0', 1/w01 on '1', 0 on the rest.",
        ),
        Item(
            "fig09",
            "Fig 9: intervening on w02",
            plots.fig_interventions(curves, "w02", "Fig 9: s-acc with w01 = 1 and w02 fixed"),
            "Weight 1 on '0' and '1', 1/w02 on '2', 0 on the rest.",
        ),
        Item(
            "fig10",
            "Fig 10: weighted s-acc and accuracy",
            plots.fig10_weighted(trajectories, plan.first_epoch, r),
            f"One dot per checkpoint, epochs {plan.first_epoch}-{plan.train.epochs}, "
            f"{len(seeds)} seeds.",
        ),
    ]
    if replicas:
        items += [
            Item(
                "fig11",
                "Fig 11: Fig 3a for further seeds",
                plots.fig_pair_replicas(
                    replicas, "l_acc", "Fig 11: l-acc of single heads and pairs"
                ),
                "",
            ),
            Item(
                "fig12",
                "Fig 12: Fig 3c for further seeds",
                plots.fig_pair_replicas(
                    replicas, "gain", "Fig 12: s-acc of single heads and pair gain"
                ),
                "",
            ),
            Item(
                "fig13",
                "Fig 13: Fig 5 for further seeds",
                plots.fig_ratio_replicas(replicas, "Fig 13: attention ratios and s-acc"),
                "",
            ),
        ]
    items += [
        Item(
            "fig14",
            "Fig 14: s-acc at initialisation and over training",
            plots.fig14_dynamics(random_heads, trajectories, seeds[0]),
            "Right: line width follows the head's mean weight hw_i over training, marker size "
            "its weight at that epoch.",
        ),
        Item(
            "fig15",
            "Fig 15: every head's output space",
            plots.fig_head_outputs(outputs, heads, heads["head"].tolist(), "Fig 15: all heads"),
            "",
        ),
        Item(
            "table1",
            "Table 1: heads with d_head = 1, no LayerNorm",
            plots.table_figure(table1, "Table 1: s-acc of heads with d_head = 1"),
            "Perfect: s-acc = 1 on the test split; successful: s-acc >= 0.98.",
        ),
        Item(
            "appendix_a",
            "Appendix A: the minimal solution",
            plots.fig_minimal(minimal),
            "The hand-set model of the paper's appendix A; 'n2 = k' sets the number of 2s of every "
            "test example to k.",
        ),
    ]
    summary = _summary(data, analyses, table1, grid, minimal, random_heads, curves, trajectories, r)
    return items, summary


def pearson_frame(x: pd.Series, y: pd.Series) -> float:
    import torch

    return pearson(torch.tensor(x.to_numpy()), torch.tensor(y.to_numpy()))


def _summary(data, analyses, table1, grid, minimal, random_heads, curves, trajectories, r) -> dict:
    plan = data.plan
    classes = {}
    for seed, a in analyses.items():
        classes[seed] = a["summary"]["classes"]
    total = {c: sum(v[c] for v in classes.values()) for c in ("successful", "mixed", "failed")}
    n_heads = sum(total.values())
    first = analyses[plan.main_seeds[0]]
    heads, pairs = first["heads"], first["pairs"]
    chance = first["summary"]["majority_share"]
    main_cell = grid[
        (grid["d_model"] == plan.model.d_model) & (grid["n_heads"] == plan.model.n_heads)
    ]
    main_cell = main_cell.drop_duplicates("seed")["test_accuracy"]
    models = grid.drop_duplicates(["d_model", "n_heads", "seed"])
    cells = models.groupby(["d_model", "n_heads"])["test_accuracy"].mean()
    last = trajectories[trajectories["epoch"] == trajectories["epoch"].max()]
    w01 = curves[curves["sweep"] == "w01"].set_index("ratio")["mean"]
    w02 = curves[curves["sweep"] == "w02"].set_index("ratio")["mean"]
    summary = {
        "plan": plan.key(),
        "accuracy_by_seed": {str(s): a["summary"]["accuracy"] for s, a in analyses.items()},
        "head_classes_by_seed": {str(s): c for s, c in classes.items()},
        "head_class_shares": {c: n / n_heads for c, n in total.items()},
        "majority_share": chance,
        "single_heads_above_chance_l_acc": int((heads["l_acc"] > chance + 0.05).sum()),
        "pairs_above_chance_l_acc": int((pairs["l_acc"] > chance + 0.05).sum()),
        "single_heads_at_majority_l_acc": int(((heads["l_acc"] - chance).abs() < 0.01).sum()),
        "n_heads": len(heads),
        "n_pairs": len(pairs),
        "pairs_below_stronger_single_s_acc": int(
            (plots.pair_gain(heads, pairs) < -1e-9).sum() // 2
        ),
        "eos_perfect_single_heads": int((heads["eos_l_acc"] >= 1.0).sum()),
        "eos_perfect_pairs": int((pairs["eos_l_acc"] >= 1.0).sum()),
        "pearson_r_weighted_s_acc_accuracy": r,
        "grid_main_config_accuracy": {
            "mean": float(main_cell.mean()),
            "min": float(main_cell.min()),
            "seeds": len(main_cell),
        },
        "grid_cell_mean_accuracy": {f"d{d}_h{h}": float(v) for (d, h), v in cells.items()},
        "random_heads": {
            "n": len(random_heads),
            "mean_s_acc": float(random_heads["s_acc"].mean()),
            "share_at_least_0.98": float((random_heads["s_acc"] >= 0.98).mean()),
        },
        "final_epoch_mixed_share": float(
            ((last["s_acc"] >= chance + 0.05) & (last["s_acc"] < 0.98)).mean()
        ),
        "intervention_s_acc": {
            "w01=1": float(w01.iloc[(w01.index.to_series() - 1).abs().argmin()]),
            "w01 smallest": float(w01.iloc[0]),
            "w01 largest": float(w01.iloc[-1]),
            "w02 smallest": float(w02.iloc[0]),
            "w02 largest": float(w02.iloc[-1]),
        },
        "table1": json.loads(table1.to_json(orient="records")),
        "minimal_solution": json.loads(minimal.to_json(orient="records")),
    }
    if "subsets" in first:
        subsets = first["subsets"]
        by_size = subsets.groupby("size")[["s_acc", "roc_auc", "l_acc"]].mean()
        summary["subset_means_by_size"] = json.loads(by_size.to_json(orient="index"))
    return summary


def compare_with_paper(summary: dict[str, Any]) -> list[dict[str, str]]:
    """Statements of the paper's text next to what we measured, each with a verdict."""
    shares = summary["head_class_shares"]
    grid = summary["grid_main_config_accuracy"]
    rows = []

    def add(claim: str, measured: str, agrees: Any, criterion: str) -> None:
        """``agrees``: a truth value (Python or numpy), or None when not comparable."""
        verdict = "agrees" if agrees else "disagrees" if agrees is not None else "not comparable"
        rows.append(
            {"paper": claim, "measured": measured, "criterion": criterion, "verdict": verdict}
        )

    add(
        "d_model 32 with 16 heads almost always reaches near perfect test accuracy (Sec. 5.1)",
        f"mean {grid['mean']:.4f}, worst {grid['min']:.4f} over {grid['seeds']} seeds"
        if grid["seeds"]
        else "the main model's shape is not in this plan's grid",
        grid["min"] >= 0.98 if grid["seeds"] else None,
        "every seed >= 0.98",
    )
    cells = summary["grid_cell_mean_accuracy"]
    smallest, largest = min(cells, key=_cell_size), max(cells, key=_cell_size)
    add(
        "more heads and a larger embedding make learning more robust (Fig. 2)",
        f"mean accuracy {cells[smallest]:.3f} at {smallest}, {cells[largest]:.3f} at {largest}",
        cells[largest] > cells[smallest],
        "largest cell above smallest",
    )
    add(
        "roughly half of the heads are successful (Sec. 6)",
        f"{shares['successful']:.1%} successful, {shares['mixed']:.1%} mixed, "
        f"{shares['failed']:.1%} failed over the main seeds",
        0.3 <= shares["successful"] <= 0.7,
        "30% to 70% successful",
    )
    n = summary["n_heads"]
    add(
        "many heads are highly biased toward one of '4' or '5' (Sec. 5.1)",
        f"{summary['single_heads_at_majority_l_acc']} of {n} single heads have l-acc within "
        "1 point of always answering the majority class",
        summary["single_heads_at_majority_l_acc"] >= n / 4,
        "at least a quarter of the heads",
    )
    add(
        "near perfect heads exist, yet the model does not exploit any single one directly "
        "(Sec. 5.2)",
        f"{summary['single_heads_above_chance_l_acc']} of {n} single heads and "
        f"{summary['pairs_above_chance_l_acc']} of {summary['n_pairs']} pairs have l-acc more than "
        "5 points above chance",
        summary["single_heads_above_chance_l_acc"] <= n / 4,
        "at most a quarter of single heads above chance",
    )
    iv = summary["intervention_s_acc"]
    add(
        "attending much more to '0' than '1' (or the reverse) collapses the output (Sec. 5.3)",
        f"mean s-acc {iv['w01=1']:.3f} at w01 = 1, {iv['w01 smallest']:.3f} and "
        f"{iv['w01 largest']:.3f} at the ends of the sweep",
        iv["w01=1"] > max(iv["w01 smallest"], iv["w01 largest"]) + 0.1,
        "w01 = 1 beats both ends by 0.1",
    )
    add(
        "attention to '2' adds noise (Sec. 5.3)",
        f"mean s-acc {iv['w02 smallest']:.3f} with most weight on '2', "
        f"{iv['w02 largest']:.3f} with least",
        iv["w02 largest"] > iv["w02 smallest"] + 0.05,
        "least weight on '2' beats most by 0.05",
    )
    add(
        "by the end of training heads are either very good or very bad (Sec. 6)",
        f"{summary['final_epoch_mixed_share']:.1%} of heads are mixed at the last epoch",
        summary["final_epoch_mixed_share"] <= 0.2,
        "at most 20% mixed",
    )
    below = summary["pairs_below_stronger_single_s_acc"]
    add(
        "a larger set of heads can have lower s-acc, in some cases (App. C)",
        f"{below} of {summary['n_pairs']} pairs score below their stronger head",
        0 < below <= summary["n_pairs"] / 4,
        "some pairs, at most a quarter",
    )
    add(
        "the [EOS] task is extremely simple (Sec. 6.2)",
        f"{summary['eos_perfect_single_heads']} of {n} single heads and "
        f"{summary['eos_perfect_pairs']} of {summary['n_pairs']} pairs reach EOS l-acc 1.0",
        summary["eos_perfect_pairs"] > 0,
        "some pair perfect",
    )
    t1 = pd.DataFrame(summary["table1"])
    if not t1.empty:
        single = t1[t1["heads per exp"] == 1].sort_values("embedding dim")
        add(
            "a larger embedding greatly raises the chance of perfect d_head = 1 heads (App. B)",
            ", ".join(
                f"d={d}: {share:.1%}"
                for d, share in zip(single["embedding dim"], single["share perfect"], strict=True)
            ),
            single["share perfect"].iloc[-1] > single["share perfect"].iloc[0],
            "largest d above smallest",
        )
        for d in (1, 2):
            pair = t1[t1["embedding dim"] == d].set_index("heads per exp")
            if len(pair) == 2:
                alone, together = pair["share >= 98%"].iloc[0], pair["share >= 98%"].iloc[-1]
                add(
                    f"at d = {d}, heads trained alone do much better than 64 trained together "
                    "(App. B)",
                    f"successful share {alone:.1%} alone vs {together:.1%} in 64-head models",
                    alone > together,
                    "alone above together",
                )
    best = max(summary["minimal_solution"], key=lambda r: (r["n2"] == "test split", r["N"]))
    add(
        "the appendix-A construction solves Count01 (App. A)",
        f"test accuracy {best['answer_accuracy']:.4f} at N = {best['N']:g}",
        best["answer_accuracy"] >= 0.999,
        "accuracy >= 0.999 at the largest N",
    )
    r = summary["pearson_r_weighted_s_acc_accuracy"]
    add(
        "weighted s-acc and model accuracy correlate (Fig. 10; the value is withheld)",
        f"Pearson r = {r:.3f}",
        r > 0,
        "r > 0",
    )
    return rows


def _cell_size(cell: str) -> tuple[int, int]:
    d, h = cell[1:].split("_h")
    return int(d) * int(h), int(d)


def _write_pngs(items: list[Item], out: Path) -> str:
    """Write one PNG per item with kaleido (which needs a Chromium); say what happened."""
    try:
        pio.write_images(
            [item.figure for item in items],
            [out / f"{item.slug}.png" for item in items],
            width=[item.figure.layout.width or 900 for item in items],
            height=[item.figure.layout.height or 500 for item in items],
        )
    except Exception as exc:  # kaleido reports a missing browser in several ways
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("PNGs skipped: %s", first_line)
        return f"PNGs were skipped: kaleido could not render them ({first_line})."
    return f"PNGs written for all {len(items)} items."


def _copy_data(root: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".csv", ".json", ".gz"):
            target = dest / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _index_html(items: list[Item], summary: dict, plan: FigurePlan, png_note: str) -> str:
    figures = []
    for item in items:
        div = item.figure.to_html(full_html=False, include_plotlyjs=False, div_id=item.slug)
        links = f'<a href="{item.slug}.html">interactive</a> · <a href="{item.slug}.png">PNG</a>'
        figures.append(
            f'<section id="{item.slug}-section"><h2>{html.escape(item.title)}</h2>'
            f"<p>{html.escape(item.caption)} {links}</p>{div}</section>"
        )
    comparison = "".join(
        f"<tr class='{html.escape(r['verdict'].replace(' ', '-'))}'>"
        f"<td>{html.escape(r['paper'])}</td>"
        f"<td>{html.escape(r['measured'])}</td><td>{html.escape(r['criterion'])}</td>"
        f"<td>{html.escape(r['verdict'])}</td></tr>"
        for r in summary["paper_comparison"]
    )
    disagreements = [r for r in summary["paper_comparison"] if r["verdict"] == "disagrees"]
    plain = (
        "Every checked statement of the paper's text agrees with our measurements."
        if not disagreements
        else "Our results disagree with the paper's text on: "
        + "; ".join(html.escape(r["paper"]) for r in disagreements)
        + "."
    )
    key_numbers = _key_numbers_html(summary)
    quick = (
        ""
        if plan == FigurePlan.paper()
        else "<p><strong>This report follows a reduced plan (small splits, few epochs, small "
        "sweeps; see the configuration at the end). It checks the pipeline; its numbers say "
        "nothing about the paper.</strong></p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>headcoop: do attention heads compete or cooperate during counting?</title>
<script src="plotly.min.js"></script>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1300px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
tr.disagrees td {{ background: #fde2e2; }} tr.agrees td {{ background: #e6f4e6; }}
section {{ margin: 2.5em 0; }} pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>Do attention heads compete or cooperate during counting? Our measurements</h1>
{quick}<p>Every figure and table below is regenerated by <code>make figures</code> from models
trained here; the numbers are ours. {html.escape(png_note)}
Measuring took {summary["seconds"]["measure"] if "seconds" in summary else "?"} s in this run
(cached results are reused).</p>
<h2>Where our results and the paper's text disagree</h2>
<p><strong>{plain}</strong></p>
<table><tr><th>the paper's text</th><th>we measured</th><th>agrees if</th><th>verdict</th></tr>
{comparison}</table>
<h2>Key numbers</h2>
{key_numbers}
{"".join(figures)}
<h2>Configuration</h2>
<pre>{html.escape(json.dumps(plan.to_dict(), indent=2))}</pre>
</body></html>
"""


def _key_numbers_html(summary: dict[str, Any]) -> str:
    shares, random = summary["head_class_shares"], summary["random_heads"]
    rows = [
        ("head classes (all main seeds)", ", ".join(f"{c} {v:.1%}" for c, v in shares.items())),
        (
            "head classes by seed",
            "; ".join(
                f"seed {s}: " + ", ".join(f"{c} {n}" for c, n in v.items())
                for s, v in summary["head_classes_by_seed"].items()
            ),
        ),
        (
            "test accuracy by seed (answer)",
            ", ".join(
                f"seed {s}: {a['answer']:.4f}" for s, a in summary["accuracy_by_seed"].items()
            ),
        ),
        (
            "Pearson r, weighted s-acc vs accuracy",
            f"{summary['pearson_r_weighted_s_acc_accuracy']:.3f}",
        ),
        (
            "main model's shape in the Fig 2 grid",
            "mean {mean:.4f}, worst {min:.4f} over {seeds} seeds".format(
                **summary["grid_main_config_accuracy"]
            )
            if summary["grid_main_config_accuracy"]["seeds"]
            else "not in this plan's grid",
        ),
        (
            "random heads at initialisation",
            "mean s-acc {:.3f}, share >= 0.98 {:.1%} of {:,}".format(
                random["mean_s_acc"], random["share_at_least_0.98"], random["n"]
            ),
        ),
        (
            "minimal solution (test split)",
            ", ".join(
                f"N={r['N']:g}: {r['answer_accuracy']:.4f}"
                for r in summary["minimal_solution"]
                if r["n2"] == "test split"
            ),
        ),
    ]
    table1 = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r.values()) + "</tr>"
        for r in summary["table1"]
    )
    header = "".join(
        f"<th>{html.escape(k)}</th>" for k in (summary["table1"][0] if summary["table1"] else {})
    )
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table><h3>Table 1</h3><table><tr>{header}</tr>{table1}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
