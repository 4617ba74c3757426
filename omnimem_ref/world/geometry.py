"""Where an object is, how big it is, and which patch cells it covers, at any instant.

One place for the geometry, so the renderer (what is drawn), the training targets (which patch
shows what) and the tests (is the ground truth what was drawn) agree. A classic object
(``size == 0``, no motion) sits at its cell's centre plus a small jitter, ``OBJECT_RADIUS`` of the
frame in radius; a general object has a width in grid cells and slides in a straight line from
its start to ``start + motion`` over its lifetime.
"""

from __future__ import annotations

import numpy as np

from omnimem_ref.world.scene import VisualEvent
from omnimem_ref.world.vocabulary import GRID

OBJECT_RADIUS = 0.085  # as a fraction of the frame side
COVERED_SHARE = 0.1  # a cell shows an object when the object covers this share of it


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
    """Pixel coordinates (x, y) of an object's starting centre: its grid cell's centre plus jitter."""
    row, col = divmod(event.cell, GRID)
    cell = size / GRID
    return (col + 0.5) * cell + event.jitter[0] * size, (row + 0.5) * cell + event.jitter[1] * size


def progress(event: VisualEvent, t: float) -> float:
    """How far through its lifetime the object is at ``t``: 0 at onset, 1 at offset."""
    return min(1.0, max(0.0, (t - event.onset) / (event.offset - event.onset)))


def centre_at(event: VisualEvent, t: float, size: int) -> tuple[float, float]:
    """Pixel coordinates (x, y) of the object's centre at time ``t``."""
    x, y = object_centre(event, size)
    if event.motion == (0.0, 0.0):
        return x, y
    share = progress(event, t)
    return x + event.motion[0] * share * size, y + event.motion[1] * share * size


def object_radius(event: VisualEvent, size: int) -> float:
    """The shape's radius in pixels (the circle's radius; other shapes fit inside that circle)."""
    if event.size == 0.0:
        return OBJECT_RADIUS * size
    return event.size * size / (2 * GRID)


def object_mask(event: VisualEvent, t: float, size: int) -> np.ndarray:
    """Coverage (0..1, size x size) of the object as drawn at time ``t``."""
    cx, cy = centre_at(event, t, size)
    return shape_mask(event.shape, size, cx, cy, object_radius(event, size))


def covered_cells(
    event: VisualEvent, t: float, size: int = 64, min_share: float = COVERED_SHARE
) -> list[int]:
    """Row-major grid cells the object covers at ``t`` (at least ``min_share`` of the cell).

    A classic object covers its own cell only, by construction; a general one usually several.
    """
    if event.size == 0.0 and event.motion == (0.0, 0.0):
        return [event.cell]
    side = size // GRID
    mask = object_mask(event, t, size)[: side * GRID, : side * GRID]
    shares = mask.reshape(GRID, side, GRID, side).mean(axis=(1, 3))
    return [int(i) for i in np.flatnonzero(shares.ravel() >= min_share)]
