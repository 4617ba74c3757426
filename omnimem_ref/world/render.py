"""Rendering a scene to pixels and samples.

Frames: a smooth random texture with a slow brightness swing (``scene.lighting``) and a little
sensor noise, optionally panning (``scene.pan``), so the same patch cell is never pixel-identical
from frame to frame; then the distractors, then the objects questions are about, on top (so a
distractor never hides one). Audio: low background noise plus tones with short fades, distractor
tones (off the vocabulary's pitches, soft) included. Both are deterministic given the scene, and a
classic scene renders exactly as it always has.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from omnimem_ref.world.geometry import (
    OBJECT_RADIUS,
    centre_at,
    object_centre,
    object_radius,
    shape_mask,
)
from omnimem_ref.world.scene import AudioEvent, Scene
from omnimem_ref.world.vocabulary import (
    COLOURS,
    DISTRACTOR_COLOURS,
    DISTRACTOR_PITCHES,
    LOUD_AMPLITUDE,
    PITCHES,
    SOFT_AMPLITUDE,
)

__all__ = [
    "OBJECT_RADIUS",
    "background",
    "object_centre",
    "render_frame",
    "render_waveform",
    "shape_mask",
]

NOISE_STD = 0.02  # background audio noise
FADE_SECONDS = 0.01
PALETTE = {**COLOURS, **DISTRACTOR_COLOURS}
FREQUENCIES = {**PITCHES, **DISTRACTOR_PITCHES}


Wave = tuple[float, float, float, float]  # x and y frequency (cycles per frame), phase, amplitude


@lru_cache(maxsize=64)
def texture_waves(texture_seed: int) -> tuple[tuple[Wave, ...], np.ndarray]:
    """The texture's few plane waves and its colour tint, drawn from its seed."""
    rng = np.random.default_rng(texture_seed)
    waves = []
    for _ in range(6):
        fx, fy = rng.uniform(0.5, 4.0, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        waves.append((fx, fy, phase, rng.uniform(8, 18)))
    return tuple(waves), rng.uniform(-12, 12, size=3).astype(np.float32)


@lru_cache(maxsize=64)
def background(texture_seed: int, size: int) -> np.ndarray:
    """A smooth, low-saturation texture (float32, HxWx3, 0..255) made of a few sinusoids: the
    still background, cached (a classic clip draws it once)."""
    waves, tint = texture_waves(texture_seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    grey = np.full((size, size), 110.0, dtype=np.float32)
    for fx, fy, phase, amplitude in waves:
        grey += amplitude * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    return np.clip(grey[..., None] + tint, 0, 255)


def panned_background(texture_seed: int, size: int, shift: tuple[float, float]) -> np.ndarray:
    """The same texture seen through a window moved by ``shift`` (fractions of the frame).

    Each plane wave is separable, sin(a + b) = sin a cos b + cos a sin b, so a frame costs two
    outer products per wave instead of a sine per pixel: a panning hour renders 4x faster.
    """
    waves, tint = texture_waves(texture_seed)
    axis = np.arange(size, dtype=np.float64) / size
    grey = np.full((size, size), 110.0)
    for fx, fy, phase, amplitude in waves:
        across = 2 * np.pi * fx * (axis + shift[0])
        down = 2 * np.pi * fy * (axis + shift[1]) + phase
        grey += amplitude * (
            np.outer(np.cos(down), np.sin(across)) + np.outer(np.sin(down), np.cos(across))
        )
    return np.clip(grey.astype(np.float32)[..., None] + tint, 0, 255)


def background_at(scene: Scene, t: float, size: int) -> np.ndarray:
    """The texture as the camera sees it at ``t`` (panned by ``scene.pan`` per second)."""
    if scene.pan == (0.0, 0.0):
        return background(scene.texture_seed, size)
    return panned_background(scene.texture_seed, size, (scene.pan[0] * t, scene.pan[1] * t))


def render_frame(scene: Scene, t: float, size: int = 128) -> np.ndarray:
    """The frame at time ``t`` seconds, as uint8 RGB of shape (size, size, 3)."""
    drift = 1.0 + scene.lighting * np.sin(2 * np.pi * t / 47.0 + scene.texture_seed % 7)
    noise_rng = np.random.default_rng([scene.texture_seed, int(round(t * 1000))])
    frame = noise_rng.standard_normal((size, size, 3), dtype=np.float32)
    frame *= 2.0
    frame += background_at(scene, t, size) * np.float32(drift)
    for event in (*scene.distractors_at(t), *scene.objects_at(t)):
        cx, cy = centre_at(event, t, size)
        alpha = shape_mask(event.shape, size, cx, cy, object_radius(event, size))[..., None]
        frame = frame * (1 - alpha) + np.asarray(PALETTE[event.colour], np.float32) * alpha
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)


def render_waveform(scene: Scene, sample_rate: int = 16000) -> np.ndarray:
    """The clip's audio as float32 mono samples in [-1, 1]."""
    n = int(round(scene.duration * sample_rate))
    rng = np.random.default_rng([scene.texture_seed, 1])
    wave = rng.standard_normal(n, dtype=np.float32)
    wave *= NOISE_STD
    for tone in (*scene.audio, *scene.distractor_tones):
        _add_tone(wave, tone, sample_rate)
    return np.clip(wave, -1.0, 1.0)


def _add_tone(wave: np.ndarray, tone: AudioEvent, sample_rate: int) -> None:
    """Add one faded sine tone to ``wave`` in place."""
    fade = int(FADE_SECONDS * sample_rate)
    a, b = int(tone.onset * sample_rate), min(len(wave), int(tone.offset * sample_rate))
    t = np.arange(b - a, dtype=np.float32) / sample_rate
    amplitude = LOUD_AMPLITUDE if tone.loud else SOFT_AMPLITUDE
    envelope = np.minimum(1.0, np.minimum(np.arange(b - a), np.arange(b - a)[::-1]) / fade)
    wave[a:b] += amplitude * envelope * np.sin(2 * np.pi * FREQUENCIES[tone.pitch] * t)
