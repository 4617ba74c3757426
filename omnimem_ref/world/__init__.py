"""The synthetic audio-visual world: scenes, their questions, and how they look and sound.

A *scene* is a list of timed events: coloured shapes that appear on a textured background, and
tones of a given pitch and loudness over background noise. The same scene is rendered to real
files (``generate``) and, for training, straight to arrays: one renderer, so the model sees the
same pixels and samples either way.

Two presets (:mod:`omnimem_ref.world.presets`): ``classic``, the original world (still the default
everywhere, byte for byte), and ``hard``, where objects span several cells and move, colours and
events repeat, distractors appear, the background drifts, and two more question families ask to
count and to place events in time. :func:`sample_world_scene` and :func:`world_questions` draw
from any world; :func:`sample_scene` and :func:`make_questions` are the classic ones.
"""

from omnimem_ref.world.families import world_questions
from omnimem_ref.world.presets import (
    ALL_FAMILIES,
    CLASSIC,
    FAMILIES,
    HARD,
    NEW_FAMILIES,
    PRESETS,
    World,
)
from omnimem_ref.world.questions import Question, make_questions
from omnimem_ref.world.render import render_frame, render_waveform
from omnimem_ref.world.sampling import sample_world_scene
from omnimem_ref.world.scene import AudioEvent, Scene, VisualEvent, sample_scene
from omnimem_ref.world.vocabulary import COLOURS, PITCHES, SHAPES

__all__ = [
    "ALL_FAMILIES",
    "AudioEvent",
    "CLASSIC",
    "COLOURS",
    "FAMILIES",
    "HARD",
    "NEW_FAMILIES",
    "PITCHES",
    "PRESETS",
    "Question",
    "SHAPES",
    "Scene",
    "VisualEvent",
    "World",
    "make_questions",
    "render_frame",
    "render_waveform",
    "sample_scene",
    "sample_world_scene",
    "world_questions",
]
