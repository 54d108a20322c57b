"""The head explorer: one self-contained interactive page per model (`explorer_page`), from
its analysis and each head's circuits and samples (`head_data`)."""
