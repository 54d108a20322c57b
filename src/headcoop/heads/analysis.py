"""`HeadAnalysis`: what `headcoop.heads.analyze.analyze` measures, as one value that saves to
a directory and loads back equal.

The directory holds heads.csv, pairs.csv, summary.json and, where measured, subsets.csv.gz and
the interactions (interactions.csv.gz, shapley.csv, pair_interactions.csv), with a manifest of
their checksums written last: `HeadAnalysis.load` reads an analysis only if it is whole.
"""

import gzip
import hashlib
import io
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float

from headcoop.errors import HeadcoopError
from headcoop.files import parse_json, read_json, write_atomic
from headcoop.metrics.interactions import Interactions, verdicts
from headcoop.metrics.subsets import masks_of, set_names


@dataclass(frozen=True)
class SetTable:
    """Metrics of many sets of heads: one row of ``masks`` each, one tensor per metric."""

    masks: Bool[torch.Tensor, "subset head_index"]
    columns: dict[str, Float[torch.Tensor, " subset"]]

    def __getitem__(self, rows: slice | torch.Tensor) -> "SetTable":
        return SetTable(self.masks[rows], {k: v[rows] for k, v in self.columns.items()})

    def to_pandas(self) -> Any:
        import pandas as pd

        columns = {k: v.tolist() for k, v in self.columns.items()}
        sizes = self.masks.sum(-1).tolist()
        return pd.DataFrame({"heads": set_names(self.masks), "size": sizes, **columns})

    @classmethod
    def from_pandas(cls, frame: Any, n_heads: int) -> "SetTable":
        """The table that `to_pandas` gave as ``frame``, of sets of ``n_heads`` heads."""
        values = frame.drop(columns=["heads", "size"])
        columns = {k: torch.tensor(values[k].to_numpy(dtype=float)) for k in values.columns}
        return cls(masks_of(list(frame["heads"]), n_heads), columns)


@dataclass(frozen=True, eq=False)
class HeadAnalysis:
    """What `analyze` measures. ``heads`` has one row per head; ``pairs`` one per pair.

    Two analyses are equal when their tables (as saved) and summaries are.
    """

    heads: dict[str, list]
    pairs: SetTable
    subsets: SetTable | None
    summary: dict[str, Any] = field(default_factory=dict)
    interactions: Interactions | None = None

    @cached_property
    def tables(self) -> dict[str, Any]:
        """Every table as a DataFrame, by name: heads, pairs, subsets (where measured) and the
        interactions' frames (interactions where exact, shapley and pair_interactions)."""
        import pandas as pd

        tables = {"heads": pd.DataFrame(self.heads), "pairs": self.pairs.to_pandas()}
        if self.subsets is not None:
            tables["subsets"] = self.subsets.to_pandas()
        if self.interactions is not None:
            tables |= self.interactions.frames()
        return tables

    def heads_frame(self) -> Any:
        return self.tables["heads"]

    def pairs_frame(self) -> Any:
        return self.tables["pairs"]

    def subsets_frame(self) -> Any:
        """subsets.csv's table, or None where no sets beyond pairs were measured."""
        return self.tables.get("subsets")

    def verdicts(self) -> Any:
        """Each metric's cooperation index and verdict (`verdicts`), or None without
        interactions."""
        if self.interactions is None:
            return None
        return verdicts(self.tables["shapley"], self.tables["pair_interactions"])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HeadAnalysis):
            return NotImplemented
        mine, theirs = self.tables, other.tables
        same = mine.keys() == theirs.keys() and all(mine[k].equals(theirs[k]) for k in mine)
        return same and self.summary == other.summary

    def save(self, out: str | Path, **extra: Any) -> Path:
        """Write the analysis into the directory ``out`` (summary.json with ``extra``
        entries) as one unit: the old manifest is removed first, then each file atomically,
        then a manifest of their checksums, so that `load` sees one whole analysis or none,
        and no file of an earlier analysis stays behind."""
        out = Path(out)
        (out / MANIFEST).unlink(missing_ok=True)
        files = {_file_name(name): _table_file(name, frame) for name, frame in self.tables.items()}
        summary = (json.dumps({**extra, **self.summary}, indent=2) + "\n").encode()
        files = dict(list(files.items())[:2]) | {"summary.json": summary} | files
        for name in set(ANALYSIS_FILES) - set(files):
            (out / name).unlink(missing_ok=True)
        for name, data in files.items():
            write_atomic(out / name, data)
        sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        write_atomic(out / MANIFEST, json.dumps(sums, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, out: str | Path) -> "HeadAnalysis":
        """The analysis saved in ``out``, only if it is whole (every file of its manifest,
        unchanged).

        Raises:
            HeadcoopError: ``out`` holds no analysis, or a partial or changed one.
        """
        tables, summary = _read_tables(Path(out))
        try:
            return cls._of_tables(tables, summary)
        except (ValueError, KeyError, RuntimeError) as exc:  # tables that do not fit together
            raise HeadcoopError(f"{out}: not a complete analysis: {exc}") from None

    @classmethod
    def _of_tables(cls, tables: dict[str, Any], summary: dict[str, Any]) -> "HeadAnalysis":
        n_heads = len(tables["heads"])
        subsets = tables.get("subsets")
        interactions = None
        if "shapley" in tables:
            about = summary.get("interaction_estimate", {})
            interactions = Interactions.from_frames(tables, about)
        return cls(
            heads=tables["heads"].to_dict(orient="list"),
            pairs=SetTable.from_pandas(tables["pairs"], n_heads),
            subsets=None if subsets is None else SetTable.from_pandas(subsets, n_heads),
            summary=summary,
            interactions=interactions,
        )


ANALYSIS_FILES = (
    "heads.csv",
    "pairs.csv",
    "subsets.csv.gz",
    "summary.json",
    "interactions.csv.gz",
    "shapley.csv",
    "pair_interactions.csv",
)
"""Every file an analysis may hold, in the order `HeadAnalysis.save` writes them."""
REQUIRED_FILES = ("heads.csv", "pairs.csv", "summary.json")
"""In every analysis."""
COMPRESSED = ("subsets", "interactions")
"""The tables saved gzipped (one row per set: up to 2^n_heads rows)."""
MANIFEST = "manifest.json"
"""Written last by `HeadAnalysis.save`: the SHA-256 of each file of the analysis."""


def _file_name(table: str) -> str:
    return f"{table}.csv.gz" if table in COMPRESSED else f"{table}.csv"


def _table_file(table: str, frame: Any) -> bytes:
    data = frame.to_csv(index=False).encode()
    return gzip.compress(data, mtime=0) if table in COMPRESSED else data


def read_analysis(out: str | Path) -> dict[str, Any]:
    """The tables of the analysis in ``out`` as DataFrames (heads, pairs, and subsets,
    shapley and pair_interactions where measured) and its summary, by name: the same as
    `HeadAnalysis.load(out)`, as a mapping for pandas users.

    Raises:
        HeadcoopError: ``out`` holds no analysis, or a partial or changed one.
    """
    analysis = HeadAnalysis.load(out)
    tables = {k: v for k, v in analysis.tables.items() if k != "interactions"}
    return tables | {"summary": analysis.summary}


def analysis_saved(out: str | Path) -> bool:
    """Whether ``out`` holds a whole analysis that `HeadAnalysis.load` reads (else it is made
    again by the commands that cache analyses)."""
    try:
        HeadAnalysis.load(out)
    except HeadcoopError:
        return False
    return True


def _read_tables(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tables and summary of the analysis in ``out``, parsed inside one guard."""
    import pandas as pd

    files = _whole_files(out)
    tables = {}
    try:
        for name, data in files.items():
            table, kind = name.split(".", 1)
            if kind == "json":
                continue
            compression = "gzip" if kind == "csv.gz" else None
            raw = io.BytesIO(data)
            tables[table] = pd.read_csv(raw, compression=compression, dtype={"heads": str})
        summary = parse_json(files["summary.json"], "summary.json")
    except (ValueError, OSError, EOFError, HeadcoopError) as exc:  # pandas, gzip, JSON
        raise HeadcoopError(f"{out}: not a complete analysis: {exc}") from None
    if not isinstance(summary, dict):
        raise HeadcoopError(f"{out}: not a complete analysis: summary.json is not an object")
    return tables, summary


def _whole_files(out: Path) -> dict[str, bytes]:
    """The files of the analysis in ``out``, each read once and checked against the manifest."""
    sums = read_json(out / MANIFEST, "analysis manifest")
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        raise HeadcoopError(f"{out}: not a complete analysis: {MANIFEST} is not file: checksum")
    missing = [name for name in REQUIRED_FILES if name not in sums]
    if missing:
        raise HeadcoopError(f"{out}: not a complete analysis: {MANIFEST} lacks {missing[0]}")
    files = {}
    for name, digest in sums.items():
        if name not in ANALYSIS_FILES or not (out / name).is_file():
            raise HeadcoopError(f"{out}: not a complete analysis: it lacks {name}")
        files[name] = (out / name).read_bytes()
        if hashlib.sha256(files[name]).hexdigest() != digest:
            raise HeadcoopError(
                f"{out}: not a complete analysis: {name} was changed or cut short after it"
            )
    return files
