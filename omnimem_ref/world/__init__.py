"""The synthetic audio-visual world: scenes, their questions, and how they look and sound.

A *scene* is a list of timed events: coloured shapes that appear on a mostly still textured
background, and tones of a given pitch and loudness over background noise. The same scene is
rendered to real files (``generate``) and, for training, straight to arrays: one renderer, so the
model sees the same pixels and samples either way.
"""

from omnimem_ref.world.questions import FAMILIES, Question, make_questions
from omnimem_ref.world.render import render_frame, render_waveform
from omnimem_ref.world.scene import AudioEvent, Scene, VisualEvent, sample_scene
from omnimem_ref.world.vocabulary import COLOURS, PITCHES, SHAPES

__all__ = [
    "AudioEvent",
    "COLOURS",
    "FAMILIES",
    "PITCHES",
    "Question",
    "SHAPES",
    "Scene",
    "VisualEvent",
    "make_questions",
    "render_frame",
    "render_waveform",
    "sample_scene",
]
