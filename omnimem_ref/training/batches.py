"""Training batches, rendered straight from sampled scenes (no files, same pixels and samples).

A batch holds clips of one duration, so their streams line up without padding. Each clip comes
with several questions per family and with per-token targets for the model's probes: the colour
and shape in each patch, and the pitch, loudness and on-screen colour for each audio token.

Clips come from the classic world unless a ``world`` is given (:mod:`omnimem_ref.world.presets`);
the classic path draws exactly what it always drew, so a seed gives the same batches as before.

A batch can be *stretched* (``stretch_steps``, ``docs/training.md``): its ``n`` steps then stand
for ``n`` evenly spread steps of a clip ``r`` times longer, and take those steps' times and
rotary positions, so a model trained on two-minute clips sees the times and the distances of an
hour. Pixels, sounds, targets and answers stay those of the clip itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from tokenizers import Tokenizer

from omnimem_ref.features import FeatureSpec
from omnimem_ref.model.tokenizer import encode, question_text
from omnimem_ref.streaming.stream import StreamInputs
from omnimem_ref.training.evidence import evidence_tokens
from omnimem_ref.world import (
    CLASSIC,
    COLOURS,
    PITCHES,
    SHAPES,
    Question,
    Scene,
    World,
    render_frame,
    render_waveform,
    sample_scene,
    sample_world_scene,
    world_questions,
)
from omnimem_ref.world.geometry import covered_cells
from omnimem_ref.world.sampling import largest_fit

MAX_OPTIONS = 4
IGNORE = -100


@dataclass
class Batch:
    patches: torch.Tensor  # (B, steps, P, patch_dim)
    audio: torch.Tensor  # (B, steps, A, audio_dim)
    visual_targets: torch.Tensor  # (B, steps, P, 2): colour, shape (0 = none)
    audio_targets: torch.Tensor  # (B, steps, A, 3): pitch, loudness, on-screen colour
    question_ids: torch.Tensor  # (B, Q, L) token ids, padded with 0
    question_last: torch.Tensor  # (B, Q) index of each question's last token
    option_ids: torch.Tensor  # (B, Q, MAX_OPTIONS) token ids, padded with 0
    option_valid: torch.Tensor  # (B, Q, MAX_OPTIONS) bool
    answer_index: torch.Tensor  # (B, Q) index of the true option, IGNORE if no question
    evidence: torch.Tensor  # (B, Q, stream tokens) bool: the tokens each question is about
    families: list[list[str | None]]  # family of each question slot; None for padding
    # (steps,) the step of a longer clip each step stands for (``stretch_steps``): its times and
    # positions are that step's. None: step k is step k, as in the streaming session.
    virtual_steps: torch.Tensor | None = None

    def to(self, device: str | torch.device) -> Batch:
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)


def clip_targets(scene: Scene, spec: FeatureSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token probe targets read off the scene at each token's time."""
    inputs = StreamInputs(torch.zeros(spec.n_steps(scene.duration), 1, 1), torch.zeros(0), spec)
    colours, shapes, pitches = list(COLOURS), list(SHAPES), list(PITCHES)
    n_steps, n_patches = inputs.n_steps, spec.visual_tokens_per_step
    visual = torch.zeros(n_steps, n_patches, 2, dtype=torch.long)
    audio = torch.zeros(n_steps, spec.audio_tokens_per_step, 3, dtype=torch.long)
    for k, t in enumerate(inputs.frame_seconds().tolist()):
        on_screen = scene.objects_at(t)
        for obj in on_screen:  # a classic object covers its own cell; a general one, several
            visual[k, covered_cells(obj, t, spec.frame_size)] = torch.tensor(
                [colours.index(obj.colour) + 1, shapes.index(obj.shape) + 1]
            )
        for j, ta in enumerate(inputs.audio_seconds()[k].tolist()):
            for tone in scene.tones_at(ta):
                colour = colours.index(on_screen[0].colour) + 1 if on_screen else 0
                audio[k, j] = torch.tensor([pitches.index(tone.pitch) + 1, 1 + tone.loud, colour])
    return visual, audio


def make_batch(
    rng: np.random.Generator,
    tokenizer: Tokenizer,
    spec: FeatureSpec,
    batch_size: int,
    duration: float,
    frame_size: int = 128,
    world: World = CLASSIC,
) -> Batch:
    """``batch_size`` fresh clips of ``duration`` seconds, with all their questions."""
    n_steps = spec.n_steps(duration)
    patches, audio, visual_t, audio_t, questions = [], [], [], [], []
    for _ in range(batch_size):
        scene = training_scene(rng, duration, n_steps, world)
        frames = np.stack([render_frame(scene, t, frame_size) for t in spec.frame_times(duration)])
        inputs = StreamInputs.from_arrays(frames, render_waveform(scene, spec.sample_rate), spec)
        patches.append(inputs.patches)
        audio.append(inputs.audio)
        v, a = clip_targets(scene, spec)
        visual_t.append(v)
        audio_t.append(a)
        questions.append(training_questions(scene, rng, world=world))
    ids, last, option_ids, valid, answer = _question_tensors(tokenizer, questions)
    per_step = spec.tokens_per_step
    evidence = torch.zeros(batch_size, ids.shape[1], n_steps * per_step, dtype=torch.bool)
    for i, qs in enumerate(questions):
        for j, q in enumerate(qs):
            evidence[i, j] = evidence_tokens(q, visual_t[i], audio_t[i])
    return Batch(
        patches=torch.stack(patches),
        audio=torch.stack(audio),
        visual_targets=torch.stack(visual_t),
        audio_targets=torch.stack(audio_t),
        question_ids=ids,
        question_last=last,
        option_ids=option_ids,
        option_valid=valid,
        answer_index=answer,
        evidence=evidence,
        families=[[q.family for q in qs] + [None] * (ids.shape[1] - len(qs)) for qs in questions],
    )


def training_scene(
    rng: np.random.Generator, duration: float, n_steps: int, world: World = CLASSIC
) -> Scene:
    """A scene with a random number of objects and tones, as many as fit at most."""
    if world.is_classic:
        n_visual = int(rng.integers(2, min(len(COLOURS), n_steps // 2) + 1))
        return sample_scene(rng, duration, n_visual, int(rng.integers(1, len(PITCHES) + 1)))
    most_visual, most_audio = largest_fit(duration, world)
    n_visual = int(rng.integers(min(2, most_visual), most_visual + 1))
    n_audio = int(rng.integers(1, max(1, most_audio) + 1))
    return sample_world_scene(rng, duration, n_visual, n_audio, world)


def training_questions(
    scene: Scene, rng: np.random.Generator, draws: int = 3, world: World = CLASSIC
) -> list[Question]:
    """Several distinct questions per family (about every object, every bound tone, several
    pairs), so each rendered stream teaches as much as it can."""
    distinct: dict[str, Question] = {}
    for _ in range(draws):
        for q in world_questions(scene, "train", rng, world):
            distinct.setdefault(q.question, q)
    return list(distinct.values())


def _question_tensors(
    tokenizer: Tokenizer, questions: list[list[Question]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n_q = max(len(qs) for qs in questions)
    questions = [[*qs, *[None] * (n_q - len(qs))] for qs in questions]  # type: ignore[list-item]
    encoded = [
        [encode(tokenizer, question_text(q.question)) if q else [0] for q in qs] for qs in questions
    ]
    length = max(len(ids) for qs in encoded for ids in qs)
    b = len(questions)
    ids = torch.zeros(b, n_q, length, dtype=torch.long)
    last = torch.zeros(b, n_q, dtype=torch.long)
    option_ids = torch.zeros(b, n_q, MAX_OPTIONS, dtype=torch.long)
    valid = torch.zeros(b, n_q, MAX_OPTIONS, dtype=torch.bool)
    answer = torch.full((b, n_q), IGNORE, dtype=torch.long)
    for i, qs in enumerate(questions):
        for j, q in enumerate(qs):
            ids[i, j, : len(encoded[i][j])] = torch.tensor(encoded[i][j])
            last[i, j] = len(encoded[i][j]) - 1
            if q is None:
                continue
            opts = [encode(tokenizer, o)[0] for o in q.options]
            option_ids[i, j, : len(opts)] = torch.tensor(opts)
            valid[i, j, : len(opts)] = True
            answer[i, j] = q.options.index(q.answer)
    return ids, last, option_ids, valid, answer


def stretch_factor(
    rng: np.random.Generator, duration: float, share: float, longest: float
) -> float:
    """How many times longer a clip of ``duration`` s is made to look: 1 with probability
    ``1 - share``; otherwise ``r = V / duration`` for a length ``V`` drawn log-uniformly from
    ``[duration, longest]``, so every octave of lengths up to ``longest`` is seen alike. Draws
    nothing when ``share`` is 0 (the batch stream is then the unstretched recipe's)."""
    if share <= 0 or rng.random() >= share:
        return 1.0
    low, high = math.log(duration), math.log(max(longest, duration))
    return math.exp(rng.uniform(low, high)) / duration


def stretch_steps(n_steps: int, factor: float) -> torch.Tensor:
    """(n_steps,) the virtual step each step stands for: ``v_k = floor(r k)``, strictly increasing
    for ``r >= 1`` (``floor(x + r) >= floor(x) + 1``); ``r = 1`` gives ``v_k = k``."""
    k = torch.arange(n_steps, dtype=torch.float64)
    return torch.floor(factor * k).long()


def stretched(batch: Batch, factor: float) -> Batch:
    """``batch`` standing for a clip ``factor`` times longer (unchanged if ``factor`` is 1)."""
    if factor == 1.0:
        return batch
    return replace(batch, virtual_steps=stretch_steps(batch.patches.shape[1], factor))


def times_of_steps(spec: FeatureSpec, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The times of steps ``v`` (any steps, not only a range), as
    :mod:`omnimem_ref.streaming.stream` gives them: frames at ``(v + 1/2) s`` and audio token
    ``j`` at ``v s + (j + 1/2) w`` (``s`` the step, ``w = s / A`` an audio window), shapes
    (n,) and (n, A)."""
    a = spec.audio_tokens_per_step
    window = spec.step_seconds / a
    frames = (steps + 0.5) * spec.step_seconds
    inside = (torch.arange(a, device=steps.device) + 0.5) * window
    audio = (steps * spec.step_seconds).unsqueeze(1) + inside
    return frames, audio


def positions_of_steps(spec: FeatureSpec, first: int, steps: torch.Tensor) -> torch.Tensor:
    """(n * T,) rotary positions of the tokens of steps ``v`` in a stream whose step 0 starts at
    ``first``: ``first + v T + i`` for the ``i``-th of a step's ``T`` tokens, as a streaming
    session that never evicted numbers them (a step's tokens stay neighbours)."""
    per_step = spec.tokens_per_step
    inside = torch.arange(per_step, device=steps.device)
    return (first + steps.unsqueeze(1) * per_step + inside).flatten()
