"""Live views of one clip for the notebooks' sliders: stream it under a policy at a budget, then
show what survives, how many tokens of each modality memory holds, and how the model answers.

Why a module and not a notebook cell: ipywidgets runs a slider's callback itself and swallows its
exceptions, so a callback broken by a change elsewhere would still pass CI. Here the callback is a
plain method (:meth:`Explorer.show`) that a notebook also calls directly in an asserted cell, and
that ``tests/test_explore.py`` tests like any other function. Where sliders cannot run (no
ipywidgets, or ``OMNIMEM_STATIC=1`` while the notebooks are executed for their committed outputs),
:meth:`Explorer.interact` draws the same views as a static small-multiples grid instead.

A bundled clip streams through TinyOmni in well under a second, so every slider move streams the
clip again from the start: nothing is precomputed, so nothing can go stale.

Everything is reused from the package: :func:`~omnimem_ref.evaluation.load_stream` decodes the
clip, :class:`~omnimem_ref.streaming.session.StreamingSession` streams and answers, and
:mod:`omnimem_ref.plots` draws the survival map.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from omnimem_ref.budget import Budget
from omnimem_ref.core import StreamingModel
from omnimem_ref.dataset import load_dataset
from omnimem_ref.evaluation import group_by_clip, load_stream
from omnimem_ref.features import stream_tokens
from omnimem_ref.plots import (
    MODALITY_COLOURS,
    Survival,
    add_colourbar,
    evidence_handle,
    plot_survival_map,
    survival,
    survival_scale,
)
from omnimem_ref.policies import FixedShare, OmniMem, RedundancyAware, make_policy
from omnimem_ref.policies.base import CompressionPolicy
from omnimem_ref.streaming.session import StreamingSession
from omnimem_ref.streaming.stream import StreamInputs
from omnimem_ref.world import ALL_FAMILIES, Question

DPI = 80  # these figures are wide and many: a modest resolution keeps executed notebooks small
STREAM_MODALITIES = ("visual", "audio")  # what a budget is spent on (the prompt is always kept)
BY_MASS = "by score mass"  # OmniMem's default audio share, as a slider spells it (not None)


def percent(fraction: float) -> str:
    """``0.05`` -> ``"5%"``: budgets are fractions in code and percentages on screen."""
    return f"{100 * fraction:g}%"


@dataclass(frozen=True)
class ExploreClip:
    """One clip, decoded once: its encoder inputs and the questions asked about it."""

    name: str
    inputs: StreamInputs
    questions: tuple[Question, ...]

    @property
    def evidence(self) -> list[tuple[float, float]]:
        """Every question's evidence spans (seconds), for marking on survival maps."""
        return [span for q in self.questions for span in q.evidence_time]


def load_explore_clip(model: StreamingModel, data_dir: str | Path, name: str) -> ExploreClip:
    """Decode clip ``name`` of a dataset folder (e.g. ``SAMPLES_DIR``) with its questions."""
    questions = group_by_clip(load_dataset(data_dir)[0])[name]
    inputs = load_stream(model, data_dir, name).to_inputs()  # decoded once, streamed per move
    return ExploreClip(name, inputs, tuple(questions))


@dataclass(frozen=True)
class AnswerRow:
    """One question asked of the compressed memory."""

    family: str
    question: str
    truth: str
    choice: str

    @property
    def correct(self) -> bool:
        return self.choice == self.truth


@dataclass
class View:
    """What one position of the sliders shows (and what :meth:`Explorer.show` returns)."""

    policy: str  # the policy's name, with the settings changed from its defaults
    budget: float  # a fraction of the stream's tokens
    budget_tokens: int  # per layer, the prompt included
    model: str
    kept: Survival  # which stream tokens each layer still holds at the end
    kept_tokens: dict[str, float]  # per modality, mean over layers
    answers: list[AnswerRow]

    @property
    def n_correct(self) -> int:
        return sum(a.correct for a in self.answers)

    @property
    def label(self) -> str:
        return f"{self.policy} at {percent(self.budget)}"

    def summary(self) -> str:
        """``omnimem at 5%: 3/4 right, 14.0 visual + 6.5 audio tokens kept``."""
        held = " + ".join(f"{self.kept_tokens[m]:.1f} {m}" for m in STREAM_MODALITIES)
        return f"{self.label}: {self.n_correct}/{len(self.answers)} right, {held} tokens kept"


def build_policy(
    policy: str, audio_share: float | str | None = None, threshold: float = 0.0
) -> tuple[CompressionPolicy, str]:
    """The policy called ``policy`` and a label for it.

    ``audio_share`` and ``threshold`` are OmniMem's knobs: the audio share of the free slots
    (``FixedShare``; ``None`` or :data:`BY_MASS` keeps the default split by score mass) and the
    redundancy threshold ``τ`` (``RedundancyAware(threshold=τ)``: keys less similar than ``τ`` are
    not discounted).
    Other policies have neither, so for them the knobs are ignored, and the label says so.
    """
    if audio_share == BY_MASS:
        audio_share = None
    if policy != "omnimem":
        ignored = audio_share is not None or threshold != 0.0
        return make_policy(policy), policy + (" (audio share, τ: OmniMem only)" if ignored else "")
    allocation = None if audio_share is None else FixedShare(rho=float(audio_share))
    changed = [f"audio {percent(float(audio_share))}"] if audio_share is not None else []
    changed += [f"τ {threshold:g}"] if threshold != 0.0 else []
    label = policy + (f" ({', '.join(changed)})" if changed else "")
    return OmniMem(allocation=allocation, selection=RedundancyAware(threshold=threshold)), label


class Explorer:
    """One clip and one or more models, streamed again at every slider move.

    ``models``: a model, or several by name (e.g. the base model and the model with an adapter),
    chosen with :meth:`view`'s ``model``.
    """

    def __init__(
        self,
        models: StreamingModel | Mapping[str, StreamingModel],
        tokenizer: Any,
        clip: ExploreClip,
    ) -> None:
        self.models = dict(models) if isinstance(models, Mapping) else {"model": models}
        self.tokenizer = tokenizer
        self.clip = clip

    def full_tokens(self, model: str | None = None) -> int:
        """Tokens per layer of the whole stream (prompt included): what a budget is a fraction of."""
        prompt = self.models[model or next(iter(self.models))].prompt_format(self.tokenizer)
        inputs = self.clip.inputs
        return stream_tokens(len(prompt.prompt_ids()), inputs.n_steps, inputs.tokens_per_step)

    def view(
        self,
        policy: str = "omnimem",
        budget: float = 0.1,
        model: str | None = None,
        audio_share: float | str | None = None,
        threshold: float = 0.0,
    ) -> View:
        """Stream the clip under ``policy`` at ``budget`` (a fraction of the stream) and ask every
        question; see :func:`build_policy` for ``audio_share`` and ``threshold``."""
        name = model or next(iter(self.models))
        compressor, label = build_policy(policy, audio_share, threshold)
        tokens = Budget(fraction=budget).resolve(self.full_tokens(name))
        session = StreamingSession(self.models[name], self.tokenizer, compressor, tokens)
        session.stream(self.clip.inputs)
        answers = [
            AnswerRow(q.family, q.question, q.answer, session.answer(q.question, q.options).choice)
            for q in self.clip.questions
        ]
        inputs = self.clip.inputs
        return View(
            policy=label,
            budget=budget,
            budget_tokens=tokens,
            model=name,
            kept=survival(session.memory, inputs.n_steps, inputs.spec),
            kept_tokens=session.memory.tokens_by_modality(),
            answers=answers,
        )

    def show(
        self,
        policy: str = "omnimem",
        budget: float = 0.1,
        model: str | None = None,
        audio_share: float | str | None = None,
        threshold: float = 0.0,
    ) -> View:
        """The sliders' callback: stream (:meth:`view`), draw (:func:`plot_view`), and return what
        was drawn, so a notebook can assert on it. The arguments are :meth:`view`'s, repeated
        one by one because ipywidgets makes one control per named argument
        (:func:`slider_controls`)."""
        view = self.view(policy, budget, model, audio_share, threshold)
        plot_view(view, self.clip, show_model=len(self.models) > 1)
        plt.show()
        return view

    def grid(
        self, rows: Sequence[str | Mapping[str, Any]], budgets: Sequence[float]
    ) -> tuple[Figure, list[list[View]]]:
        """Small multiples: one survival map per row (a policy name, or :meth:`view`'s keyword
        arguments) and budget, every map on one colour scale; the views, row by row."""
        settings = [{"policy": r} if isinstance(r, str) else dict(r) for r in rows]
        views = [[self.view(budget=b, **s) for b in budgets] for s in settings]
        return plot_grid(views, self.clip), views

    def interact(
        self,
        policies: Sequence[str],
        budgets: Sequence[float],
        audio_shares: Sequence[float | str] | None = None,
        thresholds: Sequence[float] | None = None,
        static_rows: Sequence[str | Mapping[str, Any]] | None = None,
    ) -> Any:
        """Sliders where they can run; elsewhere the static grid of ``static_rows`` (default: the
        policies) at every budget. Displays and returns the widget, or returns the grid's views.

        ``audio_shares`` (e.g. ``[BY_MASS, 0.0, 0.25]``) and ``thresholds`` add OmniMem's two
        knobs as sliders; without them the knobs stay at OmniMem's defaults."""
        ui = widgets_module()
        if ui is None:
            _, views = self.grid(static_rows or policies, budgets)
            plt.show()
            return views
        controls = slider_controls(
            ui, policies, budgets, list(self.models), audio_shares, thresholds
        )
        sliders = ui.interactive(self.show, **controls)
        from IPython.display import display  # ipywidgets' own dependency

        display(sliders)
        return sliders


def slider_controls(
    ui: ModuleType,
    policies: Sequence[str],
    budgets: Sequence[float],
    models: Sequence[str],
    audio_shares: Sequence[float | str] | None = None,
    thresholds: Sequence[float] | None = None,
) -> dict[str, Any]:
    """One widget per argument of :meth:`Explorer.show`: a menu or a slider where there is a
    choice, ``ui.fixed`` (the default) where there is none. Sliders redraw on release only: each
    move streams the clip again."""

    def slider(label: str, options: list[tuple[str, Any]], value: Any = None) -> Any:
        value = options[0][1] if value is None else value
        return ui.SelectionSlider(
            options=options, value=value, description=label, continuous_update=False
        )

    middle = budgets[len(budgets) // 2]
    controls: dict[str, Any] = {
        "policy": ui.Dropdown(options=list(policies), description="policy"),
        "budget": slider("budget", [(percent(b), b) for b in budgets], middle),
        "model": ui.fixed(None),
        "audio_share": ui.fixed(None),
        "threshold": ui.fixed(0.0),
    }
    if len(models) > 1:
        controls["model"] = ui.Dropdown(options=list(models), description="model")
    if audio_shares is not None:
        labels = [(s if isinstance(s, str) else percent(s), s) for s in audio_shares]
        controls["audio_share"] = slider("audio share", labels)
    if thresholds is not None:
        controls["threshold"] = slider("τ", [(f"{t:g}", t) for t in thresholds])
    return controls


def widgets_module() -> ModuleType | None:
    """ipywidgets, or ``None`` where sliders cannot run: it is not installed, or ``OMNIMEM_STATIC``
    is set (notebooks executed for their committed outputs, where no kernel answers a slider)."""
    if os.environ.get("OMNIMEM_STATIC"):
        return None
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


# ---------------------------------------------------------------------------------------------
# Drawing


def plot_view(view: View, clip: ExploreClip, show_model: bool = False) -> Figure:
    """The survival map with the evidence marked (left), the tokens memory holds per modality
    (middle) and the answers (right)."""
    fig = plt.figure(figsize=(14, 2.9), dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=[6, 1.2, 2.6], height_ratios=[3, 1.2])
    ax_v = fig.add_subplot(grid[0, 0])
    ax_a = fig.add_subplot(grid[1, 0], sharex=ax_v)
    title = view.label + (f", {view.model}" if show_model else "")
    plot_survival_map(view.kept, axes=(ax_v, ax_a), title=title, evidence=clip.evidence)
    ax_v.tick_params(labelbottom=False)
    plot_kept_tokens(view, fig.add_subplot(grid[:, 1]))
    plot_answers(view, fig.add_subplot(grid[:, 2]))
    return fig


def plot_kept_tokens(view: View, ax: Axes) -> Axes:
    """Bars: visual and audio tokens each layer holds at the end (mean over layers)."""
    counts = [view.kept_tokens[m] for m in STREAM_MODALITIES]
    ax.bar(STREAM_MODALITIES, counts, color=[MODALITY_COLOURS[m] for m in STREAM_MODALITIES])
    for x, value in enumerate(counts):
        ax.text(x, value, f"{value:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_title(f"kept (budget {view.budget_tokens})", fontsize=9)
    ax.set_ylabel("tokens per layer", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.margins(y=0.2)
    return ax


def plot_answers(view: View, ax: Axes) -> Axes:
    """The questions, one line each: family, the model's answer, and ✓ or ✗ (with the truth)."""
    ax.axis("off")
    ax.set_title(f"answers: {view.n_correct}/{len(view.answers)} right", fontsize=9)
    for i, a in enumerate(view.answers):
        mark = "✓" if a.correct else f"✗ (truth: {a.truth})"
        ax.text(
            0, 1 - (i + 0.5) / max(4, len(view.answers)), f"{a.family}: {a.choice} {mark}",
            color="black" if a.correct else "crimson", fontsize=9, va="center",
            transform=ax.transAxes,
        )  # fmt: skip
    return ax


def answer_marks(view: View) -> str:
    """``V✓ A✗ B✓ T✓``: each family's initial and whether its answer was right."""
    by_family = {a.family: a.correct for a in view.answers}
    return " ".join(
        f"{f[0].upper()}{'✓' if by_family[f] else '✗'}" for f in ALL_FAMILIES if f in by_family
    )


def plot_grid(views: Sequence[Sequence[View]], clip: ExploreClip) -> Figure:
    """Small multiples of :class:`View` s: rows of settings, columns of budgets, one colour
    scale; each title gives the answers (``V✓ A✗ ...``) and the tokens kept per modality."""
    n_rows, n_cols = len(views), len(views[0])
    several_models = len({v.model for row in views for v in row}) > 1
    fig, axes = plt.subplots(
        2 * n_rows, n_cols, figsize=(4.6 * n_cols, 1.75 * n_rows), dpi=DPI, sharex=True,
        gridspec_kw={"height_ratios": [3, 1.2] * n_rows}, squeeze=False, layout="constrained",
    )  # fmt: skip
    for r, row in enumerate(views):
        for c, view in enumerate(row):
            pair = (axes[2 * r, c], axes[2 * r + 1, c])
            held = ", ".join(f"{view.kept_tokens[m]:.0f} {m[0]}" for m in STREAM_MODALITIES)
            name = f"{view.label}, {view.model}" if several_models else view.label
            title = f"{name}\n{answer_marks(view)} · kept {held}"
            plot_survival_map(view.kept, axes=pair, evidence=clip.evidence, colourbar=False)
            pair[0].set_title(title, fontsize=8)
            if r < n_rows - 1:
                pair[1].set_xlabel("")
            if c > 0:
                for ax in pair:
                    ax.set_ylabel("")
    cmap, norm, ticks = survival_scale(views[0][0].kept.visual.shape[0])
    add_colourbar(ScalarMappable(norm, cmap), list(np.ravel(axes)), "held at the end by", ticks)
    fig.legend(handles=[evidence_handle()], loc="outside lower right", fontsize=8, frameon=False)
    return fig
