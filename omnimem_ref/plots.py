"""Figures shared by the command line and the notebooks (matplotlib + seaborn)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.axes import Axes

from omnimem_ref.model.modeling import MODALITY_NAMES
from omnimem_ref.streaming.session import MemoryReport

MODALITY_COLOURS = dict(zip(MODALITY_NAMES, sns.color_palette("colorblind", 3), strict=True))


def plot_memory(
    reports: Sequence[MemoryReport], budget: int | None = None, ax: Axes | None = None
) -> Axes:
    """KV tokens held per modality after each chunk (stacked), with the budget as a line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    seconds = [r.seconds for r in reports]
    stacks = [[r.tokens[m] for r in reports] for m in MODALITY_NAMES]
    ax.stackplot(
        seconds, stacks, labels=MODALITY_NAMES, colors=[MODALITY_COLOURS[m] for m in MODALITY_NAMES]
    )
    ax.plot(
        seconds,
        [r.peak_tokens for r in reports],
        color="black",
        lw=0.8,
        ls=":",
        label="peak (before compression)",
    )
    if budget is not None:
        ax.axhline(budget, color="crimson", lw=1.2, ls="--", label=f"budget ({budget})")
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("KV tokens per layer")
    ax.legend(loc="upper left", fontsize=8)
    return ax
