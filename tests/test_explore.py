"""The notebooks' slider callback (omnimem_ref.explore): it streams, counts, answers and draws
what it says, and without ipywidgets the notebooks fall back to a static grid."""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")  # before pyplot: tests draw figures, never show them

import matplotlib.pyplot as plt
import numpy as np
import pytest

from omnimem_ref.dataset import SAMPLES_DIR
from omnimem_ref.errors import OmniMemError
from omnimem_ref.explore import (
    BY_MASS,
    Explorer,
    View,
    answer_marks,
    build_policy,
    load_explore_clip,
    percent,
    widgets_module,
)


@pytest.fixture(scope="module")
def explorer(trained) -> Explorer:
    model, tokenizer = trained
    return Explorer(model, tokenizer, load_explore_clip(model, SAMPLES_DIR, "clip_0001"))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def held_per_layer(view: View) -> np.ndarray:
    kept = view.kept
    return kept.visual.sum(axis=(1, 2, 3)) + kept.audio.sum(axis=(1, 2))


def test_a_view_holds_the_budget_and_answers_every_question(explorer):
    view = explorer.view("omnimem", 0.1)
    prompt = view.kept_tokens["text"]
    assert view.budget_tokens == round(0.1 * explorer.full_tokens())
    assert (held_per_layer(view) + prompt == view.budget_tokens).all()  # the map is the memory
    assert sum(view.kept_tokens.values()) == view.budget_tokens
    assert [a.family for a in view.answers] == [q.family for q in explorer.clip.questions]
    assert view.n_correct == sum(a.choice == a.truth for a in view.answers)
    assert view.label == "omnimem at 10%"


def test_the_audio_share_knob_moves_the_audio_tokens(explorer):
    none = explorer.view("omnimem", 0.1, audio_share=0.0)
    half = explorer.view("omnimem", 0.1, audio_share=0.5)
    assert none.kept_tokens["audio"] == 0
    assert half.kept_tokens["audio"] > explorer.view("omnimem", 0.1).kept_tokens["audio"] / 2
    assert half.policy == "omnimem (audio 50%)"


def test_knobs_are_omnimem_only_and_say_so():
    policy, label = build_policy("recent", audio_share=0.5, threshold=0.3)
    assert policy.name == "recent" and "OmniMem only" in label
    assert build_policy("omnimem", threshold=0.5)[1] == "omnimem (τ 0.5)"
    assert build_policy("omnimem", audio_share=BY_MASS)[1] == "omnimem"  # the default split
    with pytest.raises(OmniMemError):
        build_policy("no-such-policy")


def test_show_draws_one_figure_and_returns_what_it_drew(explorer):
    view = explorer.show("recent", 0.05)
    assert len(plt.get_fignums()) == 1
    assert view.policy == "recent" and view.budget == 0.05
    assert view.kept.visual[:, -1].any()  # recent keeps the newest frame


def test_grid_lays_views_out_by_row_and_budget(explorer):
    figure, views = explorer.grid(
        ["recent", {"policy": "omnimem", "audio_share": 0.25}], [0.05, 0.2]
    )
    assert [[v.label for v in row] for row in views] == [
        ["recent at 5%", "recent at 20%"],
        ["omnimem (audio 25%) at 5%", "omnimem (audio 25%) at 20%"],
    ]
    assert figure.axes
    assert set(answer_marks(views[0][0]).split()) <= {f"{f}{m}" for f in "VABT" for m in "✓✗"}


def test_without_sliders_interact_draws_the_static_grid(explorer, monkeypatch):
    monkeypatch.setenv("OMNIMEM_STATIC", "1")
    assert widgets_module() is None
    views = explorer.interact(["recent", "omnimem"], [0.05, 0.1])
    assert [len(row) for row in views] == [2, 2]


def test_without_ipywidgets_there_are_no_sliders(monkeypatch):
    monkeypatch.delenv("OMNIMEM_STATIC", raising=False)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import now raises ImportError
    assert widgets_module() is None


def test_with_ipywidgets_interact_builds_the_sliders(explorer, monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    monkeypatch.delenv("OMNIMEM_STATIC", raising=False)
    ui = explorer.interact(["recent", "omnimem"], [0.05, 0.1], audio_shares=[BY_MASS, 0.25])
    assert isinstance(ui, ipywidgets.interactive)
    labels = {w.description for w in ui.kwargs_widgets}
    assert {"policy", "budget", "audio share"} <= labels


def test_budgets_read_as_percentages():
    assert percent(0.05) == "5%" and percent(0.125) == "12.5%"
