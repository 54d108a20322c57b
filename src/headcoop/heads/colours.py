"""Colours shared by the paper's figures."""

CLASS_COLOURS = {"4": "#1f77b4", "5": "#ff7f0e"}
TOKEN_COLOURS = {"0": "#d62728", "1": "#2ca02c", "2": "#7f7f7f"}
SEED_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def seed_colour(i: int) -> str:
    return SEED_COLOURS[i % len(SEED_COLOURS)]
