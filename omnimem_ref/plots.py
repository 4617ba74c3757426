"""Figures shared by the command line and the notebooks (matplotlib + seaborn)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, Colormap, ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Patch

from omnimem_ref.benchmark.records import families_of
from omnimem_ref.budget import parse_budget
from omnimem_ref.core import KVMemory
from omnimem_ref.features import FeatureSpec
from omnimem_ref.model.modeling import AUDIO, MODALITY_NAMES, TEXT, VISUAL
from omnimem_ref.policies.omnimem import ABLATIONS
from omnimem_ref.policies.per_head import SUFFIX as PER_HEAD
from omnimem_ref.streaming.session import MemoryReport, StreamingSession
from omnimem_ref.streaming.stream import StreamInputs
from omnimem_ref.world import FAMILIES

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


# ---------------------------------------------------------------------------------------------
# Survival maps: which stream tokens are still in memory


@dataclass
class Survival:
    """Which tokens of a stream a memory still holds, per layer (or any per-token value).

    ``visual`` (layers, steps, grid, grid): the frame of step ``k``, patch by patch in its 4x4
    layout; ``audio`` (layers, steps, audio tokens per step). ``upto``: steps streamed so far
    (later steps are ``False`` because they have not been seen, not because they were evicted).
    """

    visual: np.ndarray
    audio: np.ndarray
    step_seconds: float
    upto: int

    def mean(self, layer: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(steps, grid, grid) and (steps, A): one layer's 0/1 map, or the fraction of layers."""
        if layer is not None:
            return self.visual[layer].astype(float), self.audio[layer].astype(float)
        return self.visual.mean(axis=0), self.audio.mean(axis=0)


def survival(memory: KVMemory, n_steps: int, spec: FeatureSpec) -> Survival:
    """Map every visual and audio token in ``memory`` back to its step, patch or audio slot.

    Uses only the per-token metadata (time, patch), which stays aligned with the cache through
    every eviction, so the map shows exactly what the cache holds.
    """
    assert memory.meta is not None
    held = torch.ones(memory.meta.modality.shape, dtype=torch.bool)
    return token_map(memory, held, n_steps, spec)


def token_map(memory: KVMemory, values: torch.Tensor, n_steps: int, spec: FeatureSpec) -> Survival:
    """Lay per-token ``values`` (layers, tokens) of ``memory`` out like a survival map (a row per
    layer, or per key/value head where each head keeps its own tokens): each
    frame's patches in their grid, each step's audio tokens (0 where a token is not held). With
    booleans it is :func:`survival`; with scores, it shows where a score puts its weight."""
    assert memory.meta is not None
    meta = memory.meta
    grid, per_audio = spec.grid, spec.audio_tokens_per_step
    dtype = bool if values.dtype == torch.bool else float
    units = meta.modality.shape[0]  # layers, or heads of layers where each head keeps its own
    visual = np.zeros((units, n_steps, grid, grid), dtype=dtype)
    audio = np.zeros((units, n_steps, per_audio), dtype=dtype)
    step = (meta.seconds / spec.step_seconds).floor().long()
    slot = ((meta.seconds - step * spec.step_seconds) / (spec.step_seconds / per_audio)).floor()
    values = values.detach().cpu()
    for layer in range(units):
        is_visual = meta.modality[layer] == VISUAL
        k, p = step[layer][is_visual].numpy(), meta.patch[layer][is_visual].numpy()
        visual[layer, k, p // grid, p % grid] = values[layer][is_visual].numpy()
        is_audio = meta.modality[layer] == AUDIO
        k, j = step[layer][is_audio].numpy(), slot[layer][is_audio].long().numpy()
        audio[layer, k, j] = values[layer][is_audio].numpy()
    streamed = step[meta.modality != TEXT]
    upto = int(streamed.max()) + 1 if streamed.numel() else 0
    return Survival(visual, audio, spec.step_seconds, upto)


def stream_with_survival(
    session: StreamingSession, inputs: StreamInputs
) -> tuple[list[MemoryReport], list[Survival]]:
    """Stream ``inputs`` through ``session`` and snapshot the survival map after every chunk."""
    snapshots: list[Survival] = []

    def snapshot(_: MemoryReport) -> None:
        snapshots.append(survival(session.memory, inputs.n_steps, inputs.spec))

    reports = session.stream(inputs, on_chunk=snapshot)
    return reports, snapshots


SURVIVAL_EVICTED = "#ececec"  # an evicted token: background, so what is kept stands out
EVIDENCE_COLOUR = "crimson"


def survival_scale(n_layers: int, layer: int | None = None) -> tuple[Colormap, Normalize, dict]:
    """Colours of a survival map and its colourbar's ticks: light grey for an evicted token, then
    darker for more layers holding it (``mako``), one colour per count, so 1 of 4 layers is as
    easy to see as all 4. With one ``layer``: evicted or kept."""
    levels = 1 if layer is not None else n_layers
    kept = sns.color_palette("mako_r", as_cmap=True)(np.linspace(0.3, 0.9, levels))
    cmap = ListedColormap([SURVIVAL_EVICTED, *kept])
    step = 1 / levels
    norm = BoundaryNorm(np.arange(-step / 2, 1 + step, step), cmap.N)
    if levels == 1:
        labels = ["evicted", "kept"]
    else:
        labels = ["evicted", *[f"{k} of {levels} layers" for k in range(1, levels)]]
        labels.append(f"all {levels} layers")
    ticks = {"ticks": np.linspace(0, 1, levels + 1), "labels": labels}
    return cmap, norm, ticks


def value_scale(kept: Survival, layer: int | None = None) -> tuple[Colormap, Normalize]:
    """Colours of a map of per-token values (scores, KL): 0 light, the map's own largest value
    darkest, so the scale fits the data whatever its units."""
    visual, audio = kept.mean(layer)
    top = max(float(visual.max(initial=0)), float(audio.max(initial=0)))
    return sns.color_palette("mako_r", as_cmap=True), Normalize(0, top if top > 0 else 1)


def _strips(
    kept: Survival, layer: int | None, axes: tuple[Axes, Axes], cmap: Colormap, norm: Normalize
) -> AxesImage:
    """Draw the visual strip (each frame's 4x4 patches side by side) and the audio strip."""
    visual, audio = kept.mean(layer)
    steps, grid, _ = visual.shape
    end = steps * kept.step_seconds
    ax_v, ax_a = axes
    strip = np.concatenate(list(visual), axis=1) if steps else np.zeros((grid, 0))
    image = ax_v.imshow(
        strip, aspect="auto", cmap=cmap, norm=norm, extent=(0, end, grid, 0),
        interpolation="nearest",
    )  # fmt: skip
    for k in range(1, steps):  # frame boundaries
        ax_v.axvline(k * kept.step_seconds, color="0.8", lw=0.5)
    ax_a.imshow(
        audio.reshape(1, -1), aspect="auto", cmap=cmap, norm=norm, extent=(0, end, 1, 0),
        interpolation="nearest",
    )  # fmt: skip
    for ax, label in ((ax_v, "visual\n4×4 patches"), (ax_a, "audio")):
        ax.set_yticks([])
        ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
        ax.grid(False)
    ax_a.set_xlabel("stream time (s)")
    return image


def mark_evidence(axes: tuple[Axes, Axes], spans: Sequence[tuple[float, float]]) -> None:
    """Outline each evidence span (e.g. a question's ``evidence_time``) on both strips, with a
    bar above the visual strip so a span is visible even over dark cells."""
    ax_v, ax_a = axes
    for start, end in spans:
        for ax in axes:
            ax.axvspan(start, end, fill=False, edgecolor=EVIDENCE_COLOUR, lw=1.2)
        ax_v.plot(
            [start, end], [0, 0], color=EVIDENCE_COLOUR, lw=5, clip_on=False,
            solid_capstyle="butt",
        )  # fmt: skip


def evidence_handle() -> Patch:
    """A legend entry for :func:`mark_evidence`'s outlines."""
    return Patch(fill=False, edgecolor=EVIDENCE_COLOUR, lw=1.2, label="question evidence")


def survival_title(name: str, kept: Survival, layer: int | None = None) -> str:
    """``name: 12% of visual, 40% of audio tokens kept`` for a survival map; ``name`` for a map
    of values."""
    if kept.visual.dtype != bool:
        return name
    visual, audio = kept.mean(layer)
    return f"{name}: {visual.mean():.0%} of visual, {audio.mean():.0%} of audio tokens kept"


def plot_survival_map(
    kept: Survival,
    layer: int | None = None,
    axes: tuple[Axes, Axes] | None = None,
    title: str | None = None,
    evidence: Sequence[tuple[float, float]] = (),
    colourbar: bool = True,
    value_label: str = "value",
) -> tuple[Axes, Axes]:
    """Two strips over stream time: each frame's 4x4 patches (top) and the audio tokens (bottom).

    For a survival map (booleans) a cell's colour says how many layers still hold the token
    (:func:`survival_scale`), or, for one ``layer``, whether it holds it; for a map of values
    (:func:`token_map` with scores) the scale runs from 0 to the map's largest value, labelled
    ``value_label``. ``evidence``: time spans outlined in red (:func:`mark_evidence`).
    """
    if axes is None:
        _, axes = plt.subplots(
            2, 1, figsize=(12, 2.4), sharex=True, layout="constrained",
            gridspec_kw={"height_ratios": [3, 1.2]},
        )  # fmt: skip
    if kept.visual.dtype == bool:
        cmap, norm, ticks = survival_scale(kept.visual.shape[0], layer)
        label = "held by" if layer is None else f"layer {layer}"
    else:
        (cmap, norm), ticks, label = value_scale(kept, layer), {}, value_label
    image = _strips(kept, layer, axes, cmap, norm)
    mark_evidence(axes, evidence)
    if title is not None:
        axes[0].set_title(title, fontsize=10)
    if colourbar:
        add_colourbar(image, list(axes), label, ticks)
    return axes[0], axes[1]


def add_colourbar(image: ScalarMappable, axes: list[Axes], label: str, ticks: Mapping) -> None:
    """A colourbar beside ``axes`` saying what a cell's colour means."""
    bar = axes[0].figure.colorbar(image, ax=axes, fraction=0.04, pad=0.01, aspect=12)
    bar.set_label(label, fontsize=8)
    if ticks:
        bar.set_ticks(ticks["ticks"], labels=ticks["labels"])
    bar.ax.tick_params(labelsize=7)


def plot_survival_maps(
    maps: Mapping[str, Survival],
    layer: int | None = None,
    width: float = 12,
    evidence: Sequence[tuple[float, float]] = (),
    value_label: str = "value",
) -> Figure:
    """One :func:`plot_survival_map` per entry (e.g. per policy), stacked, sharing the time axis.

    Survival maps share one colourbar (how many layers hold a token); maps of values get one each,
    since their scales differ. ``evidence``: time spans (e.g. the questions' ``evidence_time``)
    outlined in red on every map.
    """
    fig, axes = plt.subplots(
        2 * len(maps), 1, figsize=(width, 2.1 * len(maps)), sharex=True, squeeze=False,
        gridspec_kw={"height_ratios": [3, 1.2] * len(maps)}, layout="constrained",
    )  # fmt: skip
    pairs = [(axes[2 * i, 0], axes[2 * i + 1, 0]) for i in range(len(maps))]
    for i, ((name, kept), pair) in enumerate(zip(maps.items(), pairs, strict=True)):
        plot_survival_map(
            kept, layer, pair, survival_title(name, kept, layer), evidence,
            colourbar=kept.visual.dtype != bool, value_label=value_label,
        )  # fmt: skip
        if i < len(maps) - 1:
            pair[1].set_xlabel("")
    booleans = [
        pair for pair, kept in zip(pairs, maps.values(), strict=True) if kept.visual.dtype == bool
    ]
    if booleans:  # one colourbar for every survival map: they share their scale
        cmap, norm, ticks = survival_scale(next(iter(maps.values())).visual.shape[0], layer)
        image = ScalarMappable(norm, cmap)
        add_colourbar(image, [ax for pair in booleans for ax in pair], "held at the end by", ticks)
    if evidence:
        fig.legend(
            handles=[evidence_handle()], loc="outside lower right", fontsize=8, frameon=False
        )
    return fig


def plot_survival_timeline(
    snapshots: Sequence[Survival],
    layer: int | None = None,
    axes: tuple[Axes, Axes] | None = None,
    cmap: str = "magma",
) -> tuple[Axes, Axes]:
    """As the stream plays (rows, downwards), what share of each step's tokens (columns) is held.

    Left: visual tokens (fraction of the step's 16 patches); right: audio tokens. Cells above the
    diagonal are blank: those steps have not been streamed yet.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    rows_v, rows_a, ends = [], [], []
    for snap in snapshots:
        visual, audio = snap.mean(layer)
        v = visual.reshape(visual.shape[0], -1).mean(axis=1)
        a = audio.mean(axis=1)
        v[snap.upto :] = np.nan
        a[snap.upto :] = np.nan
        rows_v.append(v)
        rows_a.append(a)
        ends.append(snap.upto * snap.step_seconds)
    step = snapshots[0].step_seconds if snapshots else 1.0
    n_steps = len(rows_v[0]) if rows_v else 0
    extent = (0, n_steps * step, max(ends, default=0), 0)
    for ax, rows, label in ((axes[0], rows_v, "visual"), (axes[1], rows_a, "audio")):
        image = ax.imshow(
            np.array(rows), aspect="auto", cmap=cmap, vmin=0, vmax=1, extent=extent,
            interpolation="nearest",
        )  # fmt: skip
        ax.set_title(f"{label} tokens still held", fontsize=10)
        ax.set_xlabel("time of the token (s)")
        ax.grid(False)
    axes[0].set_ylabel("stream time (s)")
    axes[1].figure.colorbar(image, ax=list(axes), fraction=0.03, label="share kept")
    return axes[0], axes[1]


# ---------------------------------------------------------------------------------------------
# Benchmark curves


def _as_dict(record: Any) -> dict[str, Any]:
    return asdict(record) if is_dataclass(record) and not isinstance(record, type) else record


def budget_label(budget: str) -> str:
    """``"0.1"`` -> ``"10%"``, ``"200"`` -> ``"200"``."""
    parsed = parse_budget(budget)
    return f"{100 * parsed.fraction:g}%" if parsed.fraction is not None else budget


def budget_axis(records: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[str]]:
    """Evenly spaced x positions for the budgets of ``records``, smallest budget first (by mean
    tokens per layer), and their tick labels: budgets of 20 tokens and 0.5 of a stream, or of
    100 and 100,000 tokens, share one readable axis."""
    size: dict[str, float] = {}
    for r in records:
        size[r["budget"]] = max(size.get(r["budget"], 0.0), float(r["budget_tokens"]))
    order = sorted(size, key=lambda b: size[b])
    return [order.index(r["budget"]) for r in records], [budget_label(b) for b in order]


BASELINE_COLOURS = dict(
    zip(
        ("recent", "random", "snapkv", "knorm", "vnorm", "criticalkv", "streammem", "infinipot-v"),
        [sns.color_palette("tab10")[i] for i in (0, 1, 2, 3, 4, 5, 6, 9)],  # no grey: ablations
        strict=True,
    )
)


# OmniMem's ablations, in a fixed order, each a different grey (darker first).
ABLATION_GREYS = {cls.name: f"{0.2 + 0.12 * i:.2f}" for i, cls in enumerate(ABLATIONS)}


def policy_style(name: str) -> dict[str, Any]:
    """Line style by family: OmniMem thick black, its ablations dashed greys, baselines in
    distinct colours (so unrelated policies never look related); a ``-per-head`` form is its
    policy's colour, dotted, with hollow markers."""
    if name.endswith(PER_HEAD):
        style = policy_style(name.removesuffix(PER_HEAD))
        return style | {"ls": ":", "marker": "D", "mfc": "white"}
    if name == "omnimem":
        return {"color": "black", "lw": 2.6, "marker": "o", "zorder": 5}
    if name.startswith("omnimem-"):
        grey = ABLATION_GREYS.get(name, "0.5")
        return {"color": grey, "ls": "--", "lw": 1.4, "marker": "s", "ms": 4}
    colour = BASELINE_COLOURS.get(name, sns.color_palette("tab10")[8])
    return {"color": colour, "lw": 1.6, "marker": "o", "ms": 5}


def plot_accuracy_vs_budget(
    records: Sequence[Any],
    ax: Axes | None = None,
    policies: Sequence[str] | None = None,
    family: str | None = None,
) -> Axes:
    """Accuracy against budget, one line per policy (styled by :func:`policy_style`); ``full``
    as a dashed horizontal line and chance (:func:`chance`) as a dotted one.

    ``records``: :class:`~omnimem_ref.benchmark.BenchRecord` objects or their JSON dicts.
    ``family``: plot one question family's accuracy instead of the overall one.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    rows = [_as_dict(r) for r in records]

    def accuracy(row: Mapping[str, Any]) -> float | None:
        value = row["accuracy"] if family is None else row["by_family"].get(family)
        return None if value is None else 100 * value

    budgeted = [r for r in rows if r["budget"] is not None]
    if policies is not None:
        budgeted = [r for r in budgeted if r["policy"] in policies]
    if budgeted:
        xs, ticks = budget_axis(budgeted)
        frame = pd.DataFrame(
            {
                "budget": xs,
                "accuracy (%)": [accuracy(r) for r in budgeted],
                "policy": [r["policy"] for r in budgeted],
            }
        )
        for name in dict.fromkeys(frame["policy"]):
            part = frame[frame["policy"] == name]
            ax.plot(part["budget"], part["accuracy (%)"], label=name, **policy_style(name))
        ax.set_xticks(range(len(ticks)), ticks)
        ax.set_xlabel("memory budget (KV tokens per layer, or % of the full stream)")
    for full in (r for r in rows if r["budget"] is None):
        value = accuracy(full)
        if value is not None:
            ax.axhline(value, color="black", ls="--", lw=1.2, label="full (upper bound)")
    asked = families_of(r.get("by_family", {}) for r in rows) or FAMILIES
    ax.axhline(chance(family, asked), color="grey", ls=":", lw=1, label="chance")
    ax.set_ylabel("accuracy (%)" if family is None else f"{family} accuracy (%)")
    ax.set_ylim(0, 104)  # the whole scale: a 2-point gain looks like one, chance sits where it is
    ax.legend(fontsize=8, loc="best")
    return ax


# Options per question family (omnimem_ref.world.questions and families): 4 shapes, 4 pitches,
# 4 colours, "which came first" between two objects, a count up to the repeat cap (3 in the hard
# preset: one, two or three), and one of three thirds.
OPTIONS = {"visual": 4, "audio": 4, "binding": 4, "temporal": 2, "counting": 3, "when": 3}


def chance(family: str | None = None, families: Sequence[str] = FAMILIES) -> float:
    """Accuracy (%) of guessing: one option in four, one in two for ``temporal``, one in three
    for ``counting`` and ``when``; overall, the mean over ``families`` (every clip asks one
    question of each; default the classic four)."""
    if family is not None:
        return 100 / OPTIONS[family]
    return float(np.mean([100 / OPTIONS[f] for f in families]))


def plot_accuracy_panels(records: Sequence[Any], title: str) -> Figure:
    """Overall accuracy against budget (left), then one small panel per question family the
    records hold (two rows: 2 x 2 for the classic four, 2 x 3 for the hard world's six), every
    panel on the same 0-100% scale so families compare at a glance; one legend below."""
    families = families_of(_as_dict(r).get("by_family", {}) for r in records) or list(FAMILIES)
    columns = math.ceil(len(families) / 2)
    fig = plt.figure(figsize=(15 + 4 * (columns - 2), 4.6), layout="constrained")
    grid = fig.add_gridspec(2, 1 + columns, width_ratios=[2.2] + [1] * columns)
    main = fig.add_subplot(grid[:, 0])
    plot_accuracy_vs_budget(records, ax=main)
    main.set_title(title)
    handles, labels = main.get_legend_handles_labels()
    main.legend_ = None
    for i, family in enumerate(families):
        ax = fig.add_subplot(grid[i // columns, 1 + i % columns], sharey=main)
        plot_accuracy_vs_budget(records, ax=ax, family=family)
        ax.legend_ = None
        if i < columns:  # the lower row's budget labels serve both rows
            ax.tick_params(labelbottom=False)
        ax.set(title=f"{family} (chance {chance(family):.0f}%)", xlabel="", ylabel="")
    fig.legend(handles, labels, loc="outside lower center", ncol=6, fontsize=8)
    return fig


def plot_accuracy_vs_length(
    rows: Sequence[Mapping[str, Any]], trained_seconds: float | None = None, ax: Axes | None = None
) -> Axes:
    """Accuracy at full memory against clip length (log scale): overall as a thick black line,
    each question family as a thin one, chance dotted, and the clip lengths training rendered
    (up to ``trained_seconds``) shaded, so what lies right of the shade is extrapolation.

    ``rows``: one mapping per clip length, with ``seconds``, ``accuracy`` and ``by_family``
    (fractions), as ``scripts/train_on_gpu.sh`` writes them to ``accuracy_by_length.json``.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    rows = sorted(rows, key=lambda r: r["seconds"])
    seconds = [r["seconds"] for r in rows]
    families = families_of(r["by_family"] for r in rows)
    palette = sns.color_palette("colorblind", max(1, len(families)))
    for family, colour in zip(families, palette, strict=True):
        points = [(r["seconds"], 100 * r["by_family"][f]) for r in rows for f in [family]
                  if r["by_family"].get(f) is not None]  # fmt: skip
        ax.plot(*zip(*points, strict=True), color=colour, lw=1.2, marker=".", label=family)
    overall = [100 * r["accuracy"] for r in rows]
    ax.plot(seconds, overall, color="black", lw=2.6, marker="o", label="all", zorder=5)
    ax.axhline(chance(None, families or FAMILIES), color="grey", ls=":", lw=1, label="chance")
    if trained_seconds is not None and trained_seconds > min(seconds):
        shade = (min(seconds), min(trained_seconds, max(seconds)))
        ax.axvspan(*shade, color="0.9", zorder=0, label="lengths of training clips")
    ax.set_xscale("log")
    ax.set_xticks(seconds, [_duration_label(t) for t in seconds])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set(xlabel="clip length", ylabel="accuracy at full memory (%)", ylim=(0, 104))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def _duration_label(seconds: float) -> str:
    """60 -> "1 min", 90 -> "90 s", 3600 -> "60 min"."""
    return f"{seconds / 60:g} min" if seconds % 60 == 0 else f"{seconds:g} s"


# ---------------------------------------------------------------------------------------------
# Cost against memory size (`omnimem cost --budgets ...`)


def plot_cost_vs_budget(records: Sequence[Any], ax: Axes | None = None) -> Axes:
    """Milliseconds against budget tokens, log-log: one line per policy (one compression), the
    steady-state prefill of one chunk (memory full; averaged over policies, since it does not
    depend on the policy) as a dashed black line, and a dotted slope-1 line for reference.

    On log-log axes a cost proportional to memory runs parallel to the slope-1 line, and a
    quadratic one (an N x N similarity) twice as steep, so the growth reads off the slopes.
    ``records``: :class:`~omnimem_ref.cost.CostRecord` objects or their JSON dicts; records
    without a compression are left out (they measured no compression and no steady prefill).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    rows = [r for r in map(_as_dict, records) if r["compressions"] > 0]
    names = list(dict.fromkeys(r["policy"] for r in rows))
    palette = sns.color_palette("tab10" if len(names) <= 10 else "tab20", max(1, len(names)))
    for name, colour in zip(names, palette, strict=False):
        points = sorted(
            (r["budget_tokens"], r["compress_ms_per_compression"])
            for r in rows
            if r["policy"] == name
        )
        ax.plot(*zip(*points, strict=True), marker="o", color=colour, label=name)
    budgets = sorted({r["budget_tokens"] for r in rows})
    prefill = [
        np.mean([r["steady_prefill_ms_per_chunk"] for r in rows if r["budget_tokens"] == b])
        for b in budgets
    ]
    if budgets:
        ax.plot(
            budgets,
            prefill,
            color="black",
            ls="--",
            marker="s",
            ms=4,
            label="prefill per chunk (memory full)",
        )
        first = min((r for r in rows if r["policy"] == names[0]), key=lambda r: r["budget_tokens"])
        x0, y0 = first["budget_tokens"], first["compress_ms_per_compression"]
        ax.plot(
            budgets,
            [y0 * b / x0 for b in budgets],
            color="grey",
            ls=":",
            label="∝ memory (slope 1)",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("memory budget (KV tokens per layer)")
    ax.set_ylabel("time (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return ax
