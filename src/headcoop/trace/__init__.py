"""Sparse attention decomposition (``headcoop trace``), in one import: the SVD of each head's
query-key matrix, the per-component score terms, sparsity, and the tracer with its
interventions.

- `components`: terms, sparsity, sources;
- `tracing`: the graph, interventions, Count01's ratios;
- `trace_report`: ``headcoop trace``'s files and page.
"""

from headcoop.trace.components import (
    FIRING_PATTERN,
    QKSVD,
    all_pair_terms,
    component_order,
    contributions,
    firings,
    head_input,
    qk_svd,
    residual_sources,
    score_terms,
    selected_components,
    sparsity,
    strongest,
)
from headcoop.trace.tracing import SHARE, Trace, intervene, ratio_components, trace

__all__ = [
    "FIRING_PATTERN",
    "QKSVD",
    "SHARE",
    "Trace",
    "all_pair_terms",
    "component_order",
    "contributions",
    "firings",
    "head_input",
    "intervene",
    "qk_svd",
    "ratio_components",
    "residual_sources",
    "score_terms",
    "selected_components",
    "sparsity",
    "strongest",
    "trace",
]
