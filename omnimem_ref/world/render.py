"""Rendering a scene to pixels and samples.

Frames: a smooth random texture that barely changes over time (a slow brightness drift and a
little sensor noise), so neighbouring frames are mostly redundant, plus the objects on screen.
Audio: low background noise plus tones with short fades. Both are deterministic given the scene.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from omnimem_ref.world.scene import Scene, VisualEvent
from omnimem_ref.world.vocabulary import COLOURS, GRID, LOUD_AMPLITUDE, PITCHES, SOFT_AMPLITUDE

OBJECT_RADIUS = 0.085  # as a fraction of the frame side
NOISE_STD = 0.02  # background audio noise
FADE_SECONDS = 0.01


@lru_cache(maxsize=64)
def background(texture_seed: int, size: int) -> np.ndarray:
    """A smooth, low-saturation texture (float32, HxWx3, 0..255) made of a few sinusoids."""
    rng = np.random.default_rng(texture_seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    grey = np.full((size, size), 110.0, dtype=np.float32)
    for _ in range(6):
        fx, fy = rng.uniform(0.5, 4.0, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        grey += rng.uniform(8, 18) * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    tint = rng.uniform(-12, 12, size=3).astype(np.float32)
    return np.clip(grey[..., None] + tint, 0, 255)


def shape_mask(shape: str, size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """Anti-aliased coverage (0..1, size x size) of one shape, by 4x supersampling near it."""
    mask = np.zeros((size, size), dtype=np.float32)
    x0, y0 = max(0, int(cx - radius) - 1), max(0, int(cy - radius) - 1)
    x1, y1 = min(size, int(cx + radius) + 2), min(size, int(cy + radius) + 2)
    dx = (np.arange(x0 * 4, x1 * 4, dtype=np.float32) + 0.5) / 4 - cx
    dy = (np.arange(y0 * 4, y1 * 4, dtype=np.float32) + 0.5) / 4 - cy
    dx, dy, r = dx[None, :], dy[:, None], radius
    if shape == "circle":
        inside = dx**2 + dy**2 <= r**2
    elif shape == "square":
        inside = np.maximum(np.abs(dx), np.abs(dy)) <= 0.8 * r
    elif shape == "triangle":  # pointing up: above the base, inside the two slanted edges
        inside = (dy <= 0.8 * r) & (dy >= -r + 2 * np.abs(dx))
    elif shape == "cross":
        arm = 0.3 * r
        inside = ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | (
            (np.abs(dy) <= arm) & (np.abs(dx) <= r)
        )
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask[y0:y1, x0:x1] = inside.reshape(y1 - y0, 4, x1 - x0, 4).mean(axis=(1, 3))
    return mask


def object_centre(event: VisualEvent, size: int) -> tuple[float, float]:
    """Pixel coordinates (x, y) of an object's centre: its grid cell's centre plus jitter."""
    row, col = divmod(event.cell, GRID)
    cell = size / GRID
    return (col + 0.5) * cell + event.jitter[0] * size, (row + 0.5) * cell + event.jitter[1] * size


def render_frame(scene: Scene, t: float, size: int = 128) -> np.ndarray:
    """The frame at time ``t`` seconds, as uint8 RGB of shape (size, size, 3)."""
    drift = 1.0 + 0.04 * np.sin(2 * np.pi * t / 47.0 + scene.texture_seed % 7)
    noise_rng = np.random.default_rng([scene.texture_seed, int(round(t * 1000))])
    frame = noise_rng.standard_normal((size, size, 3), dtype=np.float32)
    frame *= 2.0
    frame += background(scene.texture_seed, size) * np.float32(drift)
    for event in scene.objects_at(t):
        cx, cy = object_centre(event, size)
        alpha = shape_mask(event.shape, size, cx, cy, OBJECT_RADIUS * size)[..., None]
        frame = frame * (1 - alpha) + np.asarray(COLOURS[event.colour], np.float32) * alpha
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)


def render_waveform(scene: Scene, sample_rate: int = 16000) -> np.ndarray:
    """The clip's audio as float32 mono samples in [-1, 1]."""
    n = int(round(scene.duration * sample_rate))
    rng = np.random.default_rng([scene.texture_seed, 1])
    wave = rng.standard_normal(n, dtype=np.float32)
    wave *= NOISE_STD
    fade = int(FADE_SECONDS * sample_rate)
    for tone in scene.audio:
        a, b = int(tone.onset * sample_rate), min(n, int(tone.offset * sample_rate))
        t = np.arange(b - a, dtype=np.float32) / sample_rate
        amplitude = LOUD_AMPLITUDE if tone.loud else SOFT_AMPLITUDE
        envelope = np.minimum(1.0, np.minimum(np.arange(b - a), np.arange(b - a)[::-1]) / fade)
        wave[a:b] += amplitude * envelope * np.sin(2 * np.pi * PITCHES[tone.pitch] * t)
    return np.clip(wave, -1.0, 1.0)
